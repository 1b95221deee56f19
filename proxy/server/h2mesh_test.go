package server_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/server"
)

// heapInuse is the live heap after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A peer that ignores flow control and sends 256 MiB on one stream to an app that
// does not read gets RST_STREAM(FLOW_CONTROL_ERROR) once it passes the stream window
// (RFC 9113 §6.9.1), and the proxy's heap stays bounded: before, every byte was
// buffered (12 MB to ~1 GB in the measurement).
func TestWeftH2FlowControlStream(t *testing.T) {
	m := newMeshH2(t)
	app := stalledApp(t)
	r := newRawH2(t, m.dial(t), true)
	before := heapInuse()
	r.request(1, "POST", app, false)
	frame := make([]byte, 16<<10)
	const total = 256 << 20
	var sent int
	for sent = 0; sent < total; sent += len(frame) {
		if err := r.data(1, false, frame); err != nil {
			t.Fatalf("after %d MiB: %v", sent>>20, err)
		}
		if sent%(8<<20) == 0 {
			// Stop early when the proxy is buffering it all, as it did before.
			if grown := int64(heapInuse()) - int64(before); grown > 64<<20 {
				t.Fatalf("the proxy's heap grew by %d MiB after %d MiB sent, without FLOW_CONTROL_ERROR", grown>>20, sent>>20)
			}
		}
	}
	code, ok := r.reset(1, 5*time.Second)
	if !ok || code != http2.ErrCodeFlowControl {
		t.Fatalf("after %d MiB on one stream: reset %v %v, want RST_STREAM FLOW_CONTROL_ERROR", sent>>20, ok, code)
	}
	grown := int64(heapInuse()) - int64(before)
	t.Logf("256 MiB sent ignoring flow control: RST_STREAM %v; the proxy's heap grew by %.1f MiB", code, float64(grown)/(1<<20))
	if grown > 16<<20 {
		t.Fatalf("the proxy's heap grew by %d MiB", grown>>20)
	}
	// The connection still serves: a PING is answered.
	r.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) })
	if _, gone := r.goneAway(200 * time.Millisecond); gone {
		t.Fatal("the connection went away after a stream error")
	}
}

// Streams that each stay inside their window but together pass the connection's
// get GOAWAY(FLOW_CONTROL_ERROR).
func TestWeftH2FlowControlConnection(t *testing.T) {
	m := newMeshH2(t)
	app := stalledApp(t)
	r := newRawH2(t, m.dial(t), true)
	chunk := make([]byte, 16<<10)
	streams := server.H2ConnWindow/server.H2StreamWindow + 2
	for i := range streams {
		id := uint32(2*i + 1)
		r.request(id, "POST", app, false)
		for n := 0; n < server.H2StreamWindow; n += len(chunk) {
			if err := r.data(id, false, chunk); err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
		}
	}
	code, ok := r.goneAway(5 * time.Second)
	if !ok || code != http2.ErrCodeFlowControl {
		t.Fatalf("%d streams x %d KiB against a %d MiB connection window: GOAWAY %v %v, want FLOW_CONTROL_ERROR",
			streams, server.H2StreamWindow>>10, server.H2ConnWindow>>20, ok, code)
	}
	for id, c := range r.rst {
		t.Errorf("stream %d reset with %v: no stream passed its own window", id, c)
	}
}

// WINDOW_UPDATE that takes a window past 2^31-1 is a stream error on a stream and a
// connection error on the connection (RFC 9113 §6.9.1).
func TestWeftH2WindowOverflow(t *testing.T) {
	m := newMeshH2(t)
	app := stalledApp(t)
	r := newRawH2(t, m.dial(t), true)
	r.request(1, "GET", app, true)
	r.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 1<<31-1) })
	if code, ok := r.reset(1, 5*time.Second); !ok || code != http2.ErrCodeFlowControl {
		t.Fatalf("stream window past 2^31-1: reset %v %v, want FLOW_CONTROL_ERROR", ok, code)
	}
	r.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1) })
	if code, ok := r.goneAway(5 * time.Second); !ok || code != http2.ErrCodeFlowControl {
		t.Fatalf("connection window past 2^31-1: GOAWAY %v %v, want FLOW_CONTROL_ERROR", ok, code)
	}
}

// Malformed requests (RFC 9113 §8.1.1, §8.2.2, §8.3.1, §10.5.1) and stream-state
// errors (§5.1, §5.1.1, §5.3.1) are answered as the RFC says, and none reaches the
// app whole.
func TestWeftH2MalformedAndStreamStates(t *testing.T) {
	type step func(r *rawH2, app string)
	req := func(id uint32, end bool, extra ...string) step {
		return func(r *rawH2, app string) { r.request(id, "POST", app, end, extra...) }
	}
	data := func(id uint32, end bool, s string) step {
		return func(r *rawH2, app string) { r.data(id, end, []byte(s)) }
	}
	raw := func(f func(fr *http2.Framer) error) step {
		return func(r *rawH2, app string) { r.write(f) }
	}
	const (
		reset = iota
		goAway
		status
	)
	tests := []struct {
		name  string
		steps []step
		want  int
		code  http2.ErrCode // for reset and goAway
		id    uint32        // for reset and status
		st    string        // for status
		whole bool          // a well-formed request precedes the error: the app gets it
	}{
		{name: "missing :scheme", steps: []step{func(r *rawH2, app string) {
			r.headers(1, true, nil, ":method", "GET", ":authority", "app", ":path", "/", "weft-dst", app)
		}}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "connection field", steps: []step{req(1, true, "connection", "keep-alive")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "keep-alive field", steps: []step{req(1, true, "keep-alive", "timeout=5")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "transfer-encoding field", steps: []step{req(1, false, "transfer-encoding", "chunked"), data(1, true, "x")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "upgrade field", steps: []step{req(1, true, "upgrade", "websocket")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "te other than trailers", steps: []step{req(1, true, "te", "gzip")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "header list over the limit", steps: []step{req(1, true, "x-a", strings.Repeat("a", server.H2MaxHeaderList/2), "x-b", strings.Repeat("b", server.H2MaxHeaderList/2))}, want: status, id: 1, st: "431"},
		{name: "content-length without DATA", steps: []step{req(1, true, "content-length", "10")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "DATA longer than content-length", steps: []step{req(1, false, "content-length", "5"), data(1, true, "0123456789")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "DATA shorter than content-length", steps: []step{req(1, false, "content-length", "10"), data(1, true, "01234")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "DATA past content-length after the declared bytes", steps: []step{req(1, false, "content-length", "5"), data(1, false, "hello"),
			func(*rawH2, string) { time.Sleep(100 * time.Millisecond) }, data(1, true, "!")}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "DATA after END_STREAM", steps: []step{req(1, false), data(1, true, "x"), data(1, true, "y")}, want: reset, id: 1, code: http2.ErrCodeStreamClosed, whole: true},
		{name: "HEADERS depending on itself", steps: []step{func(r *rawH2, app string) {
			r.headers(1, true, &http2.PriorityParam{StreamDep: 1, Weight: 15}, ":method", "GET", ":scheme", "http", ":path", "/", "weft-dst", app)
		}}, want: reset, id: 1, code: http2.ErrCodeProtocol},
		{name: "PRIORITY depending on itself", steps: []step{raw(func(fr *http2.Framer) error {
			return fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 15})
		})}, want: reset, id: 3, code: http2.ErrCodeProtocol},
		{name: "DATA on an idle stream", steps: []step{data(5, true, "x")}, want: goAway, code: http2.ErrCodeProtocol},
		{name: "WINDOW_UPDATE on an idle stream", steps: []step{raw(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(5, 1) })}, want: goAway, code: http2.ErrCodeProtocol},
		{name: "RST_STREAM on an idle stream", steps: []step{raw(func(fr *http2.Framer) error { return fr.WriteRSTStream(5, http2.ErrCodeCancel) })}, want: goAway, code: http2.ErrCodeProtocol},
		{name: "stream id going backwards", steps: []step{req(5, true), req(3, true)}, want: goAway, code: http2.ErrCodeProtocol, whole: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMeshH2(t)
			app := newAppRecorder(t)
			r := newRawH2(t, m.dial(t), true)
			for _, s := range tc.steps {
				s(r, app.addr)
			}
			switch tc.want {
			case reset:
				if code, ok := r.reset(tc.id, 5*time.Second); !ok || code != tc.code {
					t.Fatalf("stream %d: reset %v %v, want %v", tc.id, ok, code, tc.code)
				}
			case goAway:
				if code, ok := r.goneAway(5 * time.Second); !ok || code != tc.code {
					t.Fatalf("GOAWAY %v %v, want %v", ok, code, tc.code)
				}
			case status:
				if !r.waitFor(5*time.Second, func() bool { return r.status[tc.id] != "" }) || r.status[tc.id] != tc.st {
					t.Fatalf("stream %d: status %q, want %s", tc.id, r.status[tc.id], tc.st)
				}
			}
			select {
			case got := <-app.got:
				if !tc.whole {
					t.Fatalf("the app received a whole request: %q", got)
				}
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// After a connection error the server's GOAWAY reaches a peer that still had frames
// in flight: it stops writing, reads what still comes, and closes only then. Closing
// with unread input made the kernel send a reset, which dropped what the server had
// written and the peer not yet received, GOAWAY included.
func TestWeftH2GoAwaySurvivesUnreadInput(t *testing.T) {
	m := newMeshH2(t)
	// A small receive buffer keeps most of the server's answers in its own send
	// buffer while this peer does not read.
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := tls.DialWithDialer(d, "tcp", m.p.inbound, m.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	r := newRawH2(t, c, false)
	for i := range 4000 {
		r.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{byte(i)}) })
	}
	r.headers(2, true, nil, ":method", "GET", ":scheme", "http", ":path", "/") // a client's even stream: connection error
	junk := make([]byte, 0, 17*4096)
	for range 4096 {
		junk = append(junk, 0, 0, 8, byte(http2.FramePing), 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	}
	c.Write(junk) // frames the server does not read as frames any more
	time.Sleep(300 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
			}
			return
		}
	}
}

// A peer that stops reading cannot hold a connection, and the handlers of its
// streams, for longer than the write deadline.
func TestWeftH2WriteDeadline(t *testing.T) {
	defer server.SetH2WriteTimeout(500 * time.Millisecond)()
	m := newMeshH2(t)
	ended := make(chan error, 1)
	app := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for range 1024 { // 64 MiB
			if _, err := w.Write(buf); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}))
	// Windows as large as allowed, then never read: the server's flush blocks.
	r := newRawH2(t, m.dial(t), false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	r.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1-65535) })
	r.request(1, "GET", app, true)
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the app wrote 64 MiB to a peer that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app's response is still being written 10 s after the peer stopped reading (write deadline 0.5 s)")
	}
}

// io.Discard keeps the import used by later tests in this file.
var _ = io.Discard
