package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// golang.org/x/net's HTTP/2 client, an implementation Weft did not write, drives the
// weft.h2 server over mTLS: bodies both ways (larger than the windows, so flow
// control runs in both directions), trailers both ways, cancellation (RST_STREAM)
// reaching the app, and GOAWAY on shutdown letting the request in flight finish.
func TestWeftH2ServerWithXNetTransport(t *testing.T) {
	m := newMeshH2(t)
	cancelled := make(chan struct{}, 1)
	release := make(chan struct{})
	app := serveApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Trailer", "X-Resp-Trailer")
			body, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Got-Req-Trailer", r.Trailer.Get("X-Req-Trailer"))
			w.Write(body)
			w.Header().Set("X-Resp-Trailer", "resp-"+r.Header.Get("X-N"))
		case "/wait":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				cancelled <- struct{}{}
			case <-time.After(5 * time.Second):
			}
		case "/slow":
			<-release
			io.WriteString(w, "finished")
		}
	}))
	cc, err := (&http2.Transport{}).NewClientConn(m.dial(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	newReq := func(ctx context.Context, method, path string, body io.Reader) *http.Request {
		req, err := http.NewRequestWithContext(ctx, method, "http://app.b.svc"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Weft-Dst", app)
		return req
	}

	t.Run("bodies and trailers both ways", func(t *testing.T) {
		var wg sync.WaitGroup
		for n := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := make([]byte, 3<<20)
				rand.Read(payload)
				req := newReq(context.Background(), "POST", "/echo", bytes.NewReader(payload))
				req.Header.Set("X-N", strings.Repeat("n", n+1))
				req.Trailer = http.Header{"X-Req-Trailer": {"req-trailer"}}
				resp, err := cc.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, payload) || resp.StatusCode != 200 {
					t.Errorf("echo %d: status %d, %d of %d bytes back, err %v", n, resp.StatusCode, len(got), len(payload), err)
					return
				}
				if g := resp.Header.Get("X-Got-Req-Trailer"); g != "req-trailer" {
					t.Errorf("request trailer reached the app as %q", g)
				}
				if g, want := resp.Trailer.Get("X-Resp-Trailer"), "resp-"+strings.Repeat("n", n+1); g != want {
					t.Errorf("response trailer %q, want %q", g, want)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := cc.RoundTrip(newReq(ctx, "GET", "/wait", nil))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
		select {
		case <-cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("the app's request was not cancelled after the client reset its stream")
		}
	})

	t.Run("GOAWAY on shutdown", func(t *testing.T) {
		type result struct {
			body string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := cc.RoundTrip(newReq(context.Background(), "GET", "/slow", nil))
			if err != nil {
				done <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{string(b), err}
		}()
		time.Sleep(100 * time.Millisecond) // the request is at the app
		shut := make(chan struct{})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.p.srv.Shutdown(ctx)
			close(shut)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for !cc.State().Closing && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !cc.State().Closing {
			t.Fatal("the client did not see GOAWAY after the server began shutting down")
		}
		close(release)
		if r := <-done; r.err != nil || r.body != "finished" {
			t.Fatalf("request in flight at GOAWAY: %q, %v; want it finished", r.body, r.err)
		}
		if _, err := cc.RoundTrip(newReq(context.Background(), "GET", "/slow", nil)); err == nil {
			t.Fatal("a new request succeeded on a connection that went away")
		}
		<-shut
	})
}

// An app request whose header fields are over the weft.h2 server's 64 KiB limit gets
// 431 from its own proxy, and the other requests on the same mesh connection carry
// on: sent, the block would have ended the whole connection at the peer.
func TestWeftH2LargeHeadersThroughPair(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	url := "http://" + mp.addr[svcHTTPBin]
	client := h1Client()
	slow := make(chan error, 1)
	go func() {
		resp, err := client.Get(url + "/delay/1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the slow request is on the mesh connection
	req, _ := http.NewRequest("GET", url+"/get", nil)
	req.Header.Set("X-Big", strings.Repeat("b", 100<<10))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a request with a 100 KiB header: status %d (%s), want 431", resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"))
	}
	if err := <-slow; err != nil {
		t.Fatalf("the request in flight on the same mesh connection: %v", err)
	}
}
