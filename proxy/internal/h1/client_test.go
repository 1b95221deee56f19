package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer accepts loopback connections and runs serve on each; accepted counts them.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int32
}

func newRawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return s
}

func testH1Client() *Client {
	return &Client{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		IdleTimeout: time.Minute,
		MaxIdle:     4,
	}
}

func newGet(ctx context.Context, method, host string) *http.Request {
	r := &http.Request{Method: method, URL: &url.URL{Scheme: "http", Host: host, Path: "/p"}, Header: http.Header{}, Host: host}
	return r.WithContext(ctx)
}

// answer reads one request and writes resp; false when the client went away.
func answer(c net.Conn, br *bufio.Reader, resp string) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, req.Body)
	_, err = io.WriteString(c, resp)
	return err == nil
}

const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

func getBody(t *testing.T, h *Client, method, host string) (*http.Response, string) {
	t.Helper()
	resp, err := h.RoundTrip(newGet(context.Background(), method, host))
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func TestH1ClientConnections(t *testing.T) {
	cases := []struct {
		name     string
		method   string
		serve    func(c net.Conn, br *bufio.Reader)
		requests int
		body     string
		wantConn int32 // connections the server accepted
	}{
		{
			name:   "keep-alive reuses one connection",
			method: http.MethodGet, requests: 20, body: "hello", wantConn: 1,
			serve: func(c net.Conn, br *bufio.Reader) {
				for answer(c, br, okResp) {
				}
			},
		},
		{
			name:   "chunked response keeps the connection",
			method: http.MethodGet, requests: 5, body: "hello", wantConn: 1,
			serve: func(c net.Conn, br *bufio.Reader) {
				for answer(c, br, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n") {
				}
			},
		},
		{
			name:   "HEAD has no body to read",
			method: http.MethodHead, requests: 5, body: "", wantConn: 1,
			serve: func(c net.Conn, br *bufio.Reader) {
				for answer(c, br, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") {
				}
			},
		},
		{
			// The server closes every connection after one response without saying
			// so: each pooled connection is found dead on use and the request is
			// sent again on a new one.
			name:   "connection closed while idle is retried",
			method: http.MethodGet, requests: 5, body: "hello", wantConn: 5,
			serve: func(c net.Conn, br *bufio.Reader) {
				answer(c, br, okResp)
			},
		},
		{
			name:   "Connection: close is not pooled",
			method: http.MethodGet, requests: 3, body: "hello", wantConn: 3,
			serve: func(c net.Conn, br *bufio.Reader) {
				answer(c, br, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, tc.serve)
			h := testH1Client()
			defer h.CloseIdle(true)
			for i := range tc.requests {
				resp, body := getBody(t, h, tc.method, srv.ln.Addr().String())
				if resp.StatusCode != 200 || body != tc.body {
					t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, tc.body)
				}
				// Let a closing server's FIN arrive before the next request.
				time.Sleep(5 * time.Millisecond)
			}
			if got := srv.accepted.Load(); got != tc.wantConn {
				t.Fatalf("server accepted %d connections, want %d", got, tc.wantConn)
			}
		})
	}
}

func TestH1ClientEarlyCloseDropsConnection(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		big := "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 100000)
		for answer(c, br, big) {
		}
	})
	h := testH1Client()
	defer h.CloseIdle(true)
	for range 2 {
		resp, err := h.RoundTrip(newGet(context.Background(), "GET", srv.ln.Addr().String()))
		if err != nil {
			t.Fatal(err)
		}
		// Read a little and give up: the rest of the body is still on the wire, so
		// the connection must not be reused.
		io.ReadFull(resp.Body, make([]byte, 10))
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after close succeeded")
		}
	}
	if got := srv.accepted.Load(); got != 2 {
		t.Fatalf("server accepted %d connections, want 2", got)
	}
}

func TestH1ClientCancel(t *testing.T) {
	cases := []struct {
		name string
		// cancelIn: while waiting for the response header, or while reading the body.
		inBody bool
	}{{name: "waiting for the response"}, {name: "reading the body", inBody: true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				if tc.inBody {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
				}
				<-release
			})
			h := testH1Client()
			defer h.CloseIdle(true)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			resp, err := h.RoundTrip(newGet(ctx, "GET", srv.ln.Addr().String()))
			if tc.inBody {
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(resp.Body)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("cancel took %v", d)
			}
		})
	}
}

func TestH1ClientInformational(t *testing.T) {
	cases := []struct {
		name    string
		prefix  string // informational responses before the final one
		wantErr bool
		want1xx []int
	}{
		{name: "early hints forwarded", prefix: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", want1xx: []int{103}},
		{name: "two informational", prefix: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", want1xx: []int{100, 103}},
		{name: "too many", prefix: strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				answer(c, br, tc.prefix+okResp)
			})
			h := testH1Client()
			defer h.CloseIdle(true)
			var got []int
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
				got = append(got, code)
				return nil
			}}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			resp, err := h.RoundTrip(newGet(ctx, "GET", srv.ln.Addr().String()))
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || fmt.Sprint(got) != fmt.Sprint(tc.want1xx) {
				t.Fatalf("status %d, 1xx %v; want 200, %v", resp.StatusCode, got, tc.want1xx)
			}
		})
	}
}

func TestFastH1Eligible(t *testing.T) {
	get := func(mod func(r *http.Request)) *http.Request {
		r := newGet(context.Background(), "GET", "127.0.0.1:1")
		mod(r)
		return r
	}
	cases := []struct {
		name string
		req  *http.Request
		want bool
	}{
		{"GET without body", get(func(*http.Request) {}), true},
		{"HEAD", get(func(r *http.Request) { r.Method = "HEAD" }), true},
		{"NoBody", get(func(r *http.Request) { r.Body = http.NoBody }), true},
		{"POST", get(func(r *http.Request) { r.Method = "POST" }), false},
		{"DELETE", get(func(r *http.Request) { r.Method = "DELETE" }), false},
		{"GET with body", get(func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("x")) }), false},
		{"Upgrade", get(func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }), false},
		{"trailers", get(func(r *http.Request) { r.Trailer = http.Header{"X": nil} }), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CanCarry(tc.req); got != tc.want {
				t.Fatalf("CanCarry = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWriteRequestHead: what writeRequestHead writes reads back as the same request
// as Request.Write's output, and it leaves to Request.Write what needs cleaning up.
func TestWriteRequestHead(t *testing.T) {
	mk := func(method, target, host string, h http.Header) *http.Request {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: target}
		}
		u.Host = "10.0.0.1:8080"
		return &http.Request{Method: method, URL: u, Host: host, Header: h}
	}
	cases := []struct {
		name string
		req  *http.Request
		own  bool
	}{
		{"GET with fields", mk("GET", "/a/b?c=d&e=%20f", "svc.ns:80", http.Header{"Accept": {"*/*"}, "X-Two": {"1", "2"}, "User-Agent": {"curl/8"}}), true},
		{"no User-Agent", mk("HEAD", "/", "svc", http.Header{}), true},
		{"empty User-Agent", mk("GET", "/", "svc", http.Header{"User-Agent": {""}}), true},
		{"no Host: the URL's", mk("GET", "/", "", http.Header{}), true},
		{"newline in a value", mk("GET", "/", "svc", http.Header{"X-Bad": {"a\r\nInjected: 1"}}), true},
		{"excluded fields", mk("OPTIONS", "/", "svc", http.Header{"Content-Length": {"5"}, "Trailer": {"X"}, "Host": {"other"}}), true},
		{"IPv6 zone", mk("GET", "/", "[fe80::1%eth0]:80", http.Header{}), false},
		{"non-ASCII host", mk("GET", "/", "bücher.example", http.Header{}), false},
		{"control character in target", &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: "a\x01b"}, Host: "svc", Header: http.Header{}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var own, std bytes.Buffer
			bw := bufio.NewWriter(&own)
			if got := writeRequestHead(bw, tc.req); got != tc.own {
				t.Fatalf("writeRequestHead = %v, want %v", got, tc.own)
			}
			bw.Flush()
			if !tc.own {
				if own.Len() != 0 {
					t.Fatalf("wrote %q before giving up", own.String())
				}
				return
			}
			if err := tc.req.Write(&std); err != nil {
				t.Fatal(err)
			}
			a, err := http.ReadRequest(bufio.NewReader(&own))
			if err != nil {
				t.Fatalf("reading %q: %v", own.String(), err)
			}
			b, err := http.ReadRequest(bufio.NewReader(&std))
			if err != nil {
				t.Fatal(err)
			}
			if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host || !reflect.DeepEqual(a.Header, b.Header) {
				t.Fatalf("own %q\nstd %q", own.String(), std.String())
			}
		})
	}
}
