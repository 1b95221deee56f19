package server_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

// meshH2 is a Weft proxy's weft.h2 server with nothing in front of it, for peers
// that are not Weft's own client: x/net's Transport, a raw frame writer, h2spec.
type meshH2 struct {
	p         *proxy
	clientTLS *tls.Config // a valid client certificate and ALPN weft.h2
}

func newMeshH2(t testing.TB) *meshH2 {
	t.Helper()
	ca := testpki.NewCA(t, "weft test anchor")
	serverID := spiffe("b", serverSA)
	b := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, serverID), ca))
	client := newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca)
	return &meshH2{p: b, clientTLS: client.ClientConfig(serverID, identity.ALPNHTTP2)}
}

// dial opens a TLS connection to the weft.h2 server.
func (m *meshH2) dial(t testing.TB) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m.p.inbound, m.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != identity.ALPNHTTP2 {
		t.Fatalf("ALPN %q, want %q", p, identity.ALPNHTTP2)
	}
	return c
}

// stalledApp is an app that accepts connections and never reads or answers: what
// the proxy forwards to it stays in the proxy, apart from what the kernel's buffers
// and an HTTP/2 connection's first 64 KiB window (weft-proto: h2) take.
func stalledApp(t testing.TB) string {
	t.Helper()
	ln := listenApp(t)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// rawH2 writes frames of its choosing to a weft.h2 server and records what comes
// back: the server's resets, GOAWAY, response statuses, and how the connection ended.
type rawH2 struct {
	t    testing.TB
	c    net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever something is recorded
	rst      map[uint32]http2.ErrCode
	status   map[uint32]string
	goAway   *http2.ErrCode
	readErr  error
	settings bool
}

// newRawH2 starts a connection: preface, empty SETTINGS, and a reader that records.
// With read false nothing is read (a peer that stops reading).
func newRawH2(t testing.TB, c net.Conn, read bool, settings ...http2.Setting) *rawH2 {
	t.Helper()
	r := &rawH2{t: t, c: c, changed: make(chan struct{}), rst: map[uint32]http2.ErrCode{}, status: map[uint32]string{}}
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 1 << 20
	r.henc = hpack.NewEncoder(&r.hbuf)
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	if read {
		go r.readLoop()
	}
	return r
}

func (r *rawH2) readLoop() {
	for {
		f, err := r.fr.ReadFrame()
		r.mu.Lock()
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			r.rst[f.StreamID] = f.ErrCode
		case *http2.GoAwayFrame:
			code := f.ErrCode
			r.goAway = &code
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" {
				r.status[f.StreamID] = s
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.settings = true
				r.wmu.Lock()
				r.fr.WriteSettingsAck()
				r.wmu.Unlock()
			}
		}
		if err != nil {
			r.readErr = err
		}
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// waitFor waits up to d for cond (called with mu held) to hold.
func (r *rawH2) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.After(d)
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// reset waits up to d for RST_STREAM on id; false when none came.
func (r *rawH2) reset(id uint32, d time.Duration) (http2.ErrCode, bool) {
	var code http2.ErrCode
	ok := r.waitFor(d, func() bool {
		var got bool
		code, got = r.rst[id]
		return got
	})
	return code, ok
}

// goneAway waits up to d for GOAWAY; false when none came.
func (r *rawH2) goneAway(d time.Duration) (http2.ErrCode, bool) {
	var code http2.ErrCode
	ok := r.waitFor(d, func() bool {
		if r.goAway != nil {
			code = *r.goAway
		}
		return r.goAway != nil
	})
	return code, ok
}

// headers sends a header block; pseudo-header fields first, as given.
func (r *rawH2) headers(id uint32, endStream bool, prio *http2.PriorityParam, fields ...string) {
	r.t.Helper()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	p := http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndStream: endStream, EndHeaders: true}
	if prio != nil {
		p.Priority = *prio
	}
	if err := r.fr.WriteHeaders(p); err != nil {
		r.t.Fatal(err)
	}
}

// request sends a request's HEADERS for the app at dst, then extra fields.
func (r *rawH2) request(id uint32, method, dst string, endStream bool, extra ...string) {
	r.t.Helper()
	fields := append([]string{":method", method, ":scheme", "http", ":authority", "app", ":path", "/",
		"weft-dst", dst, "weft-proto", "h2"}, extra...)
	r.headers(id, endStream, nil, fields...)
}

func (r *rawH2) data(id uint32, end bool, p []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.fr.WriteData(id, end, p)
}

func (r *rawH2) write(f func(fr *http2.Framer) error) {
	r.t.Helper()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := f(r.fr); err != nil {
		r.t.Fatal(err)
	}
}

// appRecorder is an app that reads each request's body and records those it got
// whole.
type appRecorder struct {
	addr string
	got  chan string // path and body of each request read to its end
}

func newAppRecorder(t testing.TB) *appRecorder {
	a := &appRecorder{got: make(chan string, 16)}
	a.addr = serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.Body); err != nil {
			return
		}
		a.got <- r.URL.Path + " " + buf.String()
		w.Write([]byte("ok"))
	}))
	return a
}

// listenApp listens for an app behind the inbound proxy, on an address the proxy
// counts as the pod's own (server.AppAddress), not loopback when the host has another.
func listenApp(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(server.AppAddress(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveApp is serveHTTP on listenApp's address.
func serveApp(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := listenApp(t)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: h, Protocols: &protos}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}
