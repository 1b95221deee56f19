package server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

const shortTimeout = 300 * time.Millisecond

func shortTimeouts(o *server.Options) {
	o.HeaderReadTimeout = shortTimeout
	o.WriteTimeout = shortTimeout
}

// slowloris sends a request line, then its header one byte every 50 ms for up to 4
// s, and returns how long the proxy kept the connection open.
func slowloris(t *testing.T, c net.Conn, br *bufio.Reader, extra string) time.Duration {
	t.Helper()
	start := time.Now()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		c.SetReadDeadline(time.Now().Add(6 * time.Second))
		if br == nil {
			br = bufio.NewReader(c)
		}
		io.Copy(io.Discard, br)
	}()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: app\r\n"+extra)
	for _, b := range []byte(strings.Repeat("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 2)) {
		select {
		case <-ended:
			return time.Since(start)
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.Write([]byte{b}); err != nil {
			break
		}
	}
	<-ended
	return time.Since(start)
}

// TestSlowHeaderIsDisconnected: a client that sends its header one byte at a time is
// disconnected within the header timeout on every HTTP/1.1 path: Weft's own server
// (outbound, inbound plaintext), net/http's after a hand-over, and weft.h1.
func TestSlowHeaderIsDisconnected(t *testing.T) {
	rec := startRecorder(t)
	ca := testpki.NewCA(t, "weft test anchor")
	p := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca), shortTimeouts)
	out := p.outbound(rec.addr)
	in := p.inboundPlain(rec.addr)
	client := newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca)
	check := func(t *testing.T, took time.Duration) {
		t.Helper()
		if took > shortTimeout+time.Second {
			t.Fatalf("a slow header kept its connection for %v; header timeout %v", took, shortTimeout)
		}
	}
	t.Run("outbound", func(t *testing.T) { check(t, slowloris(t, dialT(t, out), nil, "")) })
	t.Run("inbound plaintext", func(t *testing.T) { check(t, slowloris(t, dialT(t, in), nil, "")) })
	t.Run("after hand-over", func(t *testing.T) {
		c := dialT(t, out)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST /ok HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("chunked request: %v %v", resp, err)
		}
		io.ReadAll(resp.Body)
		check(t, slowloris(t, c, br, ""))
	})
	t.Run("weft.h1", func(t *testing.T) {
		tc := tls.Client(dialT(t, p.inbound), client.ClientConfig(spiffe("b", serverSA), identity.ALPNHTTP1))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		check(t, slowloris(t, tc, nil, "Weft-Dst: "+rec.addr+"\r\n"))
	})
}

// TestClientThatStopsReadingIsDisconnected: an app that stops reading a response
// does not pin the proxy: the write to it fails after the write timeout, the
// response is aborted and the backend's write fails too.
func TestClientThatStopsReadingIsDisconnected(t *testing.T) {
	failed := make(chan error, 1)
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		deadline := time.Now().Add(8 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := w.Write(buf); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	}))
	p := startProxy(t, &config.Config{}, nil, shortTimeouts)
	c := dialT(t, p.outbound(backend))
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: app\r\n\r\n")
	// Read nothing: the socket buffers fill, then the proxy's writes block.
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("the backend could write for 8 s to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's write is still blocked after 10 s")
	}
}

// TestAppThatStopsReadingIsDisconnected: an app that stops reading a request body does
// not pin the inbound proxy: the write to it fails after the write timeout and the
// client gets an answer.
func TestAppThatStopsReadingIsDisconnected(t *testing.T) {
	app := listen(t)
	t.Cleanup(func() { app.Close() })
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted and never read
		}
	}()
	p := startProxy(t, &config.Config{}, nil, shortTimeouts)
	c := dialT(t, p.inboundPlain(app.Addr().String()))
	const size = 256 << 20
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n", size)
	go func() {
		buf := make([]byte, 64<<10)
		for n := 0; n < size; n += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodPost})
	if err != nil && !isConnReset(err) && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("no answer while the app reads nothing: %v", err)
	}
	if err == nil && resp.StatusCode < 500 {
		t.Fatalf("status %d, want a 5xx", resp.StatusCode)
	}
}
