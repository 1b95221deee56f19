package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
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
func TestProtocolsAndHopByHop(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	base := "http://" + mp.addr[svcProbe]
	tests := []struct {
		name      string
		client    *http.Client
		wantProto string
	}{
		{"http1 comes out as http1", h1Client(), "HTTP/1.1"},
		{"h2c comes out as h2c", h2cClient(), "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/probe", strings.NewReader("body"))
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "must-go")
			req.Header.Set("Keep-Alive", "timeout=1")
			req.Header.Set("Proxy-Connection", "keep-alive")
			req.Header.Set("X-End-To-End", "stays")
			req.Header.Set("X-Forwarded-For", "192.0.2.7") // end to end: the mesh is transparent
			req.Header.Set("Weft-Dst", "127.0.0.1:1")      // an app must not steer the peer proxy
			if tt.wantProto == "HTTP/2.0" {
				req.Header.Del("Connection")
				req.Header.Del("Keep-Alive")
				req.Header.Del("Proxy-Connection")
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen := <-mp.be.probeSeen
			if seen.proto != tt.wantProto || string(body) != "probe:"+tt.wantProto {
				t.Fatalf("backend saw %s, client got %q", seen.proto, body)
			}
			if seen.body != "body" || seen.header.Get("X-End-To-End") != "stays" || seen.header.Get("X-Forwarded-For") != "192.0.2.7" {
				t.Fatalf("backend got body %q headers %v", seen.body, seen.header)
			}
			// HTTP/2 has no Connection header (RFC 9113 §8.2.2), so X-Hop is an ordinary
			// field there; in HTTP/1.1 Connection names it hop-by-hop.
			hop := []string{"Weft-Dst", "Weft-Proto"}
			if tt.wantProto == "HTTP/1.1" {
				hop = append(hop, "X-Hop", "Keep-Alive", "Proxy-Connection")
			}
			for _, h := range hop {
				if v := seen.header.Get(h); v != "" {
					t.Errorf("hop-by-hop/internal header %s=%q reached the backend", h, v)
				}
			}
			if c := seen.header.Get("Connection"); c != "" && c != "close" && c != "keep-alive" {
				t.Errorf("Connection %q reached the backend", c)
			}
			for _, h := range []string{"X-Resp-Hop", "Keep-Alive"} {
				if v := resp.Header.Get(h); v != "" && tt.wantProto == "HTTP/1.1" {
					t.Errorf("response hop-by-hop header %s=%q reached the client", h, v)
				}
			}
			if resp.Header.Get("X-End-To-End") != "kept" || resp.Trailer.Get("X-Checksum") != "abc123" {
				t.Errorf("end-to-end header %q trailer %q", resp.Header.Get("X-End-To-End"), resp.Trailer.Get("X-Checksum"))
			}
		})
	}
}

// TestEarlyHintsThroughPair: a backend's 103 Early Hints reaches the client before
// the final response, over HTTP/1.1 and h2c.
func TestEarlyHintsThroughPair(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	for _, c := range []*http.Client{h1Client(), h2cClient()} {
		var hints []string
		req, _ := http.NewRequest("GET", "http://"+mp.addr[svcProbe]+"/hints", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			},
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		<-mp.be.probeSeen
		if len(hints) != 1 || hints[0] != "103 </s.css>; rel=preload" || resp.StatusCode != 200 || resp.Header.Get("Link") != "" {
			t.Fatalf("%s: informational %q, then %d with Link %q", resp.Proto, hints, resp.StatusCode, resp.Header.Get("Link"))
		}
	}
}

// TestMeshConnectionIsPooled: many concurrent HTTP/1.1 client connections share one
// mTLS connection to the peer proxy.
func TestMeshConnectionIsPooled(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + mp.addr[svcHTTPBin] + "/delay/0.1")
			if err != nil || resp.StatusCode != 200 {
				failures.Add(1)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed", failures.Load())
	}
	m := mp.a.metricsText()
	id := spiffe("b", serverSA)
	if v := metricValue(m, "tcp_open_total", `direction="outbound"`, `peer="dst"`, `server_id="`+id+`"`); v != 1 {
		t.Fatalf("proxy A opened %v mTLS connections to B, want 1\n%s", v, m)
	}
	if v := metricValue(m, "tcp_open_total", `direction="outbound"`, `peer="src"`); v != 20 {
		t.Fatalf("proxy A accepted %v app connections, want 20", v)
	}
}

// TestCurveIsX25519MLKEM768 dials proxy B's inbound port with the client TLS
// configuration proxy A uses and checks the post-quantum hybrid key exchange.
func TestCurveIsX25519MLKEM768(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	cfg := mp.a.store.ClientConfig(spiffe("b", serverSA), identity.ALPNHTTP2)
	c, err := tls.Dial("tcp", mp.b.inbound, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs := c.ConnectionState()
	if cs.CurveID != tls.X25519MLKEM768 || cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != identity.ALPNHTTP2 {
		t.Fatalf("curve %v version %x alpn %q", cs.CurveID, cs.Version, cs.NegotiatedProtocol)
	}
	// And through the proxies themselves: a request succeeds, so A and B negotiated the
	// same way (A uses exactly this configuration).
	resp, err := h1Client().Get("http://" + mp.addr[svcHTTPBin] + "/status/200")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestOpaqueTCPHalfClose sends a request on an opaque port through the mTLS pair,
// half-closes, and reads the answer the backend writes only after EOF.
func TestOpaqueTCPHalfClose(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	c, err := net.Dial("tcp", mp.addr[svcTCP])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	payload := strings.Repeat("abc", 100000)
	go func() {
		io.WriteString(c, payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("got %d bytes: %s", len(payload), strings.ToUpper(payload))
	if string(got) != want {
		t.Fatalf("got %d bytes back, want %d", len(got), len(want))
	}
	m := mp.b.metricsText()
	if v := metricValue(m, "tcp_read_bytes_total", `direction="inbound"`, `peer="src"`, `client_id="`+spiffe("a", clientSA)+`"`); v < float64(len(payload)) {
		t.Fatalf("proxy B counted %v bytes read from A, want >= %d", v, len(payload))
	}
}

// TestServerSpeaksFirst: a server-speaks-first protocol works on an undeclared port
// after the detection timeout (counted), and immediately on a declared opaque port.
func TestServerSpeaksFirst(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	tests := []struct {
		name         string
		svc          string
		minWait      time.Duration
		maxWait      time.Duration
		wantTimeouts float64
	}{
		{"opaque port skips detection", svcBannerOpq, 0, detectTimeout - 50*time.Millisecond, 0},
		{"undeclared port waits for detection timeout", svcBanner, detectTimeout, 3 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c, err := net.Dial("tcp", mp.addr[tt.svc])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			waited := time.Since(start)
			if err != nil || line != "220 banner ready\r\n" {
				t.Fatalf("banner %q err %v", line, err)
			}
			if waited < tt.minWait || waited > tt.maxWait {
				t.Fatalf("banner after %s, want between %s and %s", waited, tt.minWait, tt.maxWait)
			}
			io.WriteString(c, "HELO x\r\n")
			if line, _ := br.ReadString('\n'); line != "250 HELO x\r\n" {
				t.Fatalf("reply %q", line)
			}
			if v := metricValue(mp.a.metricsText(), "weft_detect_timeout_total", `direction="outbound"`); v != tt.wantTimeouts {
				t.Fatalf("detect timeouts %v, want %v", v, tt.wantTimeouts)
			}
		})
	}
}

// TestH2Cancellation: a client's cancel reaches the backend through both proxies, and
// a backend's abort reaches the client as an error.
func TestH2Cancellation(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	base := "http://" + mp.addr[svcH2Cancel]
	t.Run("client cancel reaches backend", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/wait", nil)
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
		select {
		case err := <-mp.be.cancelSeen:
			if err != context.Canceled {
				t.Fatalf("backend saw %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend never saw the cancellation")
		}
	})
	t.Run("backend abort reaches client", func(t *testing.T) {
		for _, c := range []*http.Client{h2cClient(), h1Client()} {
			resp, err := c.Get(base + "/abort")
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("%s client read the aborted body to a clean EOF", resp.Proto)
			}
		}
	})
}

// TestRoutingByAuthority: an HTTP request is routed by its authority first, so a
// request to an address no destination knows still reaches the meshed service its
// Host names; without a known authority it goes to the original destination.
func TestRoutingByAuthority(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	tests := []struct {
		name       string
		host       string
		wantStatus int
		wantTLS    bool
	}{
		{"known authority over mTLS", "httpbin.b.svc.cluster.local", 200, true},
		{"known authority, other case and explicit port", "HTTPBIN.b.svc.cluster.local:80", 200, true},
		{"unknown authority passes through to the original destination", "elsewhere.example", 502, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+mp.addr[svcUnknown]+"/status/200", nil)
			req.Host = tt.host
			resp, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			label := `tls="no_identity"`
			if tt.wantTLS {
				label = `server_id="` + spiffe("b", serverSA) + `"`
			}
			if v := metricValue(mp.a.metricsText(), "request_total", `authority="`+tt.host+`"`, label); v != 1 {
				t.Fatalf("request_total for %s with %s = %v, want 1", tt.host, label, v)
			}
		})
	}
}

// TestRequestTrailersThroughPair: a chunked HTTP/1.1 request's trailers cross the
// mesh (as HTTP/2 trailers on weft.h2) and reach the backend.
func TestRequestTrailersThroughPair(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	for _, tt := range []struct {
		name   string
		client *http.Client
	}{{"http1", h1Client()}, {"h2c", h2cClient()}} {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", "http://"+mp.addr[svcProbe]+"/probe", pr)
			req.Trailer = http.Header{"X-Req-Sum": nil}
			go func() {
				io.WriteString(pw, "streamed body")
				req.Trailer.Set("X-Req-Sum", "42")
				pw.Close()
			}()
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			seen := <-mp.be.probeSeen
			if seen.body != "streamed body" || seen.trailer.Get("X-Req-Sum") != "42" {
				t.Fatalf("backend got body %q trailers %v", seen.body, seen.trailer)
			}
		})
	}
}
