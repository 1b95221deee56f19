// Package discovery is the proxy's client of the destination service: it subscribes to
// the destinations the data path asks about, keeps each one's current configuration in
// memory, and answers the data path's lookups from there (it implements
// destination.Source).
//
// One subscription is one Get stream, opened on the first Lookup of a target and
// cancelled when the target has not been looked up for IdleTimeout, so the proxy's
// memory follows what its application talks to, not the size of the mesh. All streams
// share one HTTP/2 connection, authenticated with the proxy's workload certificate.
// When a stream breaks the last configuration stays in use and the stream is reopened
// with exponential backoff and jitter; the control plane is never in the request path.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/identity"
)

// Defaults of Options.
const (
	DefaultFirstAnswerWait  = time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 10 * time.Second
	DefaultMaxSubscriptions = 10000
	// DefaultKeepaliveInterval is above the 10s minimum the destination service
	// (internal/destination) permits between pings.
	DefaultKeepaliveInterval = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	// Addr is the destination service, host:port (weft-destination.weft-system.svc.cluster.local:8086).
	Addr string
	// ServerName is what the service's certificate must prove: a DNS name or a
	// spiffe:// ID. Default: the host of Addr.
	ServerName string
	// Namespace is the client workload's namespace, sent as context_namespace: it
	// selects consumer routes and the client's own ServiceProfiles. It must be the
	// namespace of the proxy's SPIFFE ID, or the service refuses the stream.
	Namespace string
	// Identity holds the proxy's certificate (the client certificate of the
	// connection) and the trust roots (which authenticate the service). Required.
	Identity *identity.Store
	Log      logr.Logger

	// FirstAnswerWait bounds how long the first lookups of a new target wait for the
	// service's first answer (the request's context may bound it further). Past it
	// lookups return nil at once, and the proxy forwards to the original destination,
	// until an answer arrives. Default 1s: enough for a healthy control plane, short
	// enough that an unreachable one delays a new destination's first request only
	// once.
	FirstAnswerWait time.Duration
	// IdleTimeout is how long a target may go without a lookup before its
	// subscription is cancelled. Default 60s: a destination used once a minute keeps
	// its stream, one the application stopped using costs nothing after a minute.
	// Expiry is checked every IdleTimeout/4 against a clock of that resolution, so
	// it happens between IdleTimeout and 1.5×IdleTimeout after the last lookup.
	IdleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before reopening a stream that failed
	// and before reconnecting (doubling, with jitter). Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// MaxSubscriptions bounds the open subscriptions (each one's memory is the
	// destination's configuration); past it new targets are not subscribed and
	// lookups of them return nil. Default 10000.
	MaxSubscriptions int
	// KeepaliveInterval is how long the connection may go without a frame from the
	// server before it is pinged, so that a server that vanished without closing
	// the connection (its node gone) is noticed after interval plus KeepaliveTimeout rather than never. The server
	// must allow pings that often (the destination service allows one every 10s; a
	// grpc-go server's default is 5 minutes). Default 30s; negative disables pings.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a ping may go unanswered. Default 10s.
	KeepaliveTimeout time.Duration
}

// Stats are the client's counters.
type Stats struct {
	// Subscriptions is the number of open subscriptions.
	Subscriptions int
	// Snapshots, Deltas and NotFound count the messages received by kind.
	Snapshots, Deltas, NotFound uint64
	// BadDeltas counts deltas that did not apply to the last snapshot (each one
	// causes a resubscription).
	BadDeltas uint64
	// Streams is the number of subscriptions whose stream is open and has answered.
	// It falls below Subscriptions while the service is unreachable.
	Streams int
	// Resubscriptions counts streams reopened after one ended.
	Resubscriptions uint64
	// Expired counts subscriptions cancelled for being idle.
	Expired uint64
}

// Client is a destination.Source backed by the destination service. Create with New; it
// must be closed with Close.
type Client struct {
	opts Options
	log  logr.Logger
	// tr holds the one HTTP/2 connection to the service; nil when Addr is unusable.
	tr *http2.Transport

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	// clock is the time since start in nanoseconds, advanced by the expiry loop: a
	// lookup records it as the subscription's last use without calling time.Now.
	clock atomic.Int64

	// subs is copied on write so that lookups read it without a lock.
	subs atomic.Pointer[map[key]*subscription]
	mu   sync.Mutex // serialises writers of subs

	snapshots, deltas, notFound, badDeltas, resubscriptions, expired atomic.Uint64
	streams                                                          atomic.Int64

	// inbound is the pod's inbound policy stream (inbound.go).
	inbound inboundWatch

	// anyAnswer is closed, and replaced, whenever a stream delivers its first
	// message. Subscriptions backing off after a failed attempt wait on it as well
	// as on their timer: once the service answers again they all retry at once,
	// instead of each waiting out a backoff that grew while the service was down
	// (up to MaxBackoff after it came back).
	anyAnswerMu sync.Mutex
	anyAnswer   chan struct{}
}

// key is what a subscription is for: an authority when the target has one, else an
// original destination address.
type key struct {
	authority string
	addr      netip.AddrPort
}

type subscription struct {
	key key
	cfg atomic.Pointer[api.DestinationConfig]
	// answered is closed when the first message arrives.
	answered chan struct{}
	// waitUntil is when first lookups stop waiting for the first answer.
	waitUntil time.Time
	lastUsed  atomic.Int64 // Client.clock at the last lookup
	cancel    context.CancelFunc
	done      chan struct{} // closed when the stream goroutine has returned
}

// New makes a client. It connects lazily, on the first lookup. A client whose address
// cannot be used logs why and answers every lookup with nil.
func New(opts Options) *Client {
	if opts.FirstAnswerWait <= 0 {
		opts.FirstAnswerWait = DefaultFirstAnswerWait
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if opts.KeepaliveTimeout <= 0 {
		opts.KeepaliveTimeout = 10 * time.Second
	}
	if opts.ServerName == "" {
		opts.ServerName, _, _ = net.SplitHostPort(opts.Addr)
	}
	if opts.Identity == nil {
		opts.Identity = &identity.Store{}
	}
	c := &Client{opts: opts, log: opts.Log, start: time.Now(), anyAnswer: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	empty := map[key]*subscription{}
	c.subs.Store(&empty)

	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		c.log.Error(err, "Cannot use the destination service address; destinations will not be discovered", "addr", opts.Addr)
		return c
	}
	c.tr = newTransport(opts)

	tick := max(opts.IdleTimeout/4, time.Millisecond)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.expireLoop(tick)
	}()
	return c
}

// Close cancels every subscription and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
	if c.tr != nil {
		// Every stream has ended: the connection is idle.
		c.tr.CloseIdleConnections()
	}
	return nil
}

// Lookup returns the current configuration of the destination t names, or nil when it
// is unknown (not found, or no answer yet). The first lookup of a target subscribes to
// it and waits, bounded by ctx and FirstAnswerWait, for the first answer; concurrent
// first lookups share the subscription. Later lookups read a map and an atomic
// pointer, without allocating.
//
// The configuration returned is never modified afterwards: a change arrives as a new
// *api.DestinationConfig.
func (c *Client) Lookup(ctx context.Context, t Target) *api.DestinationConfig {
	var k key
	switch {
	case t.Authority != "":
		k.authority = t.Authority
	case t.Addr.IsValid():
		// An IPv4 destination seen on a dual-stack socket is the same destination.
		k.addr = netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())
	default:
		return nil
	}
	s := (*c.subs.Load())[k]
	if s == nil {
		if s = c.subscribe(k); s == nil {
			return nil
		}
	}
	// Written only when it changes, so lookups on several cores do not keep
	// bouncing the cache line.
	if now := c.clock.Load(); s.lastUsed.Load() != now {
		s.lastUsed.Store(now)
	}
	select {
	case <-s.answered:
	default:
		s.waitFirst(ctx)
	}
	return s.cfg.Load()
}

// Unanswered says whether the service has not answered about t: no subscription (the
// client is closed, unusable or full), or no first answer yet. A target it answered
// about keeps its last answer while the service is unreachable, as Lookup does.
func (c *Client) Unanswered(t Target) bool {
	var k key
	switch {
	case t.Authority != "":
		k.authority = t.Authority
	case t.Addr.IsValid():
		k.addr = netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())
	default:
		return true
	}
	s := (*c.subs.Load())[k]
	if s == nil {
		return true
	}
	select {
	case <-s.answered:
		return false
	default:
		return true
	}
}

// waitFirst waits for the first answer, at most until waitUntil.
func (s *subscription) waitFirst(ctx context.Context) {
	d := time.Until(s.waitUntil)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.answered:
	case <-t.C:
	case <-ctx.Done():
	}
}

// subscribe returns the subscription of k, creating it and starting its stream if
// there is none; nil when the client is closed, unusable or full.
func (c *Client) subscribe(k key) *subscription {
	if c.tr == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return nil
	}
	old := *c.subs.Load()
	if s := old[k]; s != nil {
		return s
	}
	if len(old) >= c.opts.MaxSubscriptions {
		c.log.V(1).Info("Not subscribing: too many subscriptions", "max", c.opts.MaxSubscriptions, "target", k.String())
		return nil
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s := &subscription{key: k, answered: make(chan struct{}), waitUntil: time.Now().Add(c.opts.FirstAnswerWait),
		cancel: cancel, done: make(chan struct{})}
	s.lastUsed.Store(int64(time.Since(c.start)))
	m := maps.Clone(old)
	m[k] = s
	c.subs.Store(&m)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(s.done)
		c.run(ctx, s)
	}()
	return s
}

// expireLoop advances the clock and cancels subscriptions idle for IdleTimeout.
func (c *Client) expireLoop(tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	// A lookup records the clock as of the last tick, up to a tick before the real
	// time: allowing one more tick keeps expiry from coming early.
	idle := int64(c.opts.IdleTimeout + tick)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := int64(time.Since(c.start))
		c.clock.Store(now)
		var stale []*subscription
		for _, s := range *c.subs.Load() {
			if now-s.lastUsed.Load() >= idle {
				stale = append(stale, s)
			}
		}
		if len(stale) == 0 {
			continue
		}
		c.mu.Lock()
		m := maps.Clone(*c.subs.Load())
		for _, s := range stale {
			// Checked again under the lock: a lookup may have used it meanwhile.
			if m[s.key] == s && now-s.lastUsed.Load() >= idle {
				delete(m, s.key)
				s.cancel()
				c.expired.Add(1)
				c.log.V(1).Info("Destination subscription expired", "target", s.key.String())
			}
		}
		c.subs.Store(&m)
		c.mu.Unlock()
	}
}

// run keeps the subscription's stream open until ctx ends.
func (c *Client) run(ctx context.Context, s *subscription) {
	backoff := c.newBackoff()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.resubscriptions.Add(1)
		}
		progressed, err := c.follow(ctx, s)
		if ctx.Err() != nil {
			return
		}
		wait := backoff.next(progressed)
		anyAnswer := c.nextAnswer()
		switch statusCode(err) {
		case grpcwire.PermissionDenied, grpcwire.Unauthenticated, grpcwire.InvalidArgument, grpcwire.Unimplemented:
			// A configuration problem an operator must see (e.g. POD_NAMESPACE not the
			// namespace of the proxy's identity), not a passing outage: other
			// streams answering says nothing about it, so only the timer applies.
			anyAnswer = nil
			c.log.Info("Destination service refused the subscription, retrying", "target", s.key.String(), "reason", err.Error(), "in", wait)
		default:
			c.log.V(1).Info("Destination stream ended, resubscribing", "target", s.key.String(), "reason", err.Error(), "in", wait)
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

// nextAnswer returns the channel closed when a stream next delivers its first
// message.
func (c *Client) nextAnswer() <-chan struct{} {
	c.anyAnswerMu.Lock()
	defer c.anyAnswerMu.Unlock()
	return c.anyAnswer
}

// streamAnswered records that a stream delivered its first message: the service
// answers, so subscriptions backing off retry now.
func (c *Client) streamAnswered() {
	c.streams.Add(1)
	c.wakeBackoffs()
}

// streamBackoff is the wait before reopening a stream: doubling from MinBackoff to
// MaxBackoff while attempts fail, back to MinBackoff after a stream that progressed.
type streamBackoff struct{ cur, min, max time.Duration }

func (c *Client) newBackoff() *streamBackoff {
	return &streamBackoff{cur: c.opts.MinBackoff, min: c.opts.MinBackoff, max: c.opts.MaxBackoff}
}

// next returns the wait after an attempt. Equal jitter: between half the backoff and
// all of it, so that proxies that lost the same server do not come back in step.
func (b *streamBackoff) next(progressed bool) time.Duration {
	if progressed {
		b.cur = b.min
	}
	wait := b.cur/2 + rand.N(b.cur/2+1)
	if !progressed {
		b.cur = min(2*b.cur, b.max)
	}
	return wait
}

// wakeBackoffs ends the backoff of every stream waiting to retry: the service
// answers again.
func (c *Client) wakeBackoffs() {
	c.anyAnswerMu.Lock()
	close(c.anyAnswer)
	c.anyAnswer = make(chan struct{})
	c.anyAnswerMu.Unlock()
}

// follow opens one stream and applies its messages until it ends. progressed says
// whether it delivered a good message (the backoff then starts over).
func (c *Client) follow(ctx context.Context, s *subscription) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		if progressed {
			c.streams.Add(-1)
		}
	}()
	req := &api.GetDestination{ContextNamespace: c.opts.Namespace}
	if s.key.authority != "" {
		req.Target = &api.GetDestination_Authority{Authority: s.key.authority}
	} else {
		req.Target = &api.GetDestination_Address{Address: s.key.addr.String()}
	}
	// While the service is unreachable the call fails at once and run retries it
	// with backoff; each attempt dials anew (with the current certificate) when the
	// shared connection is gone.
	stream, err := openGet(ctx, c.tr, c.opts.Addr, req)
	if err != nil {
		return false, err
	}
	defer stream.Close()
	for {
		u, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server ended the stream")
			}
			return progressed, err
		}
		switch kind := u.GetKind().(type) {
		case *api.DestinationUpdate_Snapshot:
			c.snapshots.Add(1)
			next := kind.Snapshot
			// Equal versions are equal configurations: keep the pointer the data
			// path already has.
			if cur := s.cfg.Load(); cur == nil || cur.GetVersion() != next.GetVersion() {
				s.cfg.Store(next)
				c.log.V(1).Info("Destination snapshot applied", "target", s.key.String(), "version", next.GetVersion())
			}
		case *api.DestinationUpdate_NotFound:
			c.notFound.Add(1)
			// Cached like a configuration, so an unknown destination costs one
			// stream, not one request to the service per connection.
			s.cfg.Store(nil)
		case *api.DestinationUpdate_Endpoints:
			next, err := applyDelta(s.cfg.Load(), kind.Endpoints)
			if err != nil {
				c.badDeltas.Add(1)
				c.log.Info("Resubscribing: endpoint delta does not apply", "target", s.key.String(), "reason", err.Error())
				// The server is healthy, only out of step with us: come back soon.
				return true, fmt.Errorf("bad endpoint delta: %w", err)
			}
			c.deltas.Add(1)
			s.cfg.Store(next)
			if l := c.log.V(1); l.Enabled() {
				l.Info("Endpoint delta applied", "target", s.key.String(), "version", next.GetVersion(), "backend", kind.Endpoints.GetBackend(),
					"add", endpointAddrs(kind.Endpoints.GetAdd()), "remove", endpointAddrs(kind.Endpoints.GetRemove()))
			}
		default:
			// A kind this proxy does not know (a newer control plane): ignore it.
			continue
		}
		if !progressed {
			progressed = true
			c.streamAnswered()
			select {
			case <-s.answered:
			default:
				close(s.answered)
			}
		}
	}
}

// endpointAddrs lists endpoints as ip:port, for debug logs.
func endpointAddrs[E interface {
	GetAddress() string
	GetPort() uint32
}](eps []E) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = net.JoinHostPort(e.GetAddress(), strconv.Itoa(int(e.GetPort())))
	}
	return out
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Subscriptions:   len(*c.subs.Load()),
		Streams:         int(c.streams.Load()),
		Snapshots:       c.snapshots.Load(),
		Deltas:          c.deltas.Load(),
		NotFound:        c.notFound.Load(),
		BadDeltas:       c.badDeltas.Load(),
		Resubscriptions: c.resubscriptions.Load(),
		Expired:         c.expired.Load(),
	}
}

func (k key) String() string {
	if k.authority != "" {
		return k.authority
	}
	return k.addr.String()
}

// WriteMetrics writes the client's counters in the Prometheus text format, for the
// proxy's /metrics. They are Weft's own, so weft_* (the promtext naming rule).
func (c *Client) WriteMetrics(out io.Writer) error {
	s := c.Stats()
	w := promtext.NewWriter(out)
	w.Family("weft_destination_subscriptions", promtext.Gauge, "Destinations the proxy is subscribed to.")
	w.Int("weft_destination_subscriptions", "", int64(s.Subscriptions))
	w.Family("weft_destination_streams", promtext.Gauge, "Subscriptions whose stream is open and has answered; fewer than weft_destination_subscriptions while the destination service is unreachable.")
	w.Int("weft_destination_streams", "", int64(s.Streams))
	w.Family("weft_destination_updates_total", promtext.Counter, "Messages received from the destination service, by kind.")
	for _, u := range []struct {
		kind string
		n    uint64
	}{{"snapshot", s.Snapshots}, {"delta", s.Deltas}, {"not_found", s.NotFound}, {"bad_delta", s.BadDeltas}} {
		w.Uint("weft_destination_updates_total", promtext.L("kind", u.kind), u.n)
	}
	w.Family("weft_destination_resubscriptions_total", promtext.Counter, "Streams reopened after one ended.")
	w.Uint("weft_destination_resubscriptions_total", "", s.Resubscriptions)
	w.Family("weft_destination_expired_total", promtext.Counter, "Subscriptions cancelled for being idle.")
	w.Uint("weft_destination_expired_total", "", s.Expired)
	c.writeInboundMetrics(w)
	return w.Flush()
}
