package pipeline

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/inboundpolicy"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/tap"
	"github.com/weftmesh/weft/proxy/transport"
)

// tapStart describes a request to the open tap streams (proxy/tap): called only
// while one is open, so nothing here costs a request when nobody taps.
func (p *Pipeline) tapStart(r *http.Request, up *upstream) *tap.Exchange {
	ci := ConnInfoFrom(r.Context())
	req := &tap.Request{
		Method:    r.Method,
		Scheme:    cmp.Or(r.URL.Scheme, "http"),
		Authority: r.Host,
		Path:      r.URL.Path,
		Protocol:  tapProtocol(r, up.meshProto),
	}
	if up.attempts != nil {
		req.Route = tapRoute(up.attempts.route)
	}
	if up.inbound {
		req.Direction = api.TapDirection_TAP_DIRECTION_INBOUND
		req.TLS = ci.Mesh
		req.Source = tap.Peer{Addr: unmap(ci.Client), Identity: ci.PeerID}
		req.Destination.Addr, _ = netip.ParseAddrPort(up.Host)
		return p.o.Tap.Start(req)
	}
	req.Direction = api.TapDirection_TAP_DIRECTION_OUTBOUND
	req.TLS = up.Dst != "" // through a peer proxy, over mTLS
	// The app's address: the accept loop notes the client only for inbound.
	app, _ := netip.ParseAddrPort(r.RemoteAddr)
	req.Source.Addr = unmap(app)
	ep := up.ep
	if up.attempts != nil {
		// The first attempt's endpoint: a retry may end elsewhere.
		ep = up.attempts.handle.Endpoint()
	}
	req.Destination = endpointPeer(ep, ci.OrigDst)
	return p.o.Tap.Start(req)
}

// unmap shows an IPv4 client of a dual-stack listener (::ffff:10.0.0.1) as the IPv4
// address it is, as the inbound policy sees it (found by TestTapInPods).
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// refuseInboundTapped is refuseInbound for a request while a tap stream is open: the
// refusal (403, 404, 429 or their gRPC statuses) is tapped like a forwarded request,
// with the reason (Weft-Proxy-Error: unauthorized, no route, rate limited) as its
// error.
func (p *Pipeline) refuseInboundTapped(w http.ResponseWriter, r *http.Request, d inboundpolicy.Decision, cl inboundpolicy.Client, dst netip.AddrPort, proto string) {
	x := p.tapStart(r, &upstream{Hop: transport.Hop{Host: dst.String()}, inbound: true, meshProto: proto})
	if x == nil {
		p.refuseInbound(w, r, d, cl)
		return
	}
	mw := &metricsWriter{ResponseWriter: w, start: time.Now(), tap: x}
	p.refuseInbound(mw, r, d, cl)
	tapEnd(x, r, w.Header(), mw.status, nil)
}

// tapOwnAnswer is the writer for an answer the outbound side gives itself (no route,
// no usable backend or endpoint, an injected fault, a redirect, a CORS preflight,
// plaintext refused): while a tap stream is open the request is tapped like a
// forwarded one, with the original destination as its peer and the proxy's reason
// (Weft-Proxy-Error) as its error, and end ends the exchange once answered. With no
// tap open it is w itself and end does nothing, at no cost.
func (p *Pipeline) tapOwnAnswer(w http.ResponseWriter, r *http.Request, route *router.Route) (tw http.ResponseWriter, end func()) {
	if !p.o.Tap.Active() {
		return w, noTap
	}
	req := &tap.Request{
		Direction: api.TapDirection_TAP_DIRECTION_OUTBOUND,
		Method:    r.Method,
		Scheme:    cmp.Or(r.URL.Scheme, "http"),
		Authority: r.Host,
		Path:      r.URL.Path,
		Protocol:  tapProtocol(r, ""),
	}
	if route != nil {
		req.Route = tapRoute(route)
	}
	app, _ := netip.ParseAddrPort(r.RemoteAddr)
	req.Source.Addr = unmap(app)
	req.Destination.Addr = ConnInfoFrom(r.Context()).OrigDst
	x := p.o.Tap.Start(req)
	if x == nil {
		return w, noTap
	}
	mw := &metricsWriter{ResponseWriter: w, start: time.Now(), tap: x}
	return mw, func() { tapEnd(x, r, w.Header(), mw.status, nil) }
}

func noTap() {}

// tapRoute names a route as the tap shows it: kind/namespace/name of its resource, or
// "" when it has none.
func tapRoute(route *router.Route) string {
	if res := route.Proto.GetResource(); res.GetName() != "" {
		return res.GetKind() + "/" + res.GetNamespace() + "/" + res.GetName()
	}
	return ""
}

// endpointPeer is what the tap shows of an outbound request's endpoint: its address,
// identity and pod from discovery. When balance.Endpoint carries the destination's
// metric labels (api.Endpoint.metric_labels: the owner, deployment/web, and the
// rest), they belong in Labels here: workload filters then match outbound requests
// by owner. Until then the namespace and serviceaccount come from the identity.
func endpointPeer(ep *balance.Endpoint, dst netip.AddrPort) tap.Peer {
	if ep == nil {
		return tap.Peer{Addr: dst}
	}
	return tap.Peer{Addr: ep.Addr, Identity: ep.Identity, Pod: ep.Pod}
}

// tapProtocol names what the client spoke: gRPC by its content type; an inbound
// request from a peer proxy by its Weft-Proto (weft.h2 carries HTTP/1.1 too).
func tapProtocol(r *http.Request, meshProto string) string {
	switch {
	case router.IsGRPC(r):
		return tap.ProtoGRPC
	case meshProto == "h1":
		return tap.ProtoHTTP1
	case meshProto == "h2", r.ProtoMajor == 2:
		return tap.ProtoHTTP2
	}
	return tap.ProtoHTTP1
}

// tapEnd ends a tapped request: its gRPC status (from the trailers or a trailers-only
// head) and why it failed: the proxy's own error answer (Weft-Proxy-Error), a body
// cut midway (the handler panicked), or the client gone.
func tapEnd(x *tap.Exchange, r *http.Request, h http.Header, status int, panicked any) {
	var code uint32
	var hasCode bool
	if v, ok := grpcStatusValue(h); ok {
		c, valid := grpcwire.ParseCode(v)
		if !valid {
			c = grpcwire.Unknown
		}
		code, hasCode = uint32(c), true
	}
	failure := ""
	switch {
	case panicked != nil:
		failure = "response aborted"
	case h.Get(hdrError) != "":
		failure = h.Get(hdrError)
	case errors.Is(r.Context().Err(), context.Canceled):
		failure = "client canceled"
	case status == 0:
		failure = "no response"
	}
	x.ResponseEnd(code, hasCode, failure)
}

// tapBody counts the request body's bytes for a tapped request.
type tapBody struct {
	io.ReadCloser
	x *tap.Exchange
}

func (b *tapBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.x.CountRequestBytes(n)
	return n, err
}
