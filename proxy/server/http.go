package server

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
)

// Headers that travel between Weft proxies on weft.h2/weft.h1 connections. They are
// removed from every request an app sends (so an app cannot steer the inbound
// proxy) and removed by the inbound proxy before the request reaches the app.
const (
	hdrDst   = "Weft-Dst"   // the backend ip:port
	hdrProto = "Weft-Proto" // "h1" or "h2": what the backend must be spoken to in
	// hdrError says why the proxy itself answered with an error status.
	hdrError = "Weft-Proxy-Error"
)

// route is where one request goes, chosen by the handler and read by the
// ReverseProxy's Rewrite and Transport.
type route struct {
	rt    http.RoundTripper
	host  string // what the URL dials: the peer proxy or the endpoint
	dst   string // weft-dst value; "" when not meshed
	proto string // weft-proto value
	// plan is set for requests to a known destination: the fields above are its
	// first attempt, and the plan retries.
	plan *plan
}

type routeKey struct{}

// router is the ReverseProxy for Upgrade requests (WebSocket and the like), which it
// hands over to a byte copy when the backend answers 101; every other request goes
// through forward. It only moves the request to the route in its context and keeps
// what forward keeps: hop-by-hop fields go (RFC 9110 §7.6.1), X-Forwarded-* and
// Forwarded stay, which ReverseProxy's Rewrite would otherwise remove.
func newRouter(s *Server) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rt := pr.In.Context().Value(routeKey{}).(*route)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = rt.host
			// Request trailers get their values when the body has been read to
			// its end, after Rewrite: the outgoing request must share the map
			// rather than hold Clone's early copy, or they arrive empty.
			pr.Out.Trailer = pr.In.Trailer
			for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			if rt.dst != "" {
				pr.Out.Header[hdrDst] = []string{rt.dst}
				pr.Out.Header[hdrProto] = []string{rt.proto}
			}
		},
		// An Upgrade the backend refused leaves an HTTP/1.1 connection that
		// net/http's server would keep for requests nobody checked (h1Guard).
		ModifyResponse: func(res *http.Response) error {
			if res.StatusCode != http.StatusSwitchingProtocols {
				res.Header["Connection"] = []string{"close"}
			}
			return nil
		},
		Transport:  dispatch{},
		BufferPool: bufPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.proxyError(w, r, r.Context().Value(routeKey{}).(*route), err)
		},
		ErrorLog: s.outHTTP.ErrorLog,
	}
}

// proxyError answers a request that could not be forwarded: 504 for a timeout, else
// 502 (for gRPC the matching grpc-status), with Weft-Proxy-Error saying why.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() == context.Canceled {
		// The client went away; there is nobody to answer.
		return
	}
	if isUpgrade(r) {
		// Not upgraded: the connection ends with this answer (see h1Guard).
		w.Header()["Connection"] = []string{"close"}
	}
	if b := bodyOf(r); b != nil && b.state.Load() != bodyEOF {
		// The client's body did not end cleanly: the connection cannot carry
		// another request. When it failed (malformed framing, or cut short), the
		// request is the client's fault: 400.
		w.Header()["Connection"] = []string{"close"}
		if berr := b.failed(); berr != nil {
			s.log.V(1).Info("Request body failed", "authority", r.Host, "error", berr.Error())
			w.Header().Set(hdrError, errMalformedBody.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}
	s.log.V(1).Info("Proxying failed", "authority", r.Host, "error", err.Error())
	// The route's request timeout, or the last attempt's backend timeout:
	// 504, like a gateway that waited in vain (RFC 9110 §15.6.5).
	timeout := r.Context().Err() == context.DeadlineExceeded || (rt.plan != nil && rt.plan.timedOut)
	reason := errorReason(err)
	if timeout {
		reason = "timeout"
	}
	w.Header().Set(hdrError, reason)
	if errors.Is(err, errHeaderListTooLarge) {
		// Over the peer proxy's header list limit: 431 (RFC 6585 §5).
		w.Header().Set(hdrError, "request header fields too large for the mesh")
		w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	if router.IsGRPC(r) {
		// gRPC clients read grpc-status, not the HTTP status. A peer that
		// reset the stream when the call's own grpc-timeout expired (gRPC
		// servers do) is the call's deadline, not an unavailable server.
		code := grpcUnavailable
		if mw, ok := w.(*metricsWriter); timeout || (ok && grpcDeadlinePassed(r.Header, mw.start)) {
			code = grpcDeadlineExceeded
		}
		writeGRPCError(w, code, reason)
		return
	}
	if timeout {
		w.WriteHeader(http.StatusGatewayTimeout)
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

func errorReason(err error) string {
	switch {
	case errors.Is(err, errNoIdentity):
		return "no identity"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "connection failed"
}

// dispatch sends a request through the transport its route chose.
type dispatch struct{}

func (dispatch) RoundTrip(r *http.Request) (*http.Response, error) {
	return r.Context().Value(routeKey{}).(*route).roundTrip(r)
}

// roundTrip sends r through the route's transport, with its plan's retries and
// timeouts when it has one.
func (rt *route) roundTrip(r *http.Request) (*http.Response, error) {
	if rt.plan != nil {
		return rt.plan.roundTrip(r, rt.rt)
	}
	return rt.rt.RoundTrip(r)
}

// bufPool recycles the 32 KiB copy buffers ReverseProxy would otherwise allocate per
// request.
type bufPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (bufPool) Put(b []byte) { copyBufs.Put(&b) }

// serveOutbound routes a request an app sent: the source is asked about its
// authority, then its connection's original destination. A known destination is
// routed and balanced (serveRouted); an unknown one is forwarded to the original
// destination as it is, and still measured.
func (s *Server) serveOutbound(w http.ResponseWriter, r *http.Request) {
	ci := infoFrom(r.Context())
	delete(r.Header, hdrDst)
	delete(r.Header, hdrProto)
	// Looked up per request, so a configuration change reaches long-lived
	// keep-alive and HTTP/2 connections too.
	if cfg := s.lookupHTTP(r, ci.origDst); cfg != nil {
		s.serveRouted(w, r, s.dests.get(cfg))
		return
	}
	rt := &route{rt: s.out.pick(r), host: ci.origDst.String()}
	series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: r.Host})
	s.proxy(w, r, rt, series)
}

// serveInbound delivers a request to the local app: to the backend named by the peer
// proxy (mesh) or to the connection's original destination (plaintext), after the
// inbound policy allowed the client.
func (s *Server) serveInbound(w http.ResponseWriter, r *http.Request) {
	ci := infoFrom(r.Context())
	ix := s.state().ix
	dst := ci.origDst
	proto := ""
	if ci.mesh {
		v := r.Header.Get(hdrDst)
		ap, err := config.ParseAddrPort(v)
		if err != nil {
			w.Header().Set(hdrError, "missing or bad weft-dst")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		dst = ap
		proto = r.Header.Get(hdrProto)
	}
	// Before the policy: a target that is not the pod's application is refused
	// whoever asks, and counted as such.
	if why, ok := s.relayAllowed(dst, cmp.Or(ci.peerID, r.RemoteAddr)); !ok {
		w.Header().Set(hdrError, "not an application address of this pod")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, relayRefusedMessage(dst, why))
		return
	}
	if ci.mesh {
		if !s.meshAllowed(ix, dst, ci.peerID) {
			w.Header().Set(hdrError, "unauthorized")
			w.WriteHeader(http.StatusForbidden)
			return
		}
	} else if !s.plainAllowed(ix, dst) {
		w.Header().Set(hdrError, "unauthorized")
		w.WriteHeader(http.StatusForbidden)
		return
	}
	delete(r.Header, hdrDst)
	delete(r.Header, hdrProto)
	rt := &route{host: dst.String()}
	switch proto {
	case "h1":
		rt.rt = s.in.h1rt
	case "h2":
		rt.rt = s.in.h2rt
	default:
		rt.rt = s.in.pick(r)
	}
	series := s.opts.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Inbound, Authority: r.Host, PeerID: ci.peerID})
	s.proxy(w, r, rt, series)
}

// pick speaks to a plaintext backend in the protocol the client used: HTTP/2 (gRPC,
// h2c) stays HTTP/2, HTTP/1.x stays HTTP/1.1 (including Upgrade).
func (t *transports) pick(r *http.Request) http.RoundTripper {
	if r.ProtoMajor == 2 {
		return t.h2rt
	}
	return t.h1rt
}

// proxy forwards through the router and records request and response metrics.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, rt *route, series *metrics.HTTPSeries) {
	if r.ProtoMajor == 1 {
		// Let the response stream while the request body is still being read
		// (HTTP/1.1 bidirectional streaming); HTTP/2 is always full duplex.
		_ = http.NewResponseController(w).EnableFullDuplex()
		// Full duplex also skips net/http's close after a corrupt body: h1Guard
		// and forward end such a connection instead (see h1framing.go).
		if !h1Guard(w, r) {
			return
		}
	}
	series.Request()
	mw := &metricsWriter{ResponseWriter: w, start: time.Now()}
	defer func() {
		v := recover()
		status := mw.status
		if status == 0 {
			status = http.StatusOK
		}
		var failure bool
		if rt.plan != nil {
			failure = v != nil || rt.plan.route.IsFailure(status, grpcStatus(w.Header()))
		} else {
			failure = v != nil || status >= 500 || grpcFailure(w.Header())
		}
		lat := mw.latency
		if lat == 0 {
			lat = time.Since(mw.start)
		}
		series.Response(status, failure, lat)
		if rt.plan != nil {
			// From the request's arrival (before routing) to the response headers,
			// every attempt included.
			rt.plan.rs.Response(status, failure, mw.start.Sub(rt.plan.start)+lat)
		}
		if v != nil {
			panic(v)
		}
	}()
	if isUpgrade(r) {
		s.router.ServeHTTP(mw, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
		return
	}
	s.forward(mw, r, rt)
}

// grpcFailure reads grpc-status from the response headers or trailers; anything but
// 0 (OK) is a failure, like the Linkerd proxy classifies gRPC.
func grpcFailure(h http.Header) bool {
	v, ok := h["Grpc-Status"]
	if !ok {
		v, ok = h[http.TrailerPrefix+"Grpc-Status"]
	}
	return ok && len(v) > 0 && v[0] != "0"
}

// grpcDeadlinePassed reports whether the call's grpc-timeout ("<digits><unit>", unit
// H, M, S, m, u or n, per the gRPC over HTTP/2 spec) has elapsed since start.
func grpcDeadlinePassed(h http.Header, start time.Time) bool {
	v := h.Get("Grpc-Timeout")
	if len(v) < 2 || len(v) > 9 {
		return false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return false
	}
	return time.Since(start) >= time.Duration(n)*unit
}

// grpcStatus is the grpc-status of a response (headers or trailers), or
// router.GRPCNone.
func grpcStatus(h http.Header) int {
	v, ok := h["Grpc-Status"]
	if !ok {
		v, ok = h[http.TrailerPrefix+"Grpc-Status"]
	}
	if !ok || len(v) == 0 {
		return router.GRPCNone
	}
	return router.ParseGRPCStatus(v[0])
}

// metricsWriter notes the status and time of the response headers. Unwrap lets
// http.ResponseController reach the real writer (flush, hijack, full duplex).
type metricsWriter struct {
	http.ResponseWriter
	start   time.Time
	status  int
	latency time.Duration
}

func (m *metricsWriter) WriteHeader(code int) {
	if m.status == 0 && code >= 200 {
		m.status = code
		m.latency = time.Since(m.start)
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *metricsWriter) Write(p []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
		m.latency = time.Since(m.start)
	}
	return m.ResponseWriter.Write(p)
}

func (m *metricsWriter) Flush() {
	if f, ok := m.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metricsWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }
