package pipeline

import (
	"net/http"

	"github.com/weftmesh/weft/proxy/inboundpolicy"
	"github.com/weftmesh/weft/proxy/tracing"
)

// serveTraced serves a sampled request (one whose span tracing.Tracer.Start began)
// through next, the side's handler, with a writer that notes the response for the
// span, and ends the span when the exchange is over: after the response body and its
// trailers, so a gRPC status sent in trailers is the span's. The deeper steps add what
// they learn (route, peer) through spanOf. Only sampled requests come here: the
// others take the side's handler directly, with no wrapper and no allocation.
func (p *Pipeline) serveTraced(sp *tracing.Span, w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) {
	tw := &tracedWriter{ResponseWriter: w, span: sp}
	defer func() {
		v := recover()
		status := tw.status
		if v == nil {
			status = answeredStatus(status, r)
		}
		sp.SetStatus(status, grpcStatus(w.Header()))
		if v != nil {
			sp.Abort()
		}
		p.o.Tracer.Finish(sp)
		if v != nil {
			panic(v)
		}
	}()
	next(tw, r)
}

// traceInbound notes on an inbound span the client and the route its policy matched.
func traceInbound(sp *tracing.Span, d inboundpolicy.Decision, ci *ConnInfo) {
	if d.Route != nil {
		sp.SetRoute(d.Route.Ref.Name)
	}
	var addr string
	if ci.Client.IsValid() {
		addr = ci.Client.Addr().Unmap().String()
	}
	sp.SetPeer(ci.PeerID, addr)
}

// spanOf is the span of a traced request's writer, nil for any other.
func spanOf(w http.ResponseWriter) *tracing.Span {
	if tw, ok := w.(*tracedWriter); ok {
		return tw.span
	}
	return nil
}

// untraced is the writer under a tracing wrapper (w itself when there is none).
func untraced(w http.ResponseWriter) http.ResponseWriter {
	if tw, ok := w.(*tracedWriter); ok {
		return tw.ResponseWriter
	}
	return w
}

// tracedWriter notes the response status for the span. Unwrap lets
// http.ResponseController reach the real writer (flush, hijack, full duplex).
type tracedWriter struct {
	http.ResponseWriter
	span   *tracing.Span
	status int
}

func (t *tracedWriter) WriteHeader(code int) {
	if t.status == 0 && code >= 200 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tracedWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	return t.ResponseWriter.Write(b)
}

func (t *tracedWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (t *tracedWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
