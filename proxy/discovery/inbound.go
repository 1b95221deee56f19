package discovery

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/api"
)

// The proxy's one InboundPolicies/Watch stream (proxy/api/apigrpc/inbound_service.proto):
// the inbound policy of its own pod. It shares the client's connection (one HTTP/2
// connection to the destination service for every stream of the proxy) and its
// framing. Each message replaces the policy whole; when the stream breaks the last
// policy stays in force and the stream is reopened with the subscriptions' backoff.

const watchInboundPath = "/weft.destination.v1.InboundPolicies/Watch"

// maxInboundMessage bounds one policy message. A pod's policy is a few servers with
// their authorizations and routes; 4 MiB is far above any real one and keeps a corrupt
// or hostile length from costing more than that.
const maxInboundMessage = 4 << 20

// inboundWatch is the state of the Watch stream, for metrics.
type inboundWatch struct {
	started atomic.Bool
	// open: the stream has delivered a message and is still open.
	open                     atomic.Bool
	updates, resubscriptions atomic.Uint64
	mu                       sync.Mutex
	version                  string // of the last policy applied
	applied                  bool
}

// WatchInbound opens the Watch stream for pod in the client's namespace and calls
// apply with each policy received, from one goroutine, until Close. apply must not
// block for long: it is how the stream is read. It does nothing when the client is
// unusable or already watching.
func (c *Client) WatchInbound(pod string, apply func(*api.InboundPolicy)) {
	if c.tr == nil || !c.inbound.started.CompareAndSwap(false, true) {
		return
	}
	req := &api.WatchInbound{Namespace: c.opts.Namespace, Pod: pod}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.watchInbound(c.ctx, req, apply)
	}()
}

// watchInbound keeps the stream open until ctx ends: the loop of run, for the one
// inbound stream.
func (c *Client) watchInbound(ctx context.Context, req *api.WatchInbound, apply func(*api.InboundPolicy)) {
	backoff := c.newBackoff()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.inbound.resubscriptions.Add(1)
		}
		progressed, err := c.followInbound(ctx, req, apply)
		if ctx.Err() != nil {
			return
		}
		wait := backoff.next(progressed)
		anyAnswer := c.nextAnswer()
		switch statusCode(err) {
		case grpcwire.PermissionDenied, grpcwire.Unauthenticated, grpcwire.InvalidArgument, grpcwire.Unimplemented:
			// A configuration problem (POD_NAME or POD_NAMESPACE not this pod's, a
			// control plane without the service): loud, and only the timer applies.
			anyAnswer = nil
			c.log.Info("Destination service refused the inbound policy stream, keeping the current policy and retrying", "pod", req.GetPod(), "reason", err.Error(), "in", wait)
		case grpcwire.NotFound:
			// The pod is not in the service's cache yet (it was just created).
			c.log.V(1).Info("Inbound policy not found yet, retrying", "pod", req.GetPod(), "in", wait)
		default:
			c.log.V(1).Info("Inbound policy stream ended, keeping the current policy and resubscribing", "reason", err.Error(), "in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-anyAnswer:
			t.Stop()
		}
	}
}

// followInbound opens one Watch stream and applies its messages until it ends.
func (c *Client) followInbound(ctx context.Context, req *api.WatchInbound, apply func(*api.InboundPolicy)) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.inbound.open.Store(false)
	stream, err := openCall(ctx, c.tr, c.opts.Addr, watchInboundPath, req, maxInboundMessage)
	if err != nil {
		return false, err
	}
	defer stream.close()
	for {
		p := &api.InboundPolicy{}
		if err := stream.next(p); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server ended the stream")
			}
			return progressed, err
		}
		c.inbound.updates.Add(1)
		c.inbound.mu.Lock()
		// Equal versions are equal policies (a resubscription's first message).
		changed := !c.inbound.applied || c.inbound.version != p.GetVersion()
		c.inbound.version, c.inbound.applied = p.GetVersion(), true
		c.inbound.mu.Unlock()
		if changed {
			apply(p)
			c.log.V(1).Info("Inbound policy applied", "version", p.GetVersion())
		}
		if !progressed {
			progressed = true
			c.inbound.open.Store(true)
			c.wakeBackoffs()
		}
	}
}

// writeInboundMetrics writes the Watch stream's state, when the client watches.
func (c *Client) writeInboundMetrics(w *promtext.Writer) {
	if !c.inbound.started.Load() {
		return
	}
	c.inbound.mu.Lock()
	version, applied := c.inbound.version, c.inbound.applied
	c.inbound.mu.Unlock()
	w.Family("weft_inbound_policy_info", promtext.Gauge, "The inbound policy in force: version is the control plane's, \"bootstrap\" until its first message.")
	if !applied {
		version = "bootstrap"
	}
	w.Int("weft_inbound_policy_info", promtext.L("version", version), 1)
	w.Family("weft_inbound_policy_updates_total", promtext.Counter, "Inbound policy messages received from the control plane.")
	w.Uint("weft_inbound_policy_updates_total", "", c.inbound.updates.Load())
	w.Family("weft_inbound_policy_stream_open", promtext.Gauge, "1 while the inbound policy stream is open and has answered; 0 while the proxy keeps its last policy and resubscribes.")
	var open int64
	if c.inbound.open.Load() {
		open = 1
	}
	w.Int("weft_inbound_policy_stream_open", "", open)
	w.Family("weft_inbound_policy_resubscriptions_total", promtext.Counter, "Inbound policy streams reopened after one ended.")
	w.Uint("weft_inbound_policy_resubscriptions_total", "", c.inbound.resubscriptions.Load())
}
