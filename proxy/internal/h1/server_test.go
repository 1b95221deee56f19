package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h1Harness accepts loopback connections and serves them with Server; srv (the
// handler) also serves the connections handed over. Responses say who served them
// in X-Served-By: "weft" or "net/http".
type h1Harness struct {
	s      *Server
	drains *testDrains
	addr   string
}

func newH1Harness(t *testing.T, h http.HandlerFunc) *h1Harness {
	t.Helper()
	// The proxy's defaults (server.Options).
	s := &Server{HeaderReadTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by := "net/http"
		if _, ok := w.(*response); ok {
			by = "weft"
		}
		w.Header().Set("X-Served-By", by)
		h(w, r)
	})}
	drains := &testDrains{}
	return &h1Harness{s: s, drains: drains, addr: serveH1Loopback(t, s, drains, srv)}
}

// serveH1Loopback accepts loopback connections for s and serves each with
// ServeConn, as the proxy's accept loop does after detection; srv serves the
// connections handed over, each with the note that its request was checked
// (checkedFrom). It returns the listening address.
func serveH1Loopback(tb testing.TB, s *Server, drains *testDrains, srv *http.Server) string {
	s.Drain = drains
	l := &handOverListener{ch: make(chan net.Conn), done: make(chan struct{})}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if hc, ok := c.(*handedConn); ok {
			return context.WithValue(ctx, checkedKey{}, hc.checked)
		}
		return ctx
	}
	go srv.Serve(l)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		drains.Shutdown(ctx)
		srv.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				checked := new(atomic.Bool)
				ctx := context.WithValue(context.Background(), checkedKey{}, checked)
				s.ServeConn(&testConn{TCPConn: c.(*net.TCPConn)}, ServeConnOpts{
					Context: context.WithValue(ctx, http.ServerContextKey, srv),
					Handler: srv.Handler,
					HandOver: func(nc net.Conn) {
						checked.Store(true)
						select {
						case l.ch <- &handedConn{Conn: nc, checked: checked}:
						case <-l.done:
							nc.Close()
						}
					},
				})
			}()
		}
	}()
	return ln.Addr().String()
}

// checkedFrom is the note of a request's connection that Server checked the request
// it handed over (Guard's argument).
func checkedFrom(ctx context.Context) *atomic.Bool {
	if b, ok := ctx.Value(checkedKey{}).(*atomic.Bool); ok {
		return b
	}
	return new(atomic.Bool)
}

type checkedKey struct{}

// testConn is a TCP connection that can take bytes back (as detect.Conn can).
type testConn struct {
	*net.TCPConn
	unread []byte
}

func (c *testConn) Read(p []byte) (int, error) {
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		c.unread = c.unread[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

func (c *testConn) Unread(p []byte) {
	c.unread = append(append([]byte(nil), p...), c.unread...)
}

// handedConn is a connection handed over to net/http, with its connection's note.
type handedConn struct {
	net.Conn
	checked *atomic.Bool
}

// handOverListener feeds the handed-over connections to net/http's server.
type handOverListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *handOverListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handOverListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handOverListener) Addr() net.Addr { return &net.TCPAddr{} }

// testDrains is a Draining registry with the proxy's graceful shutdown: GoAway for
// every connection, then a wait until they are all gone.
type testDrains struct {
	mu      sync.Mutex
	conns   map[interface{ GoAway() }]struct{}
	closing bool
	gone    chan struct{}
}

func (d *testDrains) Add(c interface{ GoAway() }) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	if d.conns == nil {
		d.conns = map[interface{ GoAway() }]struct{}{}
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *testDrains) Remove(c interface{ GoAway() }) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.conns, c)
	if d.closing && len(d.conns) == 0 && d.gone != nil {
		close(d.gone)
		d.gone = nil
	}
}

// Shutdown asks every connection to finish and waits until they have, or ctx ends.
func (d *testDrains) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	gone := make(chan struct{})
	if len(d.conns) == 0 {
		close(gone)
	} else {
		d.gone = gone
	}
	for c := range d.conns {
		go c.GoAway()
	}
	d.mu.Unlock()
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rawClient is one client connection that writes raw bytes and reads responses.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (h *h1Harness) dial(t *testing.T) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response for a request with method, and its whole body.
func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closed says whether the server closed the connection (EOF on the next read).
func (rc *rawClient) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: app\r\n\r\n" }

func echoPath(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.Method+" "+r.URL.Path)
}

func TestH1ServerKeepAliveAndPipelining(t *testing.T) {
	h := newH1Harness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(r.URL.Path)))
		io.WriteString(w, r.URL.Path)
	})
	rc := h.dial(t)
	for _, p := range []string{"/one/", "/two/"} {
		rc.send(get(p))
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != p || resp.Header.Get("X-Served-By") != "weft" || resp.Header.Get("Date") == "" || resp.Close {
			t.Fatalf("got %d %q by %q, Date %q, close %v", resp.StatusCode, body, resp.Header.Get("X-Served-By"), resp.Header.Get("Date"), resp.Close)
		}
	}
	// Three requests in one write come back in order, on the same connection.
	rc.send(get("/aaa/") + get("/bbb/") + get("/ccc/"))
	for _, p := range []string{"/aaa/", "/bbb/", "/ccc/"} {
		if resp, body := rc.read("GET"); body != p || resp.Header.Get("X-Served-By") != "weft" {
			t.Fatalf("pipelined: got %q by %q, want %q", body, resp.Header.Get("X-Served-By"), p)
		}
	}
	// Bare LF line ends, as net/textproto accepts them.
	rc.send("GET /lf-ok/ HTTP/1.1\nHost: app\n\n")
	if resp, body := rc.read("GET"); body != "/lf-ok/" || resp.Header.Get("X-Served-By") != "weft" {
		t.Fatalf("LF request: got %q by %q", body, resp.Header.Get("X-Served-By"))
	}
}

func TestH1ServerHandsOver(t *testing.T) {
	h := newH1Harness(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	})
	// A chunked request goes to net/http, with everything read before it, and the
	// connection stays with net/http.
	rc := h.dial(t)
	rc.send(get("/a") + "POST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello")
	for _, want := range []string{"GET /a ", "POST /b hello"} {
		if resp, body := rc.read("GET"); body != want || resp.Header.Get("X-Served-By") != "weft" {
			t.Fatalf("got %q by %q, want %q by weft", body, resp.Header.Get("X-Served-By"), want)
		}
	}
	rc.send("POST /c HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get("/d"))
	for _, want := range []string{"POST /c hello", "GET /d "} {
		if resp, body := rc.read("GET"); body != want || resp.Header.Get("X-Served-By") != "net/http" {
			t.Fatalf("got %q by %q, want %q by net/http", body, resp.Header.Get("X-Served-By"), want)
		}
	}

	for _, tc := range []struct {
		name, req string
		status    int
		body      string
	}{
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: app\r\n\r\n", 200, "GET /old "},
		{"Expect", "PUT /e HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200, "PUT /e hi"},
		{"chunked", "POST /ch HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 200, "POST /ch hi"},
		{"no Host", "GET /nohost HTTP/1.1\r\n\r\n", 400, ""},
		{"two Hosts", "GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		{"bad field", "GET /f HTTP/1.1\r\nHost: app\r\nBad Field: x\r\n\r\n", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := h.dial(t)
			rc.send(tc.req)
			resp, body := rc.read("GET")
			if resp.StatusCode == 100 {
				resp, body = rc.read("GET")
			}
			if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == 200 && resp.Header.Get("X-Served-By") != "net/http" {
				t.Fatalf("served by %q, want net/http", resp.Header.Get("X-Served-By"))
			}
		})
	}
}

// TestH1ServerLargeHeaders: a header over the 4 KiB buffer is read whole into a larger
// one and served here, so its framing is checked like any other; one over
// MaxHeaderBytes gets 431; the connection returns to the small buffer afterwards.
func TestH1ServerLargeHeaders(t *testing.T) {
	h := newH1Harness(t, echoPath)
	big := "X-Big: " + strings.Repeat("b", 6000) + "\r\n"
	rc := h.dial(t)
	for i := range 3 {
		rc.send("GET /big" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: app\r\n" + big + "\r\n" + get("/small"))
		for _, want := range []string{"GET /big" + strconv.Itoa(i), "GET /small"} {
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || body != want || resp.Header.Get("X-Served-By") != "weft" {
				t.Fatalf("got %d %q by %q, want 200 %q by weft", resp.StatusCode, body, resp.Header.Get("X-Served-By"), want)
			}
		}
	}
	if size := h.lastConnBufSize(t); size != bufSize {
		t.Errorf("read buffer %d bytes after the large headers, want %d again", size, bufSize)
	}

	rc = h.dial(t)
	rc.send("POST /te HTTP/1.1\r\nHost: app\r\n" + big + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/smuggled"))
	if resp, _ := rc.read("POST"); resp.StatusCode != 400 || !rc.closed() {
		t.Fatalf("ambiguous framing behind a large header: %d, want 400 and the connection closed", resp.StatusCode)
	}

	rc = h.dial(t)
	rc.send("GET /huge HTTP/1.1\r\nHost: app\r\nX-Huge: " + strings.Repeat("h", 80<<10) + "\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !rc.closed() {
		t.Fatalf("header over MaxHeaderBytes: %d, want 431 and the connection closed", resp.StatusCode)
	}
}

// lastConnBufSize is the read buffer size of the harness's one open connection.
func (h *h1Harness) lastConnBufSize(t *testing.T) int {
	h.drains.mu.Lock()
	defer h.drains.mu.Unlock()
	for d := range h.drains.conns {
		if c, ok := d.(*serverConn); ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.br.Size()
		}
	}
	t.Fatal("no open connection")
	return 0
}

func TestH1ServerRequestBodies(t *testing.T) {
	bodyErr := make(chan error, 1)
	h := newH1Harness(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ignore":
			io.WriteString(w, "not read")
		case "/partial":
			_, err := io.ReadAll(r.Body)
			bodyErr <- err
		default:
			b, err := io.ReadAll(r.Body)
			if err != nil {
				t.Errorf("read body: %v", err)
			}
			io.WriteString(w, r.URL.Path+" "+string(b))
		}
	})
	post := func(path, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: app\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}

	// Read to its end: the connection serves the next requests, pipelined too.
	rc := h.dial(t)
	big := strings.Repeat("b", 100<<10) // more than the connection's buffer
	rc.send(post("/one", "first") + get("/two"))
	rc.send(post("/three", big))
	for _, want := range []string{"/one first", "/two ", "/three " + big} {
		resp, body := rc.read("POST")
		if body != want || resp.Header.Get("X-Served-By") != "weft" || resp.Close {
			t.Fatalf("got %.40q by %q (close %v), want %.40q by weft", body, resp.Header.Get("X-Served-By"), resp.Close, want)
		}
	}

	// A body the handler does not read ends the connection, and the response says so.
	rc = h.dial(t)
	rc.send(post("/ignore", "unread body"))
	if resp, body := rc.read("POST"); body != "not read" || !resp.Close {
		t.Fatalf("got %q, close %v; want Connection: close", body, resp.Close)
	}
	if !rc.closed() {
		t.Fatal("connection still open after a body nobody read")
	}

	// A client that leaves midway: the handler's read fails.
	rc = h.dial(t)
	rc.send("POST /partial HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nonly some")
	rc.c.Close()
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("a body cut short read without error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's body read did not end when the client left")
	}
}

func TestH1ServerResponses(t *testing.T) {
	h := newH1Harness(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
		case "/status":
			w.WriteHeader(http.StatusAccepted)
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusNotModified)
		case "/stream":
			// Unknown length: chunked, with a trailer announced and one not.
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "final")
		case "/head":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "ignored for HEAD")
		case "/newline":
			w.Header().Set("X-Split", "a\r\nInjected: yes")
		}
	})
	rc := h.dial(t)
	check := func(method, path string, status int, body string, cl int64) *http.Response {
		t.Helper()
		rc.send(method + " " + path + " HTTP/1.1\r\nHost: app\r\n\r\n")
		resp, b := rc.read(method)
		if resp.StatusCode != status || b != body || resp.ContentLength != cl {
			t.Fatalf("%s %s: got %d %q length %d, want %d %q length %d", method, path, resp.StatusCode, b, resp.ContentLength, status, body, cl)
		}
		if resp.Header.Get("X-Served-By") != "weft" {
			t.Fatalf("%s %s served by %q", method, path, resp.Header.Get("X-Served-By"))
		}
		return resp
	}
	check("GET", "/empty", 200, "", 0)
	check("GET", "/status", 202, "", 0)
	check("GET", "/nocontent", 204, "", 0)
	if resp := check("GET", "/notmodified", 304, "", 0); resp.Header.Get("Content-Length") != "10" {
		t.Fatalf("304 lost its Content-Length: %v", resp.Header)
	}
	resp := check("GET", "/stream", 200, "part1,part2", -1)
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	if resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Fatalf("trailers %v", resp.Trailer)
	}
	check("HEAD", "/head", 200, "", 100)
	resp = check("GET", "/newline", 200, "", 0)
	if resp.Header.Get("Injected") != "" {
		t.Fatal("a header value with CRLF made a new field")
	}

	// 103 Early Hints goes out before the final response.
	rc.send(get("/hints"))
	first, _ := rc.read("GET")
	final, body := rc.read("GET")
	if first.StatusCode != 103 || first.Header.Get("Link") == "" || final.StatusCode != 200 || body != "final" || final.Header.Get("Link") != "" {
		t.Fatalf("got %d %v then %d %q %v", first.StatusCode, first.Header, final.StatusCode, body, final.Header)
	}
}

func TestH1ServerClosing(t *testing.T) {
	var started = make(chan struct{}, 1)
	var cancelled = make(chan error, 1)
	release := make(chan struct{})
	h := newH1Harness(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/abort":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/wait":
			started <- struct{}{}
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
			case <-release:
				io.WriteString(w, "released")
			}
		default:
			echoPath(w, r)
		}
	})

	t.Run("Connection: close", func(t *testing.T) {
		rc := h.dial(t)
		rc.send("GET /x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
		if resp, _ := rc.read("GET"); !resp.Close {
			t.Fatal("response does not say Connection: close")
		}
		if !rc.closed() {
			t.Fatal("connection still open")
		}
	})
	for _, tc := range []struct{ name, path string }{
		{"body shorter than declared", "/short"},
		{"handler aborts", "/abort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := h.dial(t)
			rc.send(get(tc.path))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("reading the body of %s: %v, want unexpected EOF", tc.path, err)
			}
		})
	}
	t.Run("client goes away", func(t *testing.T) {
		rc := h.dial(t)
		rc.send(get("/wait"))
		<-started
		rc.c.Close()
		select {
		case err := <-cancelled:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("context ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the request's context was not cancelled when the client left")
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		idle := h.dial(t)
		idle.send(get("/idle"))
		idle.read("GET")
		busy := h.dial(t)
		busy.send(get("/wait"))
		<-started
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done <- h.drains.Shutdown(ctx)
		}()
		// The idle connection is closed at once; the busy one finishes its
		// response, told to close.
		if !idle.closed() {
			t.Fatal("idle connection not closed by Shutdown")
		}
		time.Sleep(50 * time.Millisecond)
		close(release)
		resp, body := busy.read("GET")
		if body != "released" || !resp.Close {
			t.Fatalf("in-flight response %q, close %v", body, resp.Close)
		}
		if !busy.closed() {
			t.Fatal("busy connection not closed after its response")
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}
