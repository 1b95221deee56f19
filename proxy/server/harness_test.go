package server_test

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/origdst"
	"github.com/weftmesh/weft/proxy/server"
)

const trustDomain = "weft.test"

func spiffe(ns, sa string) string { return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa }

// proxy is one in-process Weft proxy listening on loopback. Without iptables, the
// original destination of each outbound listener is fixed by the test hook: every
// listener stands for one "service address" the app dialled.
type proxy struct {
	t       testing.TB
	srv     *server.Server
	reg     *metrics.Registry
	store   *identity.Store
	inbound string // inbound listener ip:port

	mu     sync.Mutex
	origin map[int]netip.AddrPort // local listener port -> original destination
}

func newStore(t testing.TB, leaf *testpki.Leaf, roots ...*testpki.CA) *identity.Store {
	t.Helper()
	pool := x509.NewCertPool()
	for _, ca := range roots {
		pool.AddCert(ca.Cert)
	}
	b, err := identity.NewBundle(leaf.TLS, pool)
	if err != nil {
		t.Fatal(err)
	}
	s := &identity.Store{}
	s.Set(b)
	return s
}

func logger(t testing.TB) logr.Logger {
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		return testr.NewWithOptions(tt, testr.Options{Verbosity: 1})
	}
	return logr.Discard()
}

// startProxy starts a proxy with cfg; mods adjust its options (a Source, balancer
// tuning) before it starts.
func startProxy(t testing.TB, cfg *config.Config, store *identity.Store, mods ...func(*server.Options)) *proxy {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	p := &proxy{t: t, reg: metrics.New(), store: store, origin: map[int]netip.AddrPort{}}
	opts := server.Options{
		Log:            logger(t),
		Identity:       store,
		Metrics:        p.reg,
		ConnectTimeout: 2 * time.Second,
		// The tests' apps listen on 127.0.0.1; relay_test.go turns this off.
		UnsafeLoopbackApps: true,
		OriginalDst: func(dir metrics.Direction, c *net.TCPConn) (netip.AddrPort, error) {
			port := c.LocalAddr().(*net.TCPAddr).Port
			p.mu.Lock()
			defer p.mu.Unlock()
			if d, ok := p.origin[port]; ok {
				return d, nil
			}
			return netip.AddrPort{}, origdst.ErrNotRedirected
		},
	}
	for _, m := range mods {
		m(&opts)
	}
	p.srv = server.New(cfg, opts)
	if store != nil {
		p.reg.CertExpiry = store.Expiry
	}
	ln := listen(t)
	p.inbound = ln.Addr().String()
	go p.srv.ServeInbound(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
	return p
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// outbound opens an outbound listener standing for connections to dst and returns
// its address: what the app "dials" instead of dst.
func (p *proxy) outbound(dst string) string {
	p.t.Helper()
	ln := listen(p.t)
	p.mu.Lock()
	p.origin[ln.Addr().(*net.TCPAddr).Port] = netip.MustParseAddrPort(dst)
	p.mu.Unlock()
	go p.srv.ServeOutbound(ln)
	return ln.Addr().String()
}

// inboundPlain opens an extra inbound listener whose connections look redirected to
// dst (an unmeshed client calling the app).
func (p *proxy) inboundPlain(dst string) string {
	p.t.Helper()
	ln := listen(p.t)
	p.mu.Lock()
	p.origin[ln.Addr().(*net.TCPAddr).Port] = netip.MustParseAddrPort(dst)
	p.mu.Unlock()
	go p.srv.ServeInbound(ln)
	return ln.Addr().String()
}

func (p *proxy) inboundPort() uint16 {
	ap := netip.MustParseAddrPort(p.inbound)
	return ap.Port()
}

// metricsText scrapes the registry as /metrics would.
func (p *proxy) metricsText() string {
	var b strings.Builder
	p.reg.WriteText(&b)
	return b.String()
}

// metricValue returns the value of the first series whose line starts with name{
// and contains every label given, or -1.
func metricValue(text, name string, labels ...string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			return f
		}
	}
	return -1
}

// serveHTTP runs h on loopback speaking HTTP/1.1 and h2c (prior knowledge), like an
// app would.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: h, Protocols: &protos}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func mustPort(addr string) uint16 { return netip.MustParseAddrPort(addr).Port() }
