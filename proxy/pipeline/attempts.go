package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/internal/replay"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
)

// attempts is one routed request's attempts: the endpoint chosen first, and what a
// retry needs to choose again.
type attempts struct {
	p           *Pipeline
	d           *destination.Runtime
	route       *router.Route
	backend     *router.Backend
	bal         *balance.Balancer
	rs          *metrics.RouteSeries
	handle      balance.Handle
	start       time.Time
	respFilters bool
	// cors adds the route's CORS headers to the response (nil: none apply).
	cors *router.CORSResponse
	// timedOut is set when an attempt ended by the backend_request timeout, so the
	// error answer is 504 rather than 502.
	timedOut bool
	// idle is the route's idle watchdog (nil: none); body reads push it back.
	idle *idleWatch
	// mirror tees the request body for RequestMirror copies (nil: none).
	mirror *mirrorRequest
}

// unprocessedResends bounds how often one request is sent again to another endpoint
// because no application saw it (see unprocessed): a rolling restart makes a
// client meet one or two endpoints that are going away, not a whole backend.
const unprocessedResends = 3

// roundTrip sends req (forward's outgoing request, already addressed to the first
// endpoint) and retries per the route's policy (decideRetry). An attempt that
// certainly reached no application (unprocessed) goes again to another endpoint
// first, whatever the policy. Each attempt is measured (route_actual_*) and reported
// to the balancer; the response returned is the last attempt's.
func (a *attempts) roundTrip(req *http.Request, first http.RoundTripper) (*http.Response, error) {
	ctx := req.Context()
	route := a.route
	if a.mirror != nil && req.Body != nil && req.Body != http.NoBody {
		// Innermost, so the copy sees each byte of the client's body once, whatever
		// the retries replay. A shallow copy: the handler's request keeps its own
		// body (h1.BodyOf).
		req = req.WithContext(ctx)
		req.Body = a.mirror.tee(req.Body, req.ContentLength)
	}
	if a.idle != nil && req.Body != nil && req.Body != http.NoBody {
		// A shallow copy: the handler's request keeps its own body (h1.BodyOf).
		req = req.WithContext(ctx)
		req.Body = &idleBody{ReadCloser: req.Body, w: a.idle}
	}
	var body *replay.Body
	if req.Body != nil && req.Body != http.NoBody && (route.Retry != nil || req.Header.Get("Upgrade") == "") {
		// Kept (up to replay.MaxBody) for the route's retries and for sending a
		// request no application saw to another endpoint; GetBody lets a
		// transport that learns its connection took nothing (a pooled HTTP/1.1
		// connection found closed, an HTTP/2 stream refused) send it again.
		body = replay.New(req.Body, req.ContentLength)
		b, _ := body.Next()
		req.Body = b
		req.GetBody = body.GetBody
	}
	// A body that is not kept cannot be sent again once a transport read it.
	bodyKept := req.Body == nil || req.Body == http.NoBody || body != nil
	limit := maxAttempts(route)
	h := a.handle
	rt := first
	areq := req
	resends := 0
	var unreachable []netip.AddrPort
	for attempt := 1; ; {
		var cancel context.CancelFunc
		var retryTimer *time.Timer
		// Upgrade responses hand the connection over and must keep their body type,
		// so the per-attempt timeouts do not apply to them.
		if areq.Header.Get("Upgrade") == "" {
			if route.BackendTimeout > 0 {
				var actx context.Context
				actx, cancel = context.WithTimeout(ctx, route.BackendTimeout)
				areq = areq.WithContext(actx)
			}
			if route.Retry != nil && route.Retry.Timeout > 0 {
				// The retry timeout bounds the attempt to its response head
				// only: once a response is passed on it cannot be retried, so
				// cutting its body would only break a slow download.
				rctx, rcancel := context.WithCancel(areq.Context())
				retryTimer = time.AfterFunc(route.Retry.Timeout, rcancel)
				cancel = chainCancel(rcancel, cancel)
				areq = areq.WithContext(rctx)
			}
		}
		a.rs.Attempt()
		astart := time.Now()
		resp, err := rt.RoundTrip(areq)
		retryTimedOut := retryTimer != nil && !retryTimer.Stop()
		if retryTimedOut && err == nil {
			// The timer won a race with the response head: the attempt's
			// context is gone, so its body is unreadable.
			resp.Body.Close()
			resp, err = nil, errRetryTimeout
		}
		status, grpc, timedOut := attemptOutcome(resp, err, retryTimedOut || (cancel != nil && areq.Context().Err() == context.DeadlineExceeded))
		if why, ok := unprocessed(resp, err, h.Endpoint()); ok && bodyKept && resends < unprocessedResends && ctx.Err() == nil {
			// No application saw it: another endpoint takes it, and the balancer
			// stops choosing this one for a while. Not a retry: no policy, budget
			// or attempt count is involved.
			failed := h.Endpoint().Addr
			if nh, nextBody, ok := a.another(append(unreachable, failed), body); ok {
				h.Unreachable()
				unreachable = append(unreachable, failed)
				a.rs.AttemptResponse(status, true, time.Since(astart))
				a.rs.Resend(why)
				if resp != nil {
					resp.Body.Close() // the peer proxy's own answer, without a body
				}
				if cancel != nil {
					cancel()
				}
				resends++
				h = nh
				areq, rt = a.readdress(req, h, nextBody)
				continue
			}
		}
		if resp != nil && a.idle != nil {
			a.idle.touch() // the response head moved
		}
		if err == nil && grpc == router.GRPCNone && route.Retry != nil && router.IsGRPC(areq) {
			// grpc-status may be in the trailers of a response without messages.
			grpc, resp.Body = peekTrailersOnlyBody(resp)
		}
		failure := err != nil || route.IsFailure(status, grpc)
		switch reportFor(ctx, err) {
		case reportNothing:
			h.Cancel()
		case reportLatency:
			h.Observe()
			a.rs.AttemptResponse(status, failure, time.Since(astart))
		case reportOutcome:
			h.Done(failure)
			a.rs.AttemptResponse(status, failure, time.Since(astart))
		}
		verdict := decideRetry(retryFacts{
			clientGone:     ctx.Err() == context.Canceled,
			requestEnded:   ctx.Err() != nil,
			retryable:      route.Retryable(status, grpc),
			retryTimedOut:  retryTimedOut && ctx.Err() == nil,
			attempt:        attempt,
			maxAttempts:    limit,
			bodyReplayable: body == nil || body.Replayable(),
		}, a.d.Budget.Withdraw)
		if why, ok := verdict.skipped(); ok {
			a.rs.Skip(why)
		}
		// Commitments after the decision: an endpoint, then the body (handing it
		// to the new attempt stops the old one reading it).
		var nh balance.Handle
		var nextBody io.ReadCloser
		retry := verdict == retryAllowed
		if retry {
			var perr error
			if nh, perr = a.bal.Pick(); perr != nil {
				retry = false
			}
		}
		if retry && body != nil {
			var ok bool
			if nextBody, ok = body.Next(); !ok {
				// The body changed state since the check (a read began).
				a.rs.Skip(metrics.SkipBody)
				nh.Cancel()
				retry = false
			}
		}
		if !retry {
			return a.last(resp, err, cancel, timedOut)
		}
		if resp != nil {
			// Read a little so a keep-alive HTTP/1.1 connection can be reused.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // best effort
			resp.Body.Close()
		}
		if cancel != nil {
			cancel()
		}
		a.rs.Retry()
		if bo := route.Retry.Backoff; bo > 0 {
			t := time.NewTimer(bo)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				nh.Cancel()
				return nil, ctx.Err()
			}
		}
		attempt++
		h = nh
		areq, rt = a.readdress(req, h, nextBody)
	}
}

// unprocessed says whether an attempt to ep certainly reached no application, and
// why: the transport could not connect or its peer proxy did not process the stream
// (transport.Unsent), or the peer proxy answered that its application refused the
// connection (Weft-Unprocessed, believed only from a peer proxy: an application's
// own field never gets here, forward removes it).
func unprocessed(resp *http.Response, err error, ep *balance.Endpoint) (metrics.ResendReason, bool) {
	if err != nil {
		return transport.Unsent(err)
	}
	if _, ok := resp.Header[hdrUnprocessed]; ok && ep.Meshed() {
		return metrics.ResendPeerAppRefused, true
	}
	return 0, false
}

// another picks an endpoint other than those in avoid for a request that none of
// them took, with the body for its attempt; false when there is none, or when the
// body cannot be sent again.
func (a *attempts) another(avoid []netip.AddrPort, body *replay.Body) (balance.Handle, io.ReadCloser, bool) {
	if body != nil && !body.Replayable() {
		return balance.Handle{}, nil, false
	}
	nh, err := a.bal.PickExcept(avoid)
	if err != nil {
		return balance.Handle{}, nil, false
	}
	var next io.ReadCloser
	if body != nil {
		var ok bool
		if next, ok = body.Next(); !ok {
			nh.Cancel()
			return balance.Handle{}, nil, false
		}
	}
	return nh, next, true
}

// readdress returns req as the next attempt sends it, to the endpoint of h: its own
// copy with the body for that attempt (nil: req has none to replay), through the
// transport that reaches the endpoint.
func (a *attempts) readdress(req *http.Request, h balance.Handle, body io.ReadCloser) (*http.Request, http.RoundTripper) {
	areq := req.Clone(req.Context())
	if body != nil {
		areq.Body = body
	}
	hop := transport.Endpoint(a.p.o.Mesh, a.p.o.Out, h.Endpoint(), req)
	areq.URL.Host = hop.Host
	delete(areq.Header, hdrDst)
	delete(areq.Header, hdrProto)
	if hop.Dst != "" {
		areq.Header[hdrDst] = []string{hop.Dst}
		areq.Header[hdrProto] = []string{hop.Proto}
	}
	return areq, hop.Transport
}

// last returns the attempt that was not retried: its error, or its response with the
// route's and backend's response filters applied; the attempt's context ends when
// the response body is closed.
func (a *attempts) last(resp *http.Response, err error, cancel context.CancelFunc, timedOut bool) (*http.Response, error) {
	a.timedOut = timedOut
	if err != nil {
		if cancel != nil {
			cancel()
		}
		return nil, err
	}
	if cancel != nil {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	}
	if a.idle != nil {
		resp.Body = &idleBody{ReadCloser: resp.Body, w: a.idle}
	}
	if a.respFilters {
		router.ApplyResponse(a.route.Filters, resp.Header)
		router.ApplyResponse(a.backend.Filters, resp.Header)
	}
	a.cors.Apply(resp.Header)
	return resp, nil
}

// cancelBody ends an attempt's context when the response body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// errRetryTimeout ends an attempt the retry policy's timeout cut short; it is a
// deadline, so the answer, when no attempt is left, is a 504 timeout.
var errRetryTimeout = fmt.Errorf("retry timeout: %w", context.DeadlineExceeded)

// chainCancel cancels both (b may be nil).
func chainCancel(a, b context.CancelFunc) context.CancelFunc {
	if b == nil {
		return a
	}
	return func() { a(); b() }
}
