package pipeline

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/tap"
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
		if res := up.attempts.route.Proto.GetResource(); res.GetName() != "" {
			req.Route = res.GetKind() + "/" + res.GetNamespace() + "/" + res.GetName()
		}
	}
	if up.inbound {
		req.Direction = api.TapDirection_TAP_DIRECTION_INBOUND
		req.TLS = ci.Mesh
		req.Source = tap.Peer{Addr: ci.Client, Identity: ci.PeerID}
		req.Destination.Addr, _ = netip.ParseAddrPort(up.Host)
		return p.o.Tap.Start(req)
	}
	req.Direction = api.TapDirection_TAP_DIRECTION_OUTBOUND
	req.TLS = up.Dst != "" // through a peer proxy, over mTLS
	// The app's address: the accept loop notes the client only for inbound.
	req.Source.Addr, _ = netip.ParseAddrPort(r.RemoteAddr)
	ep := up.ep
	if up.attempts != nil {
		// The first attempt's endpoint: a retry may end elsewhere.
		ep = up.attempts.handle.Endpoint()
	}
	req.Destination = endpointPeer(ep, ci.OrigDst)
	return p.o.Tap.Start(req)
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
