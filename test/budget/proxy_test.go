/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package budget

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/origdst"
	"github.com/weftmesh/weft/proxy/server"
)

const (
	// svcAddr is the Service address the app dials; the client proxy's outbound
	// listener stands for it (no iptables in a unit test).
	svcAddr = "10.96.0.1:80"
	// warmRequests fill the pools (connections, buffers, the proxies' caches) before
	// counting; measuredRequests are counted.
	warmRequests     = 300
	measuredRequests = 2000
)

// pair is a client proxy and a server proxy with mTLS between them, in this process,
// in front of a loopback app, as proxy/server's tests build them.
type pair struct {
	app     string // the backend app's address
	through string // the client proxy's outbound listener standing for svcAddr
}

func startPair(t *testing.T) *pair {
	t.Helper()
	return startPairWith(t, false, false)
}

// startPairWith is startPair; with inactive, the server proxy also carries an inbound
// policy from the control plane whose port has a rate limit far above the load; with
// unsampled, both proxies trace to a collector at a sampling rate of 0.
func startPairWith(t *testing.T, inactive, unsampled bool) *pair {
	t.Helper()
	pki, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	appLn := listen(t)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(payload) }), Protocols: &protos}
	go func() { _ = hs.Serve(appLn) }()
	t.Cleanup(func() { _ = hs.Close() })

	serverID := pki.SPIFFEID("b", "server")
	bp := startProxy(t, &config.Config{}, identityStore(t, pki, "b", "server"))
	var tracing *config.Tracing
	var serverTracing *api.Tracing
	if unsampled {
		// Nothing listens on the collector's port: an unsampled request exports nothing.
		tracing = &config.Tracing{Collector: "127.0.0.1:9", SamplingPerMillion: 0}
		serverTracing = &api.Tracing{Collector: "127.0.0.1:9", SamplingPerMillion: 0, ServiceName: "budget"}
		if !inactive {
			bp.srv.SetInboundPolicy(&api.InboundPolicy{Version: "tracing", Tracing: serverTracing,
				DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"},
					Authorizations: []*api.Authorization{{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"}}}}})
		}
	}
	if inactive {
		admitAll := &api.Authorization{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"}}
		bp.srv.SetInboundPolicy(&api.InboundPolicy{Version: "inactive",
			DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"}, Authorizations: []*api.Authorization{admitAll}},
			Servers: []*api.InboundServer{{Port: uint32(port(appLn.Addr())), Ref: &api.PolicyRef{Group: "policy.weft.dev", Kind: "Server", Namespace: "b", Name: "app"},
				Authorizations: []*api.Authorization{admitAll},
				RateLimit:      &api.RateLimit{Ref: &api.PolicyRef{Group: "policy.weft.dev", Kind: "HTTPLocalRateLimitPolicy", Namespace: "b", Name: "far-above"}, Total: 1_000_000, Identity: 1_000_000}}},
			Tracing: serverTracing,
		})
	}
	ap := startProxy(t, &config.Config{Tracing: tracing, Destinations: []config.Destination{{
		Addresses: []string{svcAddr},
		// Labelled as the destination service labels a Deployment's pod, so the
		// figure includes finding a series by the endpoint's labels.
		Endpoints: []config.Endpoint{{Address: "127.0.0.1", Port: port(appLn.Addr()), Identity: serverID, ProxyPort: bp.inboundPort,
			MetricLabels: map[string]string{"dst_namespace": "b", "dst_service": "server", "dst_pod": "server-7d4b9c8f6d-x2k9p",
				"dst_serviceaccount": "server", "dst_deployment": "server", "dst_pod_template_hash": "7d4b9c8f6d"}}},
	}}}, identityStore(t, pki, "a", "client"))
	return &pair{app: appLn.Addr().String(), through: ap.outbound(t, svcAddr)}
}

func identityStore(t *testing.T, pki *desttest.PKI, ns, sa string) *identity.Store {
	t.Helper()
	cert, err := pki.WorkloadCert(ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.Root)
	b, err := identity.NewBundle(cert, roots)
	if err != nil {
		t.Fatal(err)
	}
	s := &identity.Store{}
	s.Set(b)
	return s
}

// inProcessProxy is one proxy; origin maps its outbound listeners' ports to the
// destination each stands for (the redirect iptables would do).
type inProcessProxy struct {
	srv         *server.Server
	inboundPort uint16
	mu          sync.Mutex
	origin      map[int]netip.AddrPort
}

func startProxy(t *testing.T, cfg *config.Config, store *identity.Store) *inProcessProxy {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	p := &inProcessProxy{origin: map[int]netip.AddrPort{}}
	p.srv = server.New(cfg, server.Options{
		Log:                logr.Discard(),
		Identity:           store,
		Metrics:            metrics.New(),
		ConnectTimeout:     2 * time.Second,
		UnsafeLoopbackApps: true, // the app listens on 127.0.0.1
		OriginalDst: func(_ metrics.Direction, c *net.TCPConn) (netip.AddrPort, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if d, ok := p.origin[c.LocalAddr().(*net.TCPAddr).Port]; ok {
				return d, nil
			}
			return netip.AddrPort{}, origdst.ErrNotRedirected
		},
	})
	ln := listen(t)
	p.inboundPort = port(ln.Addr())
	go func() { _ = p.srv.ServeInbound(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
	})
	return p
}

func (p *inProcessProxy) outbound(t *testing.T, dst string) string {
	t.Helper()
	ln := listen(t)
	p.mu.Lock()
	p.origin[int(port(ln.Addr()))] = netip.MustParseAddrPort(dst)
	p.mu.Unlock()
	go func() { _ = p.srv.ServeOutbound(ln) }()
	return ln.Addr().String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func port(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }

func appClient(h2 bool) *http.Client {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p, DisableCompression: true}}
}

// mallocsPerRequest sends warm-up requests to addr one at a time, then counts the
// heap allocations of the whole process (runtime.MemStats.Mallocs) over
// measuredRequests more and returns their mean. inject allocations are made per
// request inside the counted window: the test hook that proves the guard sees them.
//
// The collector is off while counting: a collection empties sync.Pools, and the
// refills after it would make the count depend on when the collector ran. Every
// allocation of every goroutine counts: the app client, the app and, when addr is
// the pair, both proxies.
func mallocsPerRequest(t *testing.T, c *http.Client, addr string, inject int) float64 {
	t.Helper()
	url := "http://" + addr + "/"
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", url, resp.Status)
		}
	}
	for range warmRequests {
		get()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range measuredRequests {
		get()
		for range inject {
			sink = make([]byte, 64)
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / measuredRequests
}

// sink keeps injected allocations on the heap.
var sink []byte

// proxiedAllocs is the allocations per request the two proxies add: the count
// through the pair minus the count of the same client straight to the app. inject
// allocations per request are added to the proxied count only.
func proxiedAllocs(t *testing.T, h2 bool, inject int) (proxied, direct float64) {
	t.Helper()
	p := startPair(t)
	direct = mallocsPerRequest(t, appClient(h2), p.app, 0)
	through := mallocsPerRequest(t, appClient(h2), p.through, inject)
	return through - direct, direct
}

// TestProxyAllocsPerRequest is the budget on allocations per proxied request: one
// request at a time, 1 KiB responses, through a client proxy and a server proxy with
// mTLS between them on loopback (both proxies in this process, so both count), with
// the app client's and the app's own allocations subtracted.
func TestProxyAllocsPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		h2   bool
	}{{"http1", false}, {"http2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			proxied, direct := proxiedAllocs(t, tc.h2, 0)
			t.Logf("%s: %.1f allocations per request through the pair, %.1f of them the app client's and the app's", tc.name, proxied+direct, direct)
			enforce(t, "proxy_allocs_per_request_"+tc.name, "allocs",
				fmt.Sprintf("heap allocations per %s request added by a client proxy and a server proxy (mTLS, loopback, one request at a time, 1 KiB response), both in one process: count through the pair minus count straight to the app, over %d requests after %d of warm-up, collector off", tc.name, measuredRequests, warmRequests),
				proxied)
		})
	}
}

// TestProxyBudgetSeesOneAllocation proves the measurement's resolution: one extra
// 64-byte allocation per request shows as +1 (±0.5) allocation per request, so a 20%
// growth of a figure near 100 cannot hide in the noise.
func TestProxyBudgetSeesOneAllocation(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the pair twice more")
	}
	base, _ := proxiedAllocs(t, false, 0)
	injected, _ := proxiedAllocs(t, false, 1)
	if d := injected - base; d < 0.5 || d > 1.5 {
		t.Fatalf("one injected allocation per request measured as %+.2f (%.2f -> %.2f)", d, base, injected)
	}
	t.Logf("without injection %.2f, with one allocation injected per request %.2f", base, injected)
}

// TestInactiveFeaturesCostNothing: an inbound policy from the control plane whose port
// has a rate limit far above the load adds no allocation to a proxied request (at most
// half of one, the measurement's resolution: TestProxyBudgetSeesOneAllocation). It
// also prints what tracing at a sampling rate of 0 costs: not nothing, since the proxy
// still decides and propagates "not sampled" (traceparent with flags 00) so the next
// hop does not roll its own dice; a proxy without tracing configured does no tracing
// work at all (proxy/tracing TestOffDoesNothing). Times per request are printed too
// (one request at a time on loopback: indicative, not enforced).
func TestInactiveFeaturesCostNothing(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "http2"}[h2], func(t *testing.T) {
			perRequest := func(p *pair) (allocs float64, d time.Duration) {
				start := time.Now()
				allocs = mallocsPerRequest(t, appClient(h2), p.through, 0)
				return allocs, time.Since(start) / (warmRequests + measuredRequests)
			}
			a0, d0 := perRequest(startPairWith(t, false, false))
			a1, d1 := perRequest(startPairWith(t, true, false))
			a2, d2 := perRequest(startPairWith(t, false, true))
			fmt.Printf("budget: inactive rate limit and policy: %+.2f allocations per request (%.1f -> %.1f), %v -> %v per request\n", a1-a0, a0, a1, d0, d1)
			fmt.Printf("budget: tracing at 0%% sampling: %+.2f allocations per request (%.1f -> %.1f), %v -> %v per request\n", a2-a0, a0, a2, d0, d2)
			if a1-a0 > 0.5 {
				t.Errorf("an inbound policy with a rate limit far above the load adds %.2f allocations per request, want none", a1-a0)
			}
		})
	}
}
