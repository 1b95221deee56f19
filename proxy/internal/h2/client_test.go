package h2

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cPeer is a plaintext HTTP/2 server from golang.org/x/net/http2 (another
// implementation than the proxy's own) for the mesh client's tests. first, when
// set, handles the first accepted connection instead.
func h2cPeer(t *testing.T, h http.Handler, first func(net.Conn)) (dial func(context.Context) (net.Conn, error), dials *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := &http2.Server{}
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n == 0 && first != nil {
				go first(c)
				continue
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
		}
	}()
	dials = &atomic.Int32{}
	return func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, dials
}

// The client against another HTTP/2 server: bodies both ways, request and
// response trailers (announced and not), headers, statuses, many requests on one connection.
func TestClientInterop(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Resp-Sum")
		w.Header().Set("X-Got-Method", r.Method)
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Req-Sum"))
		w.Header().Set("X-Got-Host", r.Host)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "echo:"+string(body))
		w.Header().Set("X-Resp-Sum", "7")
		// Not announced: the response's Trailer map is made when it arrives.
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})
	dial, dials := h2cPeer(t, h, nil)
	m := NewClient(dial)
	for i := range 20 {
		var body io.Reader
		method := "GET"
		if i%2 == 1 {
			method, body = "POST", strings.NewReader(strings.Repeat("x", i*1000))
		}
		req, _ := http.NewRequest(method, "http://peer/path?q=1", body)
		req.Host = "svc.ns:8080"
		if body != nil {
			req.Trailer = http.Header{"X-Req-Sum": {"42"}}
		}
		resp, err := m.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d body: %v", i, err)
		}
		wantTrailer := ""
		if body != nil {
			wantTrailer = "42"
		}
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Got-Method") != method ||
			resp.Header.Get("X-Got-Host") != "svc.ns:8080" || resp.Header.Get("X-Got-Trailer") != wantTrailer ||
			string(got) != "echo:"+strings.Repeat("x", i%2*i*1000) || resp.Trailer.Get("X-Resp-Sum") != "7" ||
			resp.Trailer.Get("X-Late") != "late" {
			t.Fatalf("request %d: status %d headers %v body %d bytes trailers %v", i, resp.StatusCode, resp.Header, len(got), resp.Trailer)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled for sequential requests, want 1", n)
	}
}

// A connection that answers the first request with GOAWAY (last stream 0: nothing
// processed) is left, and the request goes out again on a new connection, with the
// body GetBody gives (as x/net's http2.Transport does).
func TestClientRetriesAfterGoAway(t *testing.T) {
	goAwayFirst := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil {
			return
		}
		fr := http2.NewFramer(c, br)
		fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.HeadersFrame); ok {
				fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				time.Sleep(100 * time.Millisecond)
				return
			}
		}
	}
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"GET", func() *http.Request { r, _ := http.NewRequest("GET", "http://peer/", nil); return r }},
		{"POST whose body GetBody gives again", func() *http.Request {
			// NewRequest sets GetBody for a strings.Reader; a body read once from an
			// app's connection gets one from proxy/transport (replayable).
			r, _ := http.NewRequest("POST", "http://peer/", strings.NewReader("payload"))
			return r
		}},
		{"POST without GetBody", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://peer/", io.NopCloser(strings.NewReader("payload")))
			r.ContentLength = int64(len("payload"))
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial, dials := h2cPeer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "second connection")
				if b, _ := io.ReadAll(r.Body); len(b) > 0 {
					io.WriteString(w, ", body "+string(b))
				}
			}), goAwayFirst)
			m := NewClient(dial)
			defer m.CloseIdle()
			req := tc.req()
			resp, err := m.RoundTrip(req)
			if req.Body != nil && req.GetBody == nil {
				// Nothing to send again: the peer's refusal is the answer.
				if err == nil || dials.Load() != 1 {
					t.Fatalf("got %v after %d dials, want the GOAWAY's error from the first connection", err, dials.Load())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "second connection"
			if req.Method == "POST" {
				want += ", body payload"
			}
			if string(got) != want || dials.Load() != 2 {
				t.Fatalf("got %q after %d dials, want %q from a second connection", got, dials.Load(), want)
			}
		})
	}
}

// Cancelling a request's context resets its stream: the server's handler sees its
// own context end.
func TestClientCancelResetsStream(t *testing.T) {
	seen := make(chan error, 1)
	dial, _ := h2cPeer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			seen <- r.Context().Err()
		case <-time.After(5 * time.Second):
			seen <- nil
		}
	}), nil)
	m := NewClient(dial)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://peer/", nil)
	resp, err := m.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("reading the body of a cancelled request succeeded")
	}
	if err := <-seen; err == nil {
		t.Fatal("the server's handler was not cancelled")
	}
}

// A response without trailers keeps a nil Trailer map (none is made for it), and one
// whose trailers were not announced gets them all the same.
func TestClientTrailersUnannounced(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "body")
		if r.URL.Path == "/late" {
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		}
	})
	dial, _ := h2cPeer(t, h, nil)
	m := NewClient(dial)
	for _, path := range []string{"/none", "/late"} {
		req, _ := http.NewRequest("GET", "http://peer"+path, nil)
		resp, err := m.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch path {
		case "/none":
			if len(resp.Trailer) != 0 {
				t.Fatalf("%s: trailers %v, want none", path, resp.Trailer)
			}
		case "/late":
			if resp.Trailer.Get("Grpc-Status") != "0" {
				t.Fatalf("%s: trailers %v, want Grpc-Status 0", path, resp.Trailer)
			}
		}
	}
}
