package netns

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// meshPeer dials pod B's inbound port from pod A's namespace the way a peer proxy
// does, or an attacker who completes the TLS handshake with or without a client
// certificate (the default policy, all-unauthenticated, lets both through).
type meshPeer struct {
	from *NS
	to   string
	cert *tls.Certificate
}

func (p meshPeer) dial(t *testing.T, alpn string) *tls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := p.from.DialContext(ctx, "tcp", p.to)
	if err != nil {
		t.Fatalf("dial %s: %v", p.to, err)
	}
	cfg := &tls.Config{NextProtos: []string{alpn}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if p.cert != nil {
		cfg.Certificates = []tls.Certificate{*p.cert}
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS handshake with ALPN %s: %v", alpn, err)
	}
	if got := c.ConnectionState().NegotiatedProtocol; got != alpn {
		t.Fatalf("negotiated ALPN %q, want %q", got, alpn)
	}
	return c
}

// request POSTs path to weft-dst dst over weft.h1 or weft.h2 and returns the status,
// the Weft-Proxy-Error header and the body.
func (p meshPeer) request(t *testing.T, alpn, path, dst string) (int, string, string) {
	t.Helper()
	c := p.dial(t, alpn)
	defer c.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://app"+path, strings.NewReader(""))
	req.Header.Set("Weft-Dst", dst)
	req.Header.Set("Weft-Proto", "h1")
	var resp *http.Response
	var err error
	if alpn == "weft.h1" {
		if err = req.Write(c); err == nil {
			resp, err = http.ReadResponse(bufio.NewReader(c), req)
		}
	} else {
		var cc *http2.ClientConn
		if cc, err = (&http2.Transport{}).NewClientConn(c); err == nil {
			resp, err = cc.RoundTrip(req)
		}
	}
	if err != nil {
		t.Fatalf("%s to weft-dst %s: %v", alpn, dst, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"), string(b)
}

// tcp sends the weft.tcp header naming dst and an HTTP request after it, and returns
// what came back before the proxy closed the connection.
func (p meshPeer) tcp(t *testing.T, dst string) string {
	t.Helper()
	c := p.dial(t, "weft.tcp")
	defer c.Close()
	fmt.Fprintf(c, "weft-dst: %s\nPOST /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", dst)
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestInboundRelayTargets is the issue's attack in real pods: pod B runs weft-init and
// weft-proxy (the real binary, as the proxy UID, no test flags) under the default
// policy; from pod A, a peer without a client certificate and one with a valid one
// name weft-dst targets that are not B's application: B's loopback (the admin server
// and a localhost-only service, over IPv4 and IPv6), B's pod IP on the proxy's own
// ports, the unspecified address, and another pod. Every one is refused on weft.h1,
// weft.h2 and weft.tcp; the localhost-only service sees no connection; the proxy does
// not shut down and serves B's application afterwards, to both peers.
func TestInboundRelayTargets(t *testing.T) {
	RequireRoot(t)
	dir, err := os.MkdirTemp("", "weft-relay-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leafB, err := ca.Issue(idB, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	filesB, err := ca.WriteIdentity(dir, "b", leafB)
	if err != nil {
		t.Fatal(err)
	}
	leafA, err := ca.Issue(idA, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certA, err := tls.X509KeyPair(leafA.CertPEM, leafA.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}

	a, b := twoPods(t)
	// B's application on every address, and a service B keeps to itself on
	// loopback (like a debug port or a secrets agent), counting its connections.
	serve := func(addr string, h http.HandlerFunc) *atomic.Int64 {
		l, err := b.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		n := &atomic.Int64{}
		hs := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				n.Add(1)
			}
		}}
		go hs.Serve(l)
		t.Cleanup(func() { hs.Close() })
		return n
	}
	serve(":8080", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app:"+r.URL.Path) })
	secret4 := serve("127.0.0.1:8081", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") })
	secret6 := serve("[::1]:8081", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") })

	podB := startPod(t, b, dir, "b", "inbound: {defaultPolicy: all-unauthenticated}\n", filesB,
		"--skip-inbound-ports", "4190,4191")

	targets := []string{
		"127.0.0.1:4191",
		"[::1]:4191",
		"127.0.0.1:8081",
		"[::1]:8081",
		"[::ffff:127.0.0.1]:8081",
		addrB + ":4140",
		addrB + ":4143",
		addrB + ":4191",
		"[" + addrB6 + "]:4191",
		"0.0.0.0:8080",
		"[::]:8080",
		addrA + ":8080",
	}
	peers := []struct {
		name string
		p    meshPeer
	}{
		{"unauthenticated", meshPeer{from: a, to: addrB + ":4143"}},
		{"authenticated", meshPeer{from: a, to: addrB + ":4143", cert: &certA}},
	}
	refusals := 0
	for _, pe := range peers {
		for _, dst := range targets {
			for _, alpn := range []string{"weft.h1", "weft.h2"} {
				t.Run(pe.name+"/"+alpn+"/"+dst, func(t *testing.T) {
					code, perr, body := pe.p.request(t, alpn, "/shutdown", dst)
					if code != http.StatusForbidden || perr == "" {
						t.Fatalf("%d %q %q, want 403 with Weft-Proxy-Error", code, perr, body)
					}
				})
				refusals++
			}
			t.Run(pe.name+"/weft.tcp/"+dst, func(t *testing.T) {
				if got := pe.p.tcp(t, dst); got != "" {
					t.Fatalf("weft.tcp answered %q, want the connection closed", got)
				}
			})
			refusals++
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := secret4.Load() + secret6.Load(); n != 0 {
		t.Errorf("B's loopback-only service saw %d connections", n)
	}
	if strings.Contains(podB.proxyLog.String(), "Shutdown requested") {
		t.Errorf("B's proxy was asked to shut down through the relay")
	}
	if code, _, err := podB.admin(ctx, "/ready"); err != nil || code != 200 {
		t.Fatalf("B's proxy is not ready any more: %d %v", code, err)
	}
	_, m, err := podB.admin(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, "weft_inbound_relay_refused_total{") {
			var n int
			fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%d", &n)
			total += n
		}
	}
	if total != refusals {
		t.Errorf("weft_inbound_relay_refused_total sums to %d, want %d", total, refusals)
	}
	// The legitimate request still goes through, on every ALPN, for both peers.
	for _, pe := range peers {
		for _, alpn := range []string{"weft.h1", "weft.h2"} {
			if code, _, body := pe.p.request(t, alpn, "/ok", addrB+":8080"); code != 200 || body != "app:/ok" {
				t.Errorf("%s %s to B's app: %d %q", pe.name, alpn, code, body)
			}
		}
		if got := pe.p.tcp(t, addrB+":8080"); !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.Contains(got, "app:/shutdown") {
			t.Errorf("%s weft.tcp to B's app: %q", pe.name, got)
		}
	}
}
