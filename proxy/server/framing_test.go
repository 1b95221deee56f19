package server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// seenReq is one request a recording backend received.
type seenReq struct {
	path    string
	body    string
	bodyErr error // reading the body failed: the backend did not get it whole
}

// recorder is an app that records every request it receives, after reading its body.
type recorder struct {
	addr string
	mu   sync.Mutex
	seen []seenReq
}

func startRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.addr = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, seenReq{path: r.URL.Path, body: string(b), bodyErr: err})
		rec.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	return rec
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.seen = nil
	r.mu.Unlock()
}

func (r *recorder) requests() []seenReq {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenReq(nil), r.seen...)
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"

// framingCases are requests whose body framing is malformed or ambiguous, each
// followed on the same connection by a second request that must never be forwarded.
// ambiguousHead marks the cases a server can tell from the header alone; fixed are
// answered 400 by Weft's HTTP/1.1 server before anything is forwarded.
type framingCase struct {
	name          string
	req           string
	ambiguousHead bool
	status        int // the answer where the header is checked whole; 0: 400
}

var framingCases = []framingCase{
	{name: "chunk size 0x10", req: "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n"},
	{name: "chunk size -1", req: "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n"},
	{name: "chunk size overflows", req: "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
	{name: "chunk data longer than declared", req: "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"},
	{name: "content-length and chunked", req: "POST /first HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ambiguousHead: true},
	{name: "chunked on a folded line", req: "POST /first HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", ambiguousHead: true},
	{name: "chunked in HTTP/1.0", req: "POST /first HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ambiguousHead: true},
	// Refused by net/http's own parser on every path.
	{name: "two content lengths", req: "POST /first HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nabcde"},
	{name: "unknown transfer coding", req: "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", status: http.StatusNotImplemented},
}

func (c framingCase) want() int {
	if c.status == 0 {
		return http.StatusBadRequest
	}
	return c.status
}

// checkFraming writes req and the smuggled request on c in one write and checks what
// the client and the backend saw: at most one response (status, when not 0), then the
// connection closed; the backend never got the smuggled request, nor /first whole
// when its framing was broken, nor anything when refusedHead (the header alone was
// refused).
func checkFraming(t *testing.T, c net.Conn, rec *recorder, req, smuggled string, status int, firstMayPass, refusedHead bool) {
	t.Helper()
	rec.reset()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+smuggled); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		t.Fatalf("no response to the malformed request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if status != 0 && resp.StatusCode != status {
		t.Errorf("status %d (%s), want %d", resp.StatusCode, body, status)
	}
	// Nothing else may come: the connection ends (EOF or reset), no second response.
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil && !isConnReset(err) {
		t.Errorf("connection still open after a malformed request: %v", err)
	}
	if len(rest) > 0 {
		t.Errorf("more came after the response: %q", rest)
	}
	// Give a forwarded request time to arrive before looking.
	time.Sleep(200 * time.Millisecond)
	seen := rec.requests()
	if refusedHead && len(seen) != 0 {
		t.Errorf("a request refused by its header reached the backend: %+v", seen)
	}
	for _, s := range seen {
		if s.path == "/smuggled" {
			t.Errorf("the backend received the smuggled request")
		}
		if s.path == "/first" && s.bodyErr == nil && !firstMayPass {
			t.Errorf("the backend received the malformed request as a whole one (body %q)", s.body)
		}
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || errors.Is(err, net.ErrClosed))
}

func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFramingErrorsEndOutboundConnection: an app's malformed request on the outbound
// port, to an unmeshed destination, to a meshed one (across a proxy pair), and after
// the connection was handed to net/http.
func TestFramingErrorsEndOutboundConnection(t *testing.T) {
	rec := startRecorder(t)
	p := startProxy(t, &config.Config{}, nil)
	plain := p.outbound(rec.addr)
	meshed := framingPair(t, rec)
	for _, tc := range framingCases {
		t.Run(tc.name+"/unmeshed", func(t *testing.T) {
			checkFraming(t, dialT(t, plain), rec, tc.req, smuggled, tc.want(), false, tc.ambiguousHead)
		})
		t.Run(tc.name+"/meshed", func(t *testing.T) {
			checkFraming(t, dialT(t, meshed), rec, tc.req, smuggled, tc.want(), false, tc.ambiguousHead)
		})
	}
	// A first chunked request hands the connection to net/http, which serves it and
	// only it: the response ends the connection, so an ambiguous request pipelined
	// behind it is never read (net/http alone could not tell its framing), and the
	// same request on a new connection meets Weft's server: 400.
	for _, tc := range framingCases {
		if !tc.ambiguousHead {
			continue
		}
		t.Run(tc.name+"/after hand-over", func(t *testing.T) {
			c := dialT(t, plain)
			io.WriteString(c, "POST /ok HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"+tc.req+smuggled)
			br := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("valid chunked request: %v %v", resp, err)
			}
			io.ReadAll(resp.Body)
			if !resp.Close {
				t.Errorf("the response to a handed-over request keeps the connection (Connection %q)", resp.Header["Connection"])
			}
			rest, err := io.ReadAll(br)
			if err != nil && !isConnReset(err) {
				t.Errorf("connection still open after the handed-over request: %v", err)
			}
			if len(rest) > 0 {
				t.Errorf("a pipelined request was answered: %q", rest)
			}
			time.Sleep(200 * time.Millisecond)
			for _, s := range rec.requests() {
				if s.path == "/first" || s.path == "/smuggled" {
					t.Errorf("the backend received %s from behind a handed-over request", s.path)
				}
			}
			checkFraming(t, dialT(t, plain), rec, tc.req, smuggled, tc.want(), false, tc.ambiguousHead)
		})
	}
}

// TestFramingErrorsEndInboundConnection: an unmeshed client's malformed request on the
// inbound port (plaintext, redirected to the app), and a peer's on a weft.h1 mTLS
// connection.
func TestFramingErrorsEndInboundConnection(t *testing.T) {
	rec := startRecorder(t)
	ca := testpki.NewCA(t, "weft test anchor")
	p := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca))
	plain := p.inboundPlain(rec.addr)
	client := newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca)
	for _, tc := range framingCases {
		t.Run(tc.name+"/plaintext", func(t *testing.T) {
			checkFraming(t, dialT(t, plain), rec, tc.req, smuggled, tc.want(), false, tc.ambiguousHead)
		})
		t.Run(tc.name+"/weft.h1", func(t *testing.T) {
			tc2 := tls.Client(dialT(t, p.inbound), client.ClientConfig(spiffe("b", serverSA), identity.ALPNHTTP1))
			if err := tc2.Handshake(); err != nil {
				t.Fatal(err)
			}
			req := strings.Replace(tc.req, "Host: app\r\n", "Host: app\r\nWeft-Dst: "+rec.addr+"\r\n", 1)
			sm := strings.Replace(smuggled, "Host: app\r\n", "Host: app\r\nWeft-Dst: "+rec.addr+"\r\n", 1)
			// weft.h1 starts in Weft's HTTP/1.1 server too: the same answers.
			checkFraming(t, tc2, rec, req, sm, tc.want(), false, tc.ambiguousHead)
		})
	}
}

// framingPair starts a server-side proxy in front of rec and an app-side proxy that
// reaches it over the mesh; it returns the app-side address of the service.
func framingPair(t *testing.T, rec *recorder) string {
	ca := testpki.NewCA(t, "weft test anchor")
	b := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca))
	const svc = "10.96.0.40:80"
	a := startProxy(t, &config.Config{Destinations: []config.Destination{{
		Name: svc, Addresses: []string{svc},
		Endpoints: []config.Endpoint{endpoint(rec.addr, b, spiffe("b", serverSA))},
	}}}, newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca))
	return a.outbound(svc)
}
