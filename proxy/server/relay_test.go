package server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

// hostAddr returns a non-loopback, non-link-local address of this host: where a
// pod's application listens. The test is skipped on a host without one.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is4() && !p.Addr().IsLinkLocalUnicast() {
				return p.Addr()
			}
		}
	}
	t.Skip("this host has no non-loopback IPv4 address to run an application on")
	return netip.Addr{}
}

// countingListener serves HTTP on addr and counts the connections it accepts: a
// localhost-only service of the pod that no peer may reach.
func countingServer(t *testing.T, addr string, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n := &atomic.Int64{}
	hs := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), n
}

// peer speaks to a proxy's inbound port the way a peer proxy does, or an attacker
// who completed the TLS handshake with or without a client certificate.
type peer struct {
	inbound string
	cert    *tls.Certificate // nil: no client certificate
}

func (p peer) dial(t *testing.T, alpn string) *tls.Conn {
	t.Helper()
	cfg := &tls.Config{NextProtos: []string{alpn}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if p.cert != nil {
		cfg.Certificates = []tls.Certificate{*p.cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.inbound, cfg)
	if err != nil {
		t.Fatalf("TLS to %s with ALPN %s: %v", p.inbound, alpn, err)
	}
	if c.ConnectionState().NegotiatedProtocol != alpn {
		t.Fatalf("ALPN %q not negotiated", alpn)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

type answer struct {
	status   int
	proxyErr string
	body     string
}

// request sends method path with weft-dst dst over weft.h1 or weft.h2.
func (p peer) request(t *testing.T, alpn, method, path, dst string) answer {
	t.Helper()
	c := p.dial(t, alpn)
	defer c.Close()
	req, _ := http.NewRequest(method, "http://app"+path, nil)
	req.Header.Set("Weft-Dst", dst)
	req.Header.Set("Weft-Proto", "h1") // the apps here speak HTTP/1.1
	var resp *http.Response
	var err error
	switch alpn {
	case identity.ALPNHTTP1:
		if err = req.Write(c); err == nil {
			resp, err = http.ReadResponse(bufio.NewReader(c), req)
		}
	case identity.ALPNHTTP2:
		var cc *http2.ClientConn
		if cc, err = (&http2.Transport{}).NewClientConn(c); err == nil {
			resp, err = cc.RoundTrip(req)
		}
	}
	if err != nil {
		t.Fatalf("%s %s over %s to weft-dst %s: %v", method, path, alpn, dst, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Weft-Proxy-Error"), string(b)}
}

// tcp opens weft.tcp to dst, sends line and returns everything read back.
func (p peer) tcp(t *testing.T, dst, line string) string {
	t.Helper()
	c := p.dial(t, identity.ALPNTCP)
	defer c.Close()
	fmt.Fprintf(c, "weft-dst: %s\n%s", dst, line)
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestInboundRelaysOnlyToTheApp: a peer names a weft-dst that is not the pod's
// application (loopback, unspecified, link-local, the proxy's own ports, another
// host) with and without a client certificate, over weft.h1, weft.h2 and weft.tcp.
// Each is refused (403 with Weft-Proxy-Error, or the weft.tcp connection closed) and
// counted, the loopback-only service never sees a connection, and the proxy keeps
// serving the application.
func TestInboundRelaysOnlyToTheApp(t *testing.T) {
	host := hostAddr(t)
	ca := testpki.NewCA(t, "anchor")
	store := newStore(t, ca.IssueValid(t, spiffe("default", serverSA)), ca)
	clientLeaf := ca.IssueValid(t, spiffe("default", clientSA))
	const adminPort = 4191
	b := startProxy(t, &config.Config{}, store, func(o *server.Options) {
		o.UnsafeLoopbackApps = false
		o.ProxyPorts = []uint16{adminPort}
	})
	// The pod's application, on the pod's address, HTTP and opaque TCP.
	app, _ := countingServer(t, netip.AddrPortFrom(host, 0).String(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app:"+r.URL.Path)
	}))
	appTCP, err := net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	serveName(t, appTCP, "app-tcp")
	// A service the pod keeps to itself, on loopback, like the admin server.
	secret, secretConns := countingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	}))
	secretPort := mustPort(secret)
	inPort := b.inboundPort()

	targets := []struct {
		name, dst, reason string
	}{
		{"ipv4 loopback", secret, "loopback"},
		{"other loopback address", fmt.Sprintf("127.1.2.3:%d", secretPort), "loopback"},
		{"ipv6 loopback", fmt.Sprintf("[::1]:%d", secretPort), "loopback"},
		{"ipv4-mapped loopback", fmt.Sprintf("[::ffff:127.0.0.1]:%d", secretPort), "loopback"},
		{"unspecified ipv4", fmt.Sprintf("0.0.0.0:%d", secretPort), "not_unicast"},
		{"unspecified ipv6", fmt.Sprintf("[::]:%d", secretPort), "not_unicast"},
		{"link-local metadata service", "169.254.169.254:80", "not_unicast"},
		{"the pod's address, inbound port", netip.AddrPortFrom(host, inPort).String(), "proxy_port"},
		{"the pod's address, admin port", netip.AddrPortFrom(host, adminPort).String(), "proxy_port"},
		{"another host", "10.255.255.1:80", "not_local"},
	}
	peers := []struct {
		name string
		p    peer
	}{
		{"without certificate", peer{inbound: b.inbound}},
		{"with certificate", peer{inbound: b.inbound, cert: &clientLeaf.TLS}},
	}
	want := map[string]float64{}
	for _, pe := range peers {
		for _, tg := range targets {
			for _, alpn := range []string{identity.ALPNHTTP1, identity.ALPNHTTP2} {
				t.Run(pe.name+"/"+alpn+"/"+tg.name, func(t *testing.T) {
					a := pe.p.request(t, alpn, http.MethodPost, "/shutdown", tg.dst)
					if a.status != http.StatusForbidden || a.proxyErr == "" || !strings.Contains(a.body, "forwards only to the pod's own application addresses") {
						t.Fatalf("answer %d %q %q, want 403 from the proxy saying why", a.status, a.proxyErr, a.body)
					}
				})
				want[tg.reason]++
			}
			t.Run(pe.name+"/weft.tcp/"+tg.name, func(t *testing.T) {
				if got := pe.p.tcp(t, tg.dst, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
					t.Fatalf("weft.tcp to %s answered %q, want the connection closed", tg.dst, got)
				}
			})
			want[tg.reason]++
		}
	}
	if n := secretConns.Load(); n != 0 {
		t.Errorf("the loopback-only service saw %d connections", n)
	}
	m := b.metricsText()
	for reason, n := range want {
		if got := metricValue(m, "weft_inbound_relay_refused_total", `reason="`+reason+`"`); got != n {
			t.Errorf("weft_inbound_relay_refused_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}

	// The application is still served, on every ALPN, for both peers.
	for _, pe := range peers {
		for _, alpn := range []string{identity.ALPNHTTP1, identity.ALPNHTTP2} {
			if a := pe.p.request(t, alpn, http.MethodGet, "/hello", app); a.status != 200 || a.body != "app:/hello" {
				t.Errorf("%s %s to the app: %d %q", pe.name, alpn, a.status, a.body)
			}
		}
		if got := pe.p.tcp(t, appTCP.Addr().String(), "ping\n"); !strings.HasPrefix(got, "app-tcp") {
			t.Errorf("%s weft.tcp to the app: %q", pe.name, got)
		}
	}
}

// TestRelayedAdminWriteRefused is the issue's attack: a peer names the proxy's admin
// server in weft-dst and POSTs /shutdown. Even with loopback apps allowed (as every
// local test setup has it), the relay refuses the admin port; and where a relay does
// reach an admin server (here one the proxy was not told about), the admin server
// refuses a write whose client socket is the proxy's own.
func TestRelayedAdminWriteRefused(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	store := newStore(t, ca.IssueValid(t, spiffe("default", serverSA)), ca)
	clientLeaf := ca.IssueValid(t, spiffe("default", clientSA))
	var shutdowns atomic.Int32
	adm := &admin.Admin{Shutdown: func() { shutdowns.Add(1) }, Log: logr.Discard()}
	known, _ := countingServer(t, "127.0.0.1:0", adm.Handler())
	unknown, _ := countingServer(t, "127.0.0.1:0", adm.Handler())
	b := startProxy(t, &config.Config{}, store, func(o *server.Options) {
		o.ProxyPorts = []uint16{mustPort(known)}
	})
	app := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	p := peer{inbound: b.inbound, cert: &clientLeaf.TLS}
	for _, alpn := range []string{identity.ALPNHTTP1, identity.ALPNHTTP2} {
		if a := p.request(t, alpn, http.MethodPost, "/shutdown", known); a.status != http.StatusForbidden || a.proxyErr == "" {
			t.Errorf("%s: /shutdown on the proxy's admin port: %d %q %q, want 403 from the relay", alpn, a.status, a.proxyErr, a.body)
		}
		if a := p.request(t, alpn, http.MethodPost, "/shutdown", unknown); a.status != http.StatusForbidden || !strings.Contains(a.body, "proxy's own relay") {
			t.Errorf("%s: /shutdown relayed to an admin server: %d %q %q, want 403 from the admin server", alpn, a.status, a.proxyErr, a.body)
		}
	}
	if got := p.tcp(t, unknown, "POST /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 403") {
		t.Errorf("weft.tcp: /shutdown relayed to an admin server answered %q, want 403", got)
	}
	if n := shutdowns.Load(); n != 0 {
		t.Fatalf("the admin server shut down %d times through the relay", n)
	}
	if a := p.request(t, identity.ALPNHTTP2, http.MethodGet, "/", app); a.status != 200 || a.body != "app" {
		t.Fatalf("the proxy stopped serving: %d %q", a.status, a.body)
	}
}

// serveName answers each connection with name and the line the client sent.
func serveName(t *testing.T, l net.Listener, name string) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "%s line=%s\n", name, strings.TrimSpace(line))
			}()
		}
	}()
}
