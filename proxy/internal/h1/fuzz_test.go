package h1

import (
	"bufio"
	"errors"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzH1Server writes fuzzed bytes to Weft's HTTP/1.1 server, whose handler guards and
// reads the body as the proxy's does, and which hands what it does not serve to
// net/http. Nothing may panic (a handler panic is recovered and logged: the log is
// watched), every connection ends once the client stops sending (no wait without a
// deadline), and what comes back is a sequence of well-formed HTTP/1.1 responses of
// which one that says Connection: close is the last.
func FuzzH1Server(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: app\r\n\r\nGET /2 HTTP/1.1\r\nHost: app\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: app\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n",
		"POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"PUT /e HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"GET /u HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: app\n\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: app\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	var panics atomic.Int64
	log := panicLog{&panics}
	s := &Server{Log: log, HeaderReadTimeout: 500 * time.Millisecond, MaxHeaderBytes: 64 << 10}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 {
			Guard(w, r, func(r *http.Request) *atomic.Bool { return checkedFrom(r.Context()) })
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		CloseUnlessBodyEnded(w, r)
		w.Header().Set("X-Read", strings.Repeat("x", int(n%64)))
		io.WriteString(w, r.Method+" "+r.URL.Path)
	})
	// net/http logs the panics it recovers through ErrorLog.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 500 * time.Millisecond, MaxHeaderBytes: 16 << 10,
		ErrorLog: stdlog.New(panicWatch{&panics}, "", 0)}
	addr := serveH1Loopback(f, s, &testDrains{}, srv)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Every wait of the server is bounded (header 0.5 s, body:
		// the client's half-close): the connection must end well within 5 s.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection did not end within 5 s; %d bytes came back", len(out))
		}
		if p := panics.Load(); p != 0 {
			t.Fatalf("a handler panicked (%d)", p)
		}
		// What came back is whole responses, each well formed (a response to HEAD
		// cannot be told apart without pairing it with its request: not checked).
		if strings.Contains(string(in), "HEAD") {
			return
		}
		br := bufio.NewReader(strings.NewReader(string(out)))
		for {
			if _, err := br.Peek(1); err != nil {
				break
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("malformed response: %v in %q", err, out)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil && resp.StatusCode != http.StatusSwitchingProtocols && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("response body: %v in %q", err, out)
			}
			if resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
			// A response that closes the connection is the last one: nothing the
			// client sent after that request was served.
			if _, err := br.Peek(1); resp.Close && err == nil {
				t.Fatalf("a response said Connection: close and more followed: %q", out)
			}
		}
	})
}

// panicWatch counts the panics net/http's server logs.
type panicWatch struct{ n *atomic.Int64 }

func (p panicWatch) Write(b []byte) (int, error) {
	if strings.Contains(string(b), "panic") {
		p.n.Add(1)
	}
	return len(b), nil
}

// panicLog counts the messages about a handler panic the server logs.
type panicLog struct{ n *atomic.Int64 }

func (l panicLog) Info(msg string, _ ...any) { l.note(msg) }

func (l panicLog) Error(_ error, msg string, _ ...any) { l.note(msg) }

func (l panicLog) note(msg string) {
	if strings.Contains(msg, "panicked") {
		l.n.Add(1)
	}
}
