package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
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

	"github.com/weftmesh/weft/proxy/identity"
)

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
