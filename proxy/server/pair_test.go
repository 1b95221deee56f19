package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// Service addresses the "app" behind proxy A believes it dials. Nothing listens on
// them: proxy A's test hook reports them as the original destinations.
const (
	svcHTTPBin    = "10.96.0.1:80"
	svcGRPC       = "10.96.0.2:50051"
	svcTCP        = "10.96.0.3:9000" // opaque port
	svcBanner     = "10.96.0.4:2525" // server-speaks-first, NOT declared opaque
	svcBannerOpq  = "10.96.0.5:2526" // server-speaks-first, declared opaque
	svcWrongID    = "10.96.0.6:80"   // meshed endpoint configured with the wrong identity
	svcUnmeshed   = "10.96.0.7:80"   // plaintext endpoint, no identity
	svcProbe      = "10.96.0.8:80"   // records what reached the backend
	svcH2Cancel   = "10.96.0.9:80"   // HTTP/2 backend for cancellation tests
	svcUnknown    = "127.0.0.1:1"    // no destination: passed through (nothing listens)
	clientSA      = "client"
	serverSA      = "server"
	detectTimeout = 300 * time.Millisecond
)

// backends are the real applications behind proxy B.
type backends struct {
	httpbin, grpc, tcp, banner, bannerOpq, probe, h2cancel string
	probeSeen                                              chan probeReq
	cancelSeen                                             chan error
}

type probeReq struct {
	proto   string
	header  http.Header
	trailer http.Header
	body    string
}

func startBackends(t *testing.T) *backends {
	b := &backends{probeSeen: make(chan probeReq, 16), cancelSeen: make(chan error, 4)}
	b.httpbin = serveHTTP(t, httpbin.New().Handler())
	b.probe = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</s.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		body, _ := io.ReadAll(r.Body)
		b.probeSeen <- probeReq{proto: r.Proto, header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: string(body)}
		// Hop-by-hop fields in the response must not reach the client either.
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "kept")
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "probe:"+r.Proto)
		w.Header().Set("X-Checksum", "abc123")
	}))
	b.h2cancel = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/wait":
			// Report how the request ended: the client's cancel must arrive here.
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				b.cancelSeen <- r.Context().Err()
			case <-time.After(5 * time.Second):
				b.cancelSeen <- fmt.Errorf("no cancellation within 5s")
			}
		case "/abort":
			// The server gives up mid-stream; the client must see an error, not EOF.
			w.WriteHeader(200)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
			panic(http.ErrAbortHandler)
		}
	}))
	b.grpc = startGRPC(t)
	b.tcp = serveTCP(t, func(c net.Conn) {
		// Read the whole request (until the client half-closes), then answer.
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes: %s", len(req), bytes.ToUpper(req))
		c.(*net.TCPConn).CloseWrite()
	})
	banner := func(c net.Conn) {
		io.WriteString(c, "220 banner ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "250 "+line)
	}
	b.banner = serveTCP(t, banner)
	b.bannerOpq = serveTCP(t, banner)
	return b
}

func serveTCP(t *testing.T, h func(net.Conn)) string {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				h(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// meshPair is an app-side proxy A and a server-side proxy B with the backends behind
// B, configured like two meshed pods.
type meshPair struct {
	ca   *testpki.CA
	a, b *proxy
	be   *backends
	// app-side addresses, one per service (what the app dials).
	addr map[string]string
}

func endpoint(backend string, b *proxy, id string) config.Endpoint {
	ap := config.Endpoint{Address: "127.0.0.1", Port: mustPort(backend), Identity: id}
	if id != "" {
		ap.ProxyPort = b.inboundPort()
	}
	return ap
}

type pairOpts struct {
	ca           *testpki.CA // default: a new one
	serverPolicy config.Policy
	serverLeaf   *testpki.Leaf // default: valid cert for serverSA
	clientLeaf   *testpki.Leaf // default: valid cert for clientSA
}

func newMeshPair(t *testing.T, o pairOpts) *meshPair {
	ca := o.ca
	if ca == nil {
		ca = testpki.NewCA(t, "weft test anchor")
	}
	if o.serverLeaf == nil {
		o.serverLeaf = ca.IssueValid(t, spiffe("b", serverSA))
	}
	if o.clientLeaf == nil {
		o.clientLeaf = ca.IssueValid(t, spiffe("a", clientSA))
	}
	be := startBackends(t)
	bCfg := &config.Config{Inbound: config.Inbound{DefaultPolicy: o.serverPolicy}}
	b := startProxy(t, bCfg, newStore(t, o.serverLeaf, ca))
	id := spiffe("b", serverSA)
	dest := func(svc, backend, ident string, proto config.Protocol) config.Destination {
		return config.Destination{Name: svc, Addresses: []string{svc}, Protocol: proto,
			Endpoints: []config.Endpoint{endpoint(backend, b, ident)}}
	}
	byAuthority := dest(svcHTTPBin, be.httpbin, id, "")
	byAuthority.Name, byAuthority.Addresses = "httpbin-by-authority", nil
	byAuthority.Authorities = []string{"httpbin.b.svc.cluster.local"}
	aCfg := &config.Config{
		DetectTimeout: config.Duration{Duration: detectTimeout},
		OpaquePorts:   []uint16{9000, 2526},
		Destinations: []config.Destination{
			dest(svcHTTPBin, be.httpbin, id, ""),
			dest(svcGRPC, be.grpc, id, ""),
			dest(svcTCP, be.tcp, id, ""),
			dest(svcBanner, be.banner, id, ""),
			dest(svcBannerOpq, be.bannerOpq, id, ""),
			dest(svcWrongID, be.httpbin, spiffe("b", "impostor"), ""),
			dest(svcUnmeshed, be.httpbin, "", ""),
			dest(svcProbe, be.probe, id, ""),
			dest(svcH2Cancel, be.h2cancel, id, ""),
			byAuthority,
		},
	}
	a := startProxy(t, aCfg, newStore(t, o.clientLeaf, ca))
	mp := &meshPair{ca: ca, a: a, b: b, be: be, addr: map[string]string{}}
	for _, svc := range []string{svcUnknown, svcHTTPBin, svcGRPC, svcTCP, svcBanner, svcBannerOpq, svcWrongID, svcUnmeshed, svcProbe, svcH2Cancel} {
		mp.addr[svc] = a.outbound(svc)
	}
	return mp
}

func h1Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// TestHTTP1ThroughPair drives go-httpbin through the pair with HTTP/1.1.
func TestHTTP1ThroughPair(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	base := "http://" + mp.addr[svcHTTPBin]
	c := h1Client()

	t.Run("get echoes request", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/get?x=1", nil)
		req.Host = "httpbin.b.svc.cluster.local"
		req.Header.Set("X-Trace", "t-1")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Args    map[string][]string `json:"args"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || got.Args["x"][0] != "1" || got.Headers["X-Trace"][0] != "t-1" || got.Headers["Host"][0] != req.Host {
			t.Fatalf("status %d, body %+v", resp.StatusCode, got)
		}
		for h := range got.Headers {
			if strings.HasPrefix(strings.ToLower(h), "weft-") || strings.HasPrefix(strings.ToLower(h), "x-forwarded") {
				t.Errorf("proxy header %s leaked to the app", h)
			}
		}
	})

	t.Run("chunked upload and download", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 100; i++ {
				fmt.Fprintf(pw, "chunk-%03d;", i)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/post", pr) // unknown length: chunked
		req.Header.Set("Content-Type", "text/plain")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Data string }
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if !strings.Contains(got.Data, "chunk-099;") || len(got.Data) != 1000 {
			t.Fatalf("httpbin saw %d bytes: %.60q", len(got.Data), got.Data)
		}
		resp, err = c.Get(base + "/stream-bytes/200000?chunk_size=7000&seed=1")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != 200000 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("streamed %d bytes, transfer-encoding %v", n, resp.TransferEncoding)
		}
	})

	t.Run("downloads past the held window", func(t *testing.T) {
		// The client side holds connection-level WINDOW_UPDATEs back for the next
		// write, up to 16 MiB of window (maxHeldCredit): 24 MiB of responses (go-httpbin
		// sends at most 1 MiB each) must flow as before.
		for i := range 24 {
			resp, err := c.Get(fmt.Sprintf("%s/stream-bytes/%d?chunk_size=65536&seed=%d", base, 1<<20, i))
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != 1<<20 || err != nil {
				t.Fatalf("download %d: status %d, %d bytes (%v), want %d", i, resp.StatusCode, n, err, 1<<20)
			}
		}
	})

	t.Run("keep-alive reuses the client connection", func(t *testing.T) {
		var reused atomic.Int32
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest("GET", base+"/status/204", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(ci httptrace.GotConnInfo) {
					if ci.Reused {
						reused.Add(1)
					}
				},
			}))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 204 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		if reused.Load() < 4 {
			t.Fatalf("only %d of 5 requests reused the connection", reused.Load())
		}
	})

	t.Run("100-continue", func(t *testing.T) {
		tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
		var got100 atomic.Bool
		body := strings.Repeat("z", 5000)
		req, _ := http.NewRequest("PUT", base+"/put", strings.NewReader(body))
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("Content-Type", "text/plain")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got100Continue: func() { got100.Store(true) },
		}))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Data string }
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if !got100.Load() || got.Data != body {
			t.Fatalf("100 continue seen=%v, body len %d", got100.Load(), len(got.Data))
		}
	})

	t.Run("5xx passes through", func(t *testing.T) {
		resp, err := c.Get(base + "/status/503")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Weft-Proxy-Error") != "" {
			t.Fatalf("status %d, proxy error %q", resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"))
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", mp.addr[svcHTTPBin])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /websocket/echo HTTP/1.1\r\nHost: httpbin\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("upgrade status %d accept %q", resp.StatusCode, resp.Header.Get("Sec-Websocket-Accept"))
		}
		// One masked text frame "hello"; the echo comes back unmasked.
		mask := []byte{1, 2, 3, 4}
		payload := []byte("hello")
		frame := []byte{0x81, 0x80 | byte(len(payload))}
		frame = append(frame, mask...)
		for i, c := range payload {
			frame = append(frame, c^mask[i%4])
		}
		conn.Write(frame)
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(br, hdr); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, hdr[1]&0x7f)
		io.ReadFull(br, echo)
		if hdr[0] != 0x81 || string(echo) != "hello" {
			t.Fatalf("echo frame %x %q", hdr, echo)
		}
		// Both proxies count the switch as a 101 once the tunnel closes (it was a
		// 200 when the upgrade proxy wrote the 101 past the metrics writer).
		conn.Close()
		for _, p := range []*proxy{mp.a, mp.b} {
			deadline := time.Now().Add(5 * time.Second)
			for metricValue(p.metricsText(), "response_total", `status_code="101"`, `classification="success"`) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("no response_total{status_code=\"101\"} within 5s:\n%s", p.metricsText())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})

	t.Run("unmeshed endpoint in plaintext", func(t *testing.T) {
		resp, err := c.Get("http://" + mp.addr[svcUnmeshed] + "/status/201")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// TestProtocolsAndHopByHop checks what the backend receives: HTTP/1.1 stays HTTP/1.1
// and HTTP/2 stays HTTP/2 across the multiplexed mesh connection, hop-by-hop headers
// are removed both ways (RFC 9110 §7.6.1), trailers arrive.
