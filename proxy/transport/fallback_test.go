package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/metrics"
)

func testStore(t *testing.T, ca *testpki.CA, id string) *identity.Store {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	b, err := identity.NewBundle(ca.IssueValid(t, id).TLS, pool)
	if err != nil {
		t.Fatal(err)
	}
	s := &identity.Store{}
	s.Set(b)
	return s
}

// peerListener stands for a peer proxy's inbound port on its own loopback address
// (127.0.0.N, so that probe results, cached per IP, do not mix between cases). serve
// handles each accepted connection; accepts counts them.
type peerListener struct {
	ip      netip.Addr
	port    uint16
	accepts atomic.Int32
}

func listenPeer(t *testing.T, ip string, port uint16, serve func(net.Conn)) *peerListener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if port != 0 {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr(ip), port).String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &peerListener{ip: netip.MustParseAddr(ip), port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepts.Add(1)
			go serve(c)
		}
	}()
	return p
}

// tlsPeer completes the handshake as a peer proxy with store's certificate, then
// waits for the client to close.
func tlsPeer(store *identity.Store) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, store.ServerConfig(false))
		if tc.Handshake() != nil {
			return
		}
		io.Copy(io.Discard, tc)
	}
}

func newTestFallback(t *testing.T, client *identity.Store, port uint16, mode TLSMode, tweak func(*FallbackOptions)) *Fallback {
	o := FallbackOptions{Mode: mode, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		InboundPort: port, Timeout: 300 * time.Millisecond, TTL: time.Minute}
	if tweak != nil {
		tweak(&o)
	}
	return NewFallback(o, NewMesh(Options{ConnectTimeout: time.Second, Metrics: metrics.New(), Identity: client}))
}

func metricsOf(t *testing.T, f *Fallback) string {
	var b strings.Builder
	if err := f.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestFallbackDecide: what a connection to an address discovery has not described
// gets, by what listens on the address's inbound port and the mode.
func TestFallbackDecide(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	client := testStore(t, ca, "spiffe://weft.test/ns/a/sa/client")
	server := testStore(t, ca, "spiffe://weft.test/ns/b/sa/server")
	meshed := listenPeer(t, "127.0.0.11", 0, tlsPeer(server))
	port := meshed.port
	other := testpki.NewCA(t, "another mesh")
	cases := []struct {
		name   string
		ip     string
		serve  func(net.Conn) // nil: nothing listens (connection refused)
		mode   TLSMode
		want   Way
		id     string
		result string
	}{
		{"a peer proxy of the mesh: mTLS, held to the identity it proved", "127.0.0.11", nil, Opportunistic, GoMeshed, "spiffe://weft.test/ns/b/sa/server", "meshed"},
		{"same in Strict", "127.0.0.11", nil, Strict, GoMeshed, "spiffe://weft.test/ns/b/sa/server", "meshed"},
		{"nothing listens: plaintext when Opportunistic", "127.0.0.12", nil, Opportunistic, GoPlain, "", "not_meshed"},
		{"nothing listens: refused when Strict", "127.0.0.13", nil, Strict, GoRefused, "", "not_meshed"},
		{"a plaintext server on the port is not the mesh", "127.0.0.14", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}, Strict, GoRefused, "", "not_meshed"},
		{"another mesh's certificate is not the mesh", "127.0.0.15", tlsPeer(testStore(t, other, "spiffe://weft.test/ns/b/sa/server")), Strict, GoRefused, "", "not_meshed"},
		{"another trust domain under the same roots is not the mesh", "127.0.0.16", tlsPeer(testStore(t, ca, "spiffe://evil.test/ns/b/sa/server")), Strict, GoRefused, "", "not_meshed"},
		{"a peer that never answers the handshake: timeout, refused when Strict", "127.0.0.17", func(c net.Conn) {
			time.Sleep(2 * time.Second)
			c.Close()
		}, Strict, GoRefused, "", "timeout"},
		{"a peer that never answers the handshake: plaintext when Opportunistic", "127.0.0.18", func(c net.Conn) {
			time.Sleep(2 * time.Second)
			c.Close()
		}, Opportunistic, GoPlain, "", "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.serve != nil {
				listenPeer(t, tc.ip, port, tc.serve)
			}
			f := newTestFallback(t, client, port, tc.mode, nil)
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.ip), 8080)
			start := time.Now()
			d := f.Decide(context.Background(), dst, false)
			if d.Way != tc.want || d.Peer.ID != tc.id {
				t.Fatalf("decision %+v, want way %v identity %q", d, tc.want, tc.id)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("deciding took %v, more than the probe timeout allows", took)
			}
			if d.Way == GoMeshed && d.Peer.Addr != netip.AddrPortFrom(dst.Addr(), port) {
				t.Errorf("peer %v, want the address's inbound port %d", d.Peer.Addr, port)
			}
			if d.Way == GoRefused && !strings.Contains(d.Why, "Strict") {
				t.Errorf("refusal %q does not say why", d.Why)
			}
			if d.Way == GoPlain && d.NoTLSReason != NoTLSNotProvided {
				t.Errorf("no_tls_reason %q, want %q", d.NoTLSReason, NoTLSNotProvided)
			}
			if !strings.Contains(metricsOf(t, f), `weft_outbound_mesh_probe_total{result="`+tc.result+`"} 1`) {
				t.Errorf("metrics lack one probe with result %s:\n%s", tc.result, metricsOf(t, f))
			}
		})
	}

	t.Run("discovery unavailable labels the plaintext", func(t *testing.T) {
		f := newTestFallback(t, client, port, Opportunistic, nil)
		d := f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.19:80"), true)
		if d.Way != GoPlain || d.NoTLSReason != NoTLSDiscoveryUnavailable {
			t.Fatalf("decision %+v, want plaintext labelled %s", d, NoTLSDiscoveryUnavailable)
		}
	})
	t.Run("outside the cluster networks: plaintext without a probe, even when Strict", func(t *testing.T) {
		f := newTestFallback(t, client, port, Strict, func(o *FallbackOptions) {
			o.ClusterNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		})
		before := meshed.accepts.Load()
		if d := f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.11:80"), true); d.Way != GoPlain {
			t.Fatalf("decision %+v, want plaintext", d)
		}
		if meshed.accepts.Load() != before {
			t.Error("probed an address outside the cluster networks")
		}
	})
	t.Run("without a certificate nothing is learnt nor kept: refused when Strict, mTLS once it has one", func(t *testing.T) {
		store := &identity.Store{}
		f := newTestFallback(t, store, port, Strict, nil)
		if d := f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.11:80"), false); d.Way != GoRefused {
			t.Fatalf("decision %+v, want refused", d)
		}
		store.Set(client.Current())
		if d := f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.11:80"), false); d.Way != GoMeshed {
			t.Fatalf("decision %+v once the proxy has its certificate, want meshed", d)
		}
	})
}

// TestFallbackProbeCache: an address costs one probe per TTL, however many
// connections go to it at once or in a row; after the TTL it is probed again, and
// the map of results stays within its bound.
func TestFallbackProbeCache(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	client := testStore(t, ca, "spiffe://weft.test/ns/a/sa/client")
	server := testStore(t, ca, "spiffe://weft.test/ns/b/sa/server")
	peer := listenPeer(t, "127.0.0.21", 0, tlsPeer(server))
	f := newTestFallback(t, client, peer.port, Strict, func(o *FallbackOptions) { o.MaxEntries = 2 })
	clock := time.Now()
	var clockMu sync.Mutex
	f.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	dst := netip.MustParseAddrPort("127.0.0.21:80")

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if d := f.Decide(context.Background(), dst, false); d.Way != GoMeshed {
				t.Errorf("decision %+v, want meshed", d)
			}
		})
	}
	wg.Wait()
	for range 5 {
		f.Decide(context.Background(), dst, false)
	}
	if n := peer.accepts.Load(); n != 1 {
		t.Fatalf("%d probes for 25 connections within the TTL, want 1", n)
	}
	clockMu.Lock()
	clock = clock.Add(2 * time.Minute)
	clockMu.Unlock()
	f.Decide(context.Background(), dst, false)
	if n := peer.accepts.Load(); n != 2 {
		t.Fatalf("%d probes after the TTL, want 2", n)
	}
	// Reaching the peer failed: its result is forgotten and the next one probes.
	f.Forget(dst.Addr())
	f.Decide(context.Background(), dst, false)
	if n := peer.accepts.Load(); n != 3 {
		t.Fatalf("%d probes after Forget, want 3", n)
	}
	// Bounded: with two entries kept and none expired, a third address is probed
	// but not kept.
	f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.22:80"), false)
	f.Decide(context.Background(), netip.MustParseAddrPort("127.0.0.23:80"), false)
	f.mu.Lock()
	n := len(f.results)
	f.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d results kept, want at most 2", n)
	}
}

// TestPlaintextToMeshedCounted: plaintext sent to an address (no proxy answered in
// time) is counted once the address is known to be meshed, by a later probe or by
// discovery.
func TestPlaintextToMeshedCounted(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	client := testStore(t, ca, "spiffe://weft.test/ns/a/sa/client")
	server := testStore(t, ca, "spiffe://weft.test/ns/b/sa/server")
	// Find a free port, leave it closed: the first probes are refused.
	tmp := listenPeer(t, "127.0.0.31", 0, func(c net.Conn) { c.Close() })
	port := tmp.port
	f := newTestFallback(t, client, port, Opportunistic, func(o *FallbackOptions) { o.TTL = time.Nanosecond })
	dst := netip.MustParseAddrPort("127.0.0.32:80")
	for range 3 {
		if d := f.Decide(context.Background(), dst, true); d.Way != GoPlain {
			t.Fatalf("decision %+v, want plaintext", d)
		}
	}
	if !strings.Contains(metricsOf(t, f), "weft_outbound_plaintext_to_meshed_total 0") {
		t.Fatalf("counted before the address was known to be meshed:\n%s", metricsOf(t, f))
	}
	listenPeer(t, "127.0.0.32", port, tlsPeer(server))
	if d := f.Decide(context.Background(), dst, true); d.Way != GoMeshed {
		t.Fatalf("decision %+v, want meshed once the proxy answers", d)
	}
	if !strings.Contains(metricsOf(t, f), "weft_outbound_plaintext_to_meshed_total 3") {
		t.Fatalf("want 3 plaintext connections to a meshed address:\n%s", metricsOf(t, f))
	}

	// Discovery saying so counts too.
	other := netip.MustParseAddrPort("127.0.0.33:80")
	f.Decide(context.Background(), other, true)
	f.ObserveMeshed(other.Addr())
	if !strings.Contains(metricsOf(t, f), "weft_outbound_plaintext_to_meshed_total 4") {
		t.Fatalf("want 4 after discovery named the address meshed:\n%s", metricsOf(t, f))
	}
}

// BenchmarkDecideCached is the cost a connection to an undescribed in-cluster address
// pays once its IP's probe result is cached: a prefix scan and a map read.
func BenchmarkDecideCached(b *testing.B) {
	ca := testpki.NewCA(b, "anchor")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	stores := [2]*identity.Store{}
	for i, id := range []string{"spiffe://weft.test/ns/a/sa/client", "spiffe://weft.test/ns/b/sa/server"} {
		bundle, err := identity.NewBundle(ca.IssueValid(b, id).TLS, pool)
		if err != nil {
			b.Fatal(err)
		}
		stores[i] = &identity.Store{}
		stores[i].Set(bundle)
	}
	ln, err := net.Listen("tcp", "127.0.0.41:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go tlsPeer(stores[1])(c)
		}
	}()
	f := NewFallback(FallbackOptions{ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")},
		InboundPort: uint16(ln.Addr().(*net.TCPAddr).Port), TTL: time.Hour}, NewMesh(Options{ConnectTimeout: time.Second, Metrics: metrics.New(), Identity: stores[0]}))
	dst := netip.MustParseAddrPort("127.0.0.41:80")
	start := time.Now()
	if d := f.Decide(context.Background(), dst, true); d.Way != GoMeshed {
		b.Fatalf("decision %+v", d)
	}
	first := time.Since(start)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.Decide(context.Background(), dst, true)
	}
	b.ReportMetric(float64(first.Microseconds()), "first-probe-µs")
}
