package pipeline

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/tap"
)

// proxy forwards through the upstream and records request and response metrics.
func (p *Pipeline) proxy(w http.ResponseWriter, r *http.Request, up *upstream, series *metrics.HTTPSeries) {
	if r.ProtoMajor == 1 {
		// Guard and ServedHere recognise Weft's own HTTP/1.1 writer, not a tracing
		// wrapper.
		if !h1.ServedHere(untraced(w)) {
			// net/http's server: let the response stream while the request body is
			// still being read (HTTP/1.1 bidirectional streaming). Weft's HTTP/1.1
			// writer does not need asking, and asking it would only build an
			// ErrNotSupported error (two allocations a request); HTTP/2 is always
			// full duplex. Full duplex also skips net/http's close after a corrupt
			// body: h1.Guard and forward end such a connection instead (see
			// proxy/internal/h1).
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		if !h1.Guard(untraced(w), r, h1Checked) {
			return
		}
	}
	series.Request()
	mw := &up.mw
	*mw = metricsWriter{ResponseWriter: w, start: time.Now()}
	if p.o.Tap.Active() {
		// The tap's whole cost while nobody taps is the load above.
		up.tap = p.tapStart(r, up)
		mw.tap = up.tap
	}
	defer func() {
		v := recover()
		status := answeredStatus(mw.status, r)
		var failure bool
		if up.attempts != nil {
			failure = v != nil || up.attempts.route.IsFailure(status, grpcStatus(w.Header()))
		} else {
			failure = v != nil || status >= 500 || grpcFailure(w.Header())
		}
		lat := mw.latency
		if lat == 0 {
			lat = time.Since(mw.start)
		}
		series.Response(status, failure, lat)
		if up.attempts != nil {
			// From the request's arrival (before routing) to the response headers,
			// every attempt included.
			up.attempts.rs.Response(status, failure, mw.start.Sub(up.attempts.start)+lat)
		}
		if up.tap != nil {
			tapEnd(up.tap, r, w.Header(), mw.status, v)
		}
		if v != nil {
			panic(v)
		}
	}()
	if h1.IsUpgrade(r) {
		p.upgradeProxy.ServeHTTP(mw, r.WithContext(context.WithValue(r.Context(), upstreamKey{}, up)))
		return
	}
	p.forward(mw, r, up)
}

// answeredStatus is the status a request was answered with, given the one written
// through the writers (0: none). The upgrade proxy hijacks the connection and writes
// the backend's 101 itself, past every writer (its failures are answered through
// them), and a handler that wrote nothing answered 200.
func answeredStatus(written int, r *http.Request) int {
	switch {
	case written != 0:
		return written
	case h1.IsUpgrade(r):
		return http.StatusSwitchingProtocols
	default:
		return http.StatusOK
	}
}

// grpcFailure reads grpc-status from the response headers or trailers; anything but
// OK (a malformed value included) is a failure, like the Linkerd proxy classifies gRPC.
func grpcFailure(h http.Header) bool {
	v, ok := grpcStatusValue(h)
	if !ok {
		return false
	}
	c, valid := grpcwire.ParseCode(v)
	return !valid || c != grpcwire.OK
}

// grpcDeadlinePassed reports whether the call's grpc-timeout has elapsed since start.
func grpcDeadlinePassed(h http.Header, start time.Time) bool {
	d, ok := grpcwire.ParseTimeout(h.Get(grpcwire.HeaderTimeout))
	return ok && time.Since(start) >= d
}

// grpcStatus is the grpc-status of a response (headers or trailers), or
// router.GRPCNone.
func grpcStatus(h http.Header) int {
	v, ok := grpcStatusValue(h)
	if !ok {
		return router.GRPCNone
	}
	return router.ParseGRPCStatus(v)
}

// grpcStatusValue is grpc-status from the headers (a trailers-only answer) or the
// trailers.
func grpcStatusValue(h http.Header) (string, bool) {
	v, ok := h[grpcwire.HeaderStatus]
	if !ok {
		v, ok = h[http.TrailerPrefix+grpcwire.HeaderStatus]
	}
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// metricsWriter notes the status and time of the response headers (or of the 101
// of a protocol switch, see Hijack). Unwrap lets http.ResponseController reach the
// real writer (flush, full duplex).
type metricsWriter struct {
	http.ResponseWriter
	start   time.Time
	status  int
	latency time.Duration
	// tap, when the request is tapped, is told of the head and the body's bytes.
	tap *tap.Exchange
}

// answered notes the response head: its status and when it left.
func (m *metricsWriter) answered(code int) {
	m.status = code
	m.latency = time.Since(m.start)
	if m.tap != nil {
		m.tap.ResponseInit(code)
	}
}

func (m *metricsWriter) WriteHeader(code int) {
	if m.status == 0 && code >= 200 {
		m.answered(code)
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *metricsWriter) Write(p []byte) (int, error) {
	if m.status == 0 {
		m.answered(http.StatusOK)
	}
	n, err := m.ResponseWriter.Write(p)
	if m.tap != nil {
		m.tap.CountResponseBytes(n)
	}
	return n, err
}

func (m *metricsWriter) Flush() {
	if f, ok := m.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metricsWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// Hijack is how the upgrade proxy takes the client's connection once the backend
// has answered 101, which it then writes past every writer. The switch is the
// response: noted here, the metrics and the tap see a 101 at the time of the switch,
// not a 200 (or no response) when the tunnel closes minutes later.
func (m *metricsWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(m.ResponseWriter).Hijack()
	if err == nil && m.status == 0 {
		m.answered(http.StatusSwitchingProtocols)
	}
	return c, brw, err
}

// h1Checked is the note of r's connection that Weft's HTTP/1.1 server checked the
// request it handed over (h1.Guard).
func h1Checked(r *http.Request) *atomic.Bool { return &ConnInfoFrom(r.Context()).H1Checked }
