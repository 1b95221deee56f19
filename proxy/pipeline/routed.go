package pipeline

import (
	"context"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
)

// serveRouted serves a request to a destination the source knows: route, filters,
// backend by weight, endpoint by the backend's balancer, then the mesh or plaintext
// transport (proxy/transport), with the route's timeouts and retries (attempts.go).
func (p *Pipeline) serveRouted(w http.ResponseWriter, r *http.Request, d *destination.Runtime) {
	// Metrics keep the authority the client used, whatever a rewrite makes of it.
	authority := r.Host
	route, prefix := d.Table.Match(r)
	if route == nil {
		// Gateway API routes and none matched: 404 (gRPC: UNIMPLEMENTED), as GAMMA
		// asks.
		series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		w, end := p.tapOwnAnswer(w, r, nil)
		p.answerError(w, r, series, nil, time.Now(), http.StatusNotFound, grpcwire.Unimplemented, "no route")
		end()
		return
	}
	start := time.Now()
	rs := d.Series[route.Index]
	rs.Request()
	if d.Retries {
		d.Budget.Deposit()
	}
	// A CORS preflight is the route's to answer, before any other filter: it is the
	// browser asking about the route, not a request for the application.
	if pf := router.CORSPreflight(route.Filters, r); pf != nil {
		w, end := p.tapOwnAnswer(w, r, route)
		p.answerPreflight(w, authority, rs, start, pf)
		end()
		return
	}
	// Faults first: an injected delay is not counted in the route's timeout (the
	// backend has not been asked yet), and an abort answers without a backend.
	if router.HasFaults(route.Filters) && p.applyFaults(w, r, route, authority, rs, start) {
		return
	}
	if redir := router.ApplyRequest(route.Filters, r, prefix, "http"); redir != nil {
		w, end := p.tapOwnAnswer(w, r, route)
		p.answerRedirect(w, authority, rs, start, redir)
		end()
		return
	}
	b := route.PickBackend()
	if b == nil || b.Invalid != "" {
		// No usable backend for this share of the traffic: 500, as Gateway API asks.
		router.CORSFor(route.Filters, r).Apply(w.Header())
		series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		w, end := p.tapOwnAnswer(w, r, route)
		p.answerError(w, r, series, rs, start, http.StatusInternalServerError, grpcwire.Internal, "invalid backend")
		end()
		return
	}
	// The route's mirrors copy the request as the route's filters left it.
	routeHead := routeMirrorHead(route, b, r)
	if len(b.Filters) > 0 {
		if redir := router.ApplyRequest(b.Filters, r, prefix, "http"); redir != nil {
			w, end := p.tapOwnAnswer(w, r, route)
			p.answerRedirect(w, authority, rs, start, redir)
			end()
			return
		}
	}
	bal := d.Balancers[b.Key]
	h, err := bal.Pick()
	if err != nil {
		router.CORSFor(route.Filters, r).Apply(w.Header())
		series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
		series.Request()
		w, end := p.tapOwnAnswer(w, r, route)
		p.answerError(w, r, series, rs, start, http.StatusServiceUnavailable, grpcwire.Unavailable, err.Error())
		end()
		return
	}
	// Copies for the route's and the backend's RequestMirror filters: the request as
	// their filters left it, its body teed by the attempts (mirror.go).
	mirror := p.startMirrors(d, route, b, r, routeHead)
	if mirror != nil {
		defer mirror.finish()
	}
	if route.RequestTimeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), route.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	var idle *idleWatch
	// An Upgrade hands the connection over to a tunnel whose bytes the watchdog does
	// not see: it would cut a busy WebSocket. Upgraded connections are bounded by
	// the TCP idle timeout instead.
	if route.IdleTimeout > 0 && !h1.IsUpgrade(r) {
		var ctx context.Context
		ctx, idle = watchIdle(r.Context(), route.IdleTimeout)
		defer idle.stop()
		r = r.WithContext(ctx)
	}
	// One allocation for both: the upstream forward reads and its attempts.
	rr := &routedRequest{attempts: attempts{p: p, d: d, route: route, backend: b, bal: bal, rs: rs, handle: h, start: start, idle: idle, mirror: mirror}}
	at := &rr.attempts
	if router.HasResponseFilters(route.Filters) || router.HasResponseFilters(b.Filters) {
		at.respFilters = true
	}
	at.cors = router.CORSFor(route.Filters, r)
	ep := h.Endpoint()
	up := &rr.upstream
	up.attempts = at
	up.Hop = transport.Endpoint(p.o.Mesh, p.o.Out, ep, r)
	if ep.Meshed() {
		// Discovery vouches the address is meshed: plaintext sent to it earlier counts.
		p.o.Fallback.ObserveMeshed(ep.Addr.Addr())
	}
	if sp := spanOf(w); sp != nil {
		sp.SetRoute(route.Name)
		sp.SetPeer(ep.Identity, ep.Addr.String())
	}
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority, PeerID: ep.Identity, Dst: promtext.Labels(ep.MetricLabels)})
	p.proxy(w, r, up, series)
}

// answerError answers a request the proxy cannot forward: the status with
// Weft-Proxy-Error, or for gRPC a trailers-only response with the gRPC status (gRPC
// clients read grpc-status, not the HTTP status).
func (p *Pipeline) answerError(w http.ResponseWriter, r *http.Request, series *metrics.HTTPSeries, rs *metrics.RouteSeries, start time.Time, status int, grpcCode grpcwire.Code, reason string) {
	w.Header().Set(hdrError, reason)
	failure := status >= 500
	if router.IsGRPC(r) {
		writeGRPCError(w, grpcCode, reason)
		status, failure = http.StatusOK, grpcCode != grpcwire.OK
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
func writeGRPCError(w http.ResponseWriter, code grpcwire.Code, msg string) {
	grpcwire.SetTrailersOnly(w.Header(), code, msg)
	w.WriteHeader(http.StatusOK)
}

func (p *Pipeline) answerRedirect(w http.ResponseWriter, authority string, rs *metrics.RouteSeries, start time.Time, redir *router.Redirect) {
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
	series.Request()
	w.Header().Set("Location", redir.Location)
	w.WriteHeader(redir.Status)
	lat := time.Since(start)
	series.Response(redir.Status, false, lat)
	rs.Response(redir.Status, false, lat)
}

// answerPreflight answers a CORS preflight with the route's CORS filter's headers.
func (p *Pipeline) answerPreflight(w http.ResponseWriter, authority string, rs *metrics.RouteSeries, start time.Time, pf *router.Preflight) {
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: authority})
	series.Request()
	for k, v := range pf.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(pf.Status)
	lat := time.Since(start)
	series.Response(pf.Status, false, lat)
	rs.Response(pf.Status, false, lat)
}

// routedRequest is one allocation for a routed request's upstream and attempts.
type routedRequest struct {
	upstream upstream
	attempts attempts
}
