package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
)

// retryCap bounds the attempts of a request whose retry policy sets no
// max_attempts: the budget is the real bound, but one failing request must not be
// able to spend the whole per-second minimum on its own.
const retryCap = 10

// gRPC status codes the proxy itself answers with.
const (
	grpcDeadlineExceeded = 4
	grpcUnimplemented    = 12
	grpcInternal         = 13
	grpcUnavailable      = 14
)

// serveRouted serves a request to a destination the source knows: route, filters,
// backend by weight, endpoint by the backend's balancer, then the mesh or plaintext
// transport, with the route's timeouts and retries.
func (s *Server) serveRouted(w http.ResponseWriter, r *http.Request, d *destRuntime) {
	// Metrics keep the authority the client used, whatever a rewrite makes of it.
	authority := r.Host
	rt, prefix := d.table.Match(r)
	if rt == nil {
		// Gateway API routes and none matched: 404 (gRPC: UNIMPLEMENTED), as GAMMA
		// asks.
		series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		s.answerError(w, r, series, nil, time.Now(), http.StatusNotFound, grpcUnimplemented, "no route")
		return
	}
	start := time.Now()
	rs := d.series[rt.Index]
	rs.Request()
	if d.retries {
		d.budget.Deposit()
	}
	if redir := router.ApplyRequest(rt.Filters, r, prefix, "http"); redir != nil {
		s.answerRedirect(w, authority, rs, start, redir)
		return
	}
	b := rt.PickBackend()
	if b == nil || b.Invalid != "" {
		// No usable backend for this share of the traffic: 500, as Gateway API asks.
		series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		s.answerError(w, r, series, rs, start, http.StatusInternalServerError, grpcInternal, "invalid backend")
		return
	}
	if len(b.Filters) > 0 {
		if redir := router.ApplyRequest(b.Filters, r, prefix, "http"); redir != nil {
			s.answerRedirect(w, authority, rs, start, redir)
			return
		}
	}
	bal := d.balancers[b.Key]
	h, err := bal.Pick()
	if err != nil {
		series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		s.answerError(w, r, series, rs, start, http.StatusServiceUnavailable, grpcUnavailable, err.Error())
		return
	}
	if rt.RequestTimeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), rt.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	// One allocation for both: the route the ReverseProxy reads and its plan.
	rp := &routedRequest{plan: plan{s: s, d: d, route: rt, backend: b, bal: bal, rs: rs, handle: h, start: start}}
	p := &rp.plan
	if router.HasResponseFilters(rt.Filters) || router.HasResponseFilters(b.Filters) {
		p.respFilters = true
	}
	ep := h.Endpoint()
	route := &rp.route
	route.plan = p
	route.rt, route.host, route.dst, route.proto = s.endpointTransport(ep, r)
	series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority, PeerID: ep.Identity})
	s.proxy(w, r, route, series)
}

// endpointTransport says how to reach an endpoint: through its proxy over mTLS when
// it is meshed, else straight to it.
func (s *Server) endpointTransport(ep *balance.Endpoint, r *http.Request) (rt http.RoundTripper, host, dst, proto string) {
	if ep.Meshed() {
		upgrade := r.ProtoMajor == 1 && r.Header.Get("Upgrade") != ""
		proto = "h1"
		if r.ProtoMajor == 2 {
			proto = "h2"
		}
		return s.mesh.transport(meshKey{ep.ProxyAddr, ep.Identity}, upgrade), addrString(ep.ProxyAddr, ep.ProxyAddrString), addrString(ep.Addr, ep.AddrString), proto
	}
	return s.out.pick(r), addrString(ep.Addr, ep.AddrString), "", ""
}

// addrString returns the preformatted form of ap when there is one.
func addrString(ap netip.AddrPort, s string) string {
	if s != "" {
		return s
	}
	return ap.String()
}

// answerError answers a request the proxy cannot forward: the status with
// Weft-Proxy-Error, or for gRPC a trailers-only response with the gRPC status (gRPC
// clients read grpc-status, not the HTTP status).
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, series *metrics.HTTPSeries, rs *metrics.RouteSeries, start time.Time, status, grpcCode int, reason string) {
	w.Header().Set(hdrError, reason)
	failure := status >= 500
	if router.IsGRPC(r) {
		writeGRPCError(w, grpcCode, reason)
		status, failure = http.StatusOK, grpcCode != 0
	} else {
		w.WriteHeader(status)
	}
	lat := time.Since(start)
	series.Response(status, failure, lat)
	if rs != nil {
		rs.Response(status, failure, lat)
	}
}

// writeGRPCError writes a trailers-only gRPC response: HTTP 200 with grpc-status and
// grpc-message in the only HEADERS frame (which ends the stream).
func writeGRPCError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) answerRedirect(w http.ResponseWriter, authority string, rs *metrics.RouteSeries, start time.Time, redir *router.Redirect) {
	series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
	series.Request()
	w.Header().Set("Location", redir.Location)
	w.WriteHeader(redir.Status)
	lat := time.Since(start)
	series.Response(redir.Status, false, lat)
	rs.Response(redir.Status, false, lat)
}

type routedRequest struct {
	route route
	plan  plan
}

// plan is one routed request's attempts: the endpoint chosen first, and what a retry
// needs to choose again.
type plan struct {
	s           *Server
	d           *destRuntime
	route       *router.Route
	backend     *router.Backend
	bal         *balance.Balancer
	rs          *metrics.RouteSeries
	handle      balance.Handle
	start       time.Time
	respFilters bool
	// timedOut is set when an attempt ended by the backend_request timeout, so the
	// error answer is 504 rather than 502.
	timedOut bool
}

// roundTrip sends req (the ReverseProxy's outgoing request, already addressed to
// the first endpoint) and retries per the route's policy. Each attempt is measured
// (route_actual_*) and reported to the balancer; the response returned is the last
// attempt's.
func (p *plan) roundTrip(req *http.Request, first http.RoundTripper) (*http.Response, error) {
	ctx := req.Context()
	rt := p.route
	var body *replayBody
	if rt.Retry != nil && req.Body != nil && req.Body != http.NoBody {
		body = newReplayBody(req.Body, req.ContentLength)
		b, _ := body.next()
		req.Body = b
	}
	maxAttempts := retryCap
	if rt.Retry != nil && rt.Retry.MaxAttempts > 0 {
		maxAttempts = rt.Retry.MaxAttempts
	}
	h := p.handle
	transport := first
	areq := req
	for attempt := 1; ; attempt++ {
		var cancel context.CancelFunc
		// Upgrade responses hand the connection over and must keep their body type,
		// so the per-attempt timeout does not apply to them.
		if rt.BackendTimeout > 0 && areq.Header.Get("Upgrade") == "" {
			var actx context.Context
			actx, cancel = context.WithTimeout(ctx, rt.BackendTimeout)
			areq = areq.WithContext(actx)
		}
		p.rs.Attempt()
		astart := time.Now()
		resp, err := transport.RoundTrip(areq)
		status, grpc := http.StatusBadGateway, router.GRPCNone
		timedOut := false
		if err == nil {
			status = resp.StatusCode
			if v, ok := resp.Header["Grpc-Status"]; ok && len(v) > 0 {
				grpc = router.ParseGRPCStatus(v[0])
			}
		} else if errors.Is(err, context.DeadlineExceeded) || (cancel != nil && areq.Context().Err() == context.DeadlineExceeded) {
			status, timedOut = http.StatusGatewayTimeout, true
		}
		failure := err != nil || rt.IsFailure(status, grpc)
		clientGone := ctx.Err() == context.Canceled
		switch {
		case clientGone || errors.Is(err, errNoIdentity):
			// Nothing learnt about the endpoint: the client left, or this proxy
			// has no certificate to reach it with.
			h.Cancel()
		case err != nil && ctx.Err() == context.DeadlineExceeded:
			// The route's request timeout ended the attempt: the endpoint was
			// slow for this route's budget, which P2C learns from the latency, but
			// it did not fail (a timeout raised later must not find it ejected).
			h.Observe()
			p.rs.AttemptResponse(status, failure, time.Since(astart))
		default:
			h.Done(failure)
			p.rs.AttemptResponse(status, failure, time.Since(astart))
		}
		retry := !clientGone && ctx.Err() == nil && rt.Retryable(status, grpc)
		if retry && attempt >= maxAttempts {
			retry = false
		}
		// Checks first, commitments last: the body is handed to the new attempt
		// (which stops the old one reading it) only once the budget and an endpoint
		// allow the retry.
		if retry && body != nil && !body.replayable() {
			p.rs.Skip(metrics.SkipBody)
			retry = false
		}
		if retry && !p.d.budget.Withdraw() {
			p.rs.Skip(metrics.SkipBudget)
			retry = false
		}
		var nh balance.Handle
		if retry {
			var perr error
			if nh, perr = p.bal.Pick(); perr != nil {
				retry = false
			}
		}
		var nextBody io.ReadCloser
		if retry && body != nil {
			var ok bool
			if nextBody, ok = body.next(); !ok {
				// The body changed state since the check (a read began).
				p.rs.Skip(metrics.SkipBody)
				nh.Cancel()
				retry = false
			}
		}
		if !retry {
			p.timedOut = timedOut
			if err != nil {
				if cancel != nil {
					cancel()
				}
				return nil, err
			}
			if cancel != nil {
				resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			}
			if p.respFilters {
				router.ApplyResponse(p.route.Filters, resp.Header)
				router.ApplyResponse(p.backend.Filters, resp.Header)
			}
			return resp, nil
		}
		if resp != nil {
			// Read a little so a keep-alive HTTP/1.1 connection can be reused.
			io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
		if cancel != nil {
			cancel()
		}
		p.rs.Retry()
		if bo := rt.Retry.Backoff; bo > 0 {
			t := time.NewTimer(bo)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				nh.Cancel()
				return nil, ctx.Err()
			}
		}
		h = nh
		ep := h.Endpoint()
		areq = req.Clone(ctx)
		if body != nil {
			areq.Body = nextBody
		}
		var host, dst, proto string
		transport, host, dst, proto = p.s.endpointTransport(ep, req)
		areq.URL.Host = host
		delete(areq.Header, hdrDst)
		delete(areq.Header, hdrProto)
		if dst != "" {
			areq.Header[hdrDst] = []string{dst}
			areq.Header[hdrProto] = []string{proto}
		}
	}
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
