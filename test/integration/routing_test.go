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

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	internalidentity "github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/test/localmesh"
	"github.com/weftmesh/weft/test/netns"
)

// NS.Do must never run on the main thread (see netns.NS.Do).
func init() { runtime.LockOSThread() }

// endpointNet is a network namespace the test creates for the "pods" behind Services.
// The API server refuses loopback addresses in EndpointSlices, so endpoints get
// addresses from 198.18.0.0/15 (the benchmarking range) that exist only inside the
// namespace; a veth pair links it to the test's own namespace, where the proxies run.
type endpointNet struct {
	ns     *netns.NS
	prefix string // "198.18.N."
	// hostIP is the address of the veth's end in the test's own namespace: a
	// non-loopback address of "this host", where a meshed endpoint's proxy and app
	// run (the proxy must also reach the control plane on loopback).
	hostIP string
	next   int
	mu     sync.Mutex
}

// endpointPort is the port every backend listens on (each has its own address).
const endpointPort = 8080

func startEndpointNet(t *testing.T) *endpointNet {
	t.Helper()
	netns.RequireRoot(t)
	if err := netns.CleanupStale(); err != nil {
		t.Logf("removing stale namespaces: %v", err)
	}
	ns := netns.New(t, "endpoints")
	third := 20 + os.Getpid()%200
	prefix := fmt.Sprintf("198.18.%d.", third)
	hostIf := fmt.Sprintf("weftep%d", os.Getpid()%100000)
	ctx := context.Background()
	if err := netns.Run(ctx, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
		t.Fatal(err)
	}
	// Deleting the namespace deletes the pair; this covers a failure before that.
	t.Cleanup(func() { _ = netns.Run(context.Background(), "ip", "link", "del", hostIf) })
	for _, args := range [][]string{
		{"addr", "add", prefix + "1/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
	} {
		if err := netns.Run(ctx, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	ns.MustIP(t, "addr", "add", prefix+"2/24", "dev", "eth0")
	ns.MustIP(t, "link", "set", "eth0", "up")
	return &endpointNet{ns: ns, prefix: prefix, hostIP: prefix + "1", next: 10}
}

// backends starts one backend per name, each on a new address of the namespace.
func (n *endpointNet) backends(t *testing.T, names ...string) []*backend {
	t.Helper()
	var out []*backend
	for _, name := range names {
		n.mu.Lock()
		ip := fmt.Sprintf("%s%d", n.prefix, n.next)
		n.next++
		n.mu.Unlock()
		n.ns.MustIP(t, "addr", "add", ip+"/32", "dev", "eth0")
		var ln net.Listener
		if err := n.ns.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, endpointPort))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		out = append(out, serveBackend(t, name, ln))
	}
	return out
}

func serveBackend(t *testing.T, name string, ln net.Listener) *backend {
	b := &backend{name: name, addr: netip.MustParseAddrPort(ln.Addr().String())}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// client is the application in the web pod: it talks to its proxy's outbound
// listener and names the destination in the Host header, as an app does when iptables
// redirects its connections.
type appClient struct {
	proxy *localmesh.Proxy
	http  *http.Client
}

type result struct {
	status  int
	backend string
	latency time.Duration
	err     error
}

func (c *appClient) get(host, path string, hdr map[string]string) result {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", c.proxy.Outbound, path), nil)
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return result{err: err, latency: time.Since(start)}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return result{status: resp.StatusCode, backend: resp.Header.Get("X-Backend"), latency: time.Since(start)}
}

// spread sends n requests from conc concurrent clients and counts answers by
// backend ("" for answers without one), and statuses.
func (c *appClient) spread(host, path string, hdr map[string]string, n, conc int) (byBackend map[string]int, byStatus map[int]int, errs int) {
	byBackend, byStatus = map[string]int{}, map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				r := c.get(host, path, hdr)
				mu.Lock()
				if r.err != nil {
					errs++
				} else {
					byBackend[r.backend]++
					byStatus[r.status]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return byBackend, byStatus, errs
}

// within measures how long after a change the proxy's behaviour satisfies ok for
// five requests in a row, and fails the test past limit. The time is taken when the
// first answer of that run arrives, so slow probes do not count against the proxy.
func (c *appClient) within(t *testing.T, limit time.Duration, what string, since time.Time, probe func() result, ok func(result) bool) time.Duration {
	t.Helper()
	return c.withinN(t, 5, limit, what, since, probe, ok)
}

// withinN is within with n requests in a row.
func (c *appClient) withinN(t *testing.T, n int, limit time.Duration, what string, since time.Time, probe func() result, ok func(result) bool) time.Duration {
	t.Helper()
	streak := 0
	var last result
	var el time.Duration
	for {
		last = probe()
		if last.err == nil && ok(last) {
			if streak == 0 {
				el = time.Since(since)
			}
			streak++
			if streak == n {
				t.Logf("%s: %s after the change", what, el.Round(time.Millisecond))
				if el > limit {
					t.Errorf("%s took %s, want at most %s", what, el.Round(time.Millisecond), limit)
				}
				return el
			}
		} else {
			streak = 0
		}
		if time.Since(since) > limit+5*time.Second {
			t.Fatalf("%s: not within %s; last answer %d from %q (%v)", what, limit+5*time.Second, last.status, last.backend, last.err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func authority(svc string) string { return svc + ".shop.svc.cluster.local" }

func httpRoute(name, parent string, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
				Name: gatewayv1.ObjectName(parent), Port: ptr.To(gatewayv1.PortNumber(80)),
			}}},
			Rules: rules,
		},
	}
}

func backendRefs(svcs ...string) []gatewayv1.HTTPBackendRef {
	var out []gatewayv1.HTTPBackendRef
	for _, s := range svcs {
		out = append(out, gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(s), Port: ptr.To(gatewayv1.PortNumber(80))}}})
	}
	return out
}

func pathPrefix(p string) []gatewayv1.HTTPRouteMatch {
	return []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(p)}}}
}

func trafficSplit(name, root string, weights map[string]int32) *splitv1alpha2.TrafficSplit {
	ts := &splitv1alpha2.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name},
		Spec: splitv1alpha2.TrafficSplitSpec{Service: root}}
	names := make([]string, 0, len(weights))
	for n := range weights {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ts.Spec.Backends = append(ts.Spec.Backends, splitv1alpha2.TrafficSplitBackend{Service: n, Weight: weights[n]})
	}
	return ts
}

func serviceProfile(svc string, spec meshv1alpha1.ServiceProfileSpec) *meshv1alpha1.ServiceProfile {
	return &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: authority(svc)}, Spec: spec}
}

// backendService creates a Service and its EndpointSlice for the backends.
func (e *meshEnv) backendService(t *testing.T, name string, bs ...*backend) {
	t.Helper()
	e.apply(t, service(name, endpointPort))
	e.apply(t, endpointSlice(name, bs...))
}

// TestRoutingFollowsTheCluster is issue 5's proof: a real control plane (API server,
// cert-manager, reconcilers, identity and destination services) and a real weft-proxy
// process in mesh mode subscribed to the destination service; real HTTP backends in a
// network namespace behind EndpointSlices. Each subtest changes cluster objects and
// asserts on the traffic the proxy carries.
func TestRoutingFollowsTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, cert-manager, the control plane and a proxy")
	}
	pods := startEndpointNet(t)
	e := startMesh(t)
	proxyBin, err := localmesh.BuildProxy(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	webID := internalidentity.SPIFFEID("cluster.local", shop, "web")
	// Without iptables there is no original destination to read from the socket; the
	// override stands in for it: what the app "dialled" when the proxy knows nothing
	// better is this backend.
	origDst := pods.backends(t, "original-dst")[0]
	web := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: e.cp.IdentityAddr, Roots: e.roots,
		Token: e.token(t, "web"), ID: webID, DestinationAddr: e.cp.DestinationAddr,
		Config: fmt.Sprintf("outbound:\n  originalDstOverride: %s\n", origDst.addr)})
	waitFor(t, 20*time.Second, "the web proxy to be ready", web.Ready)
	app := &appClient{proxy: web, http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}}

	t.Run("EndpointSlices", func(t *testing.T) {
		bs := pods.backends(t, "ep-a", "ep-b", "ep-c")
		e.backendService(t, "ep", bs[0])
		host := authority("ep")
		probe := func() result { return app.get(host, "/", nil) }
		app.within(t, 5*time.Second, "first request to a new Service", time.Now(), probe,
			func(r result) bool { return r.status == 200 && r.backend == "ep-a" })

		start := time.Now()
		e.apply(t, endpointSlice("ep", bs[1]))
		app.within(t, time.Second, "endpoint replaced", start, probe,
			func(r result) bool { return r.status == 200 && r.backend == "ep-b" })

		// The balancer prefers the endpoint with the lower latency estimate, and a new
		// endpoint starts at the default RTT (30ms): make b slower than that so that
		// the new endpoint visibly takes the traffic.
		bs[1].delay.Store(int64(40 * time.Millisecond))
		app.spread(host, "/", nil, 5, 1)
		start = time.Now()
		e.apply(t, endpointSlice("ep", bs[1], bs[2]))
		app.within(t, time.Second, "endpoint added", start, probe,
			func(r result) bool { return r.status == 200 && r.backend == "ep-c" })
		got, _, errs := app.spread(host, "/", nil, 100, 4)
		if got["ep-c"] < 50 || got["ep-a"] != 0 || errs > 0 {
			t.Errorf("with endpoints b (40ms) and c (fast), 100 requests went %v (%d errors)", got, errs)
		}
		bs[1].delay.Store(0)

		start = time.Now()
		e.delete(t, endpointSlice("ep"))
		app.within(t, time.Second, "endpoints deleted", start, probe,
			func(r result) bool { return r.backend == "" && r.status >= 500 })
	})

	t.Run("TrafficSplit", func(t *testing.T) {
		bs := pods.backends(t, "split-root", "split-v1", "split-v2")
		e.backendService(t, "split", bs[0])
		e.backendService(t, "split-v1", bs[1])
		e.backendService(t, "split-v2", bs[2])
		host := authority("split")
		probe := func() result { return app.get(host, "/", nil) }
		app.within(t, 5*time.Second, "root Service served", time.Now(), probe,
			func(r result) bool { return r.backend == "split-root" })

		start := time.Now()
		e.apply(t, trafficSplit("split", "split", map[string]int32{"split-v1": 900, "split-v2": 100}))
		app.within(t, time.Second, "TrafficSplit created", start, probe,
			func(r result) bool { return r.backend == "split-v1" || r.backend == "split-v2" })
		const n = 2000
		got, statuses, errs := app.spread(host, "/", nil, n, 8)
		v1 := float64(got["split-v1"]) / n
		t.Logf("90/10 split over %d requests: %v (v1 %.1f%%), statuses %v", n, got, 100*v1, statuses)
		if v1 < 0.87 || v1 > 0.93 || got["split-v1"]+got["split-v2"] != n || errs > 0 {
			t.Errorf("90/10 split: want 90±3%% of %d to split-v1, got %v (%d errors)", n, got, errs)
		}

		start = time.Now()
		e.apply(t, trafficSplit("split", "split", map[string]int32{"split-v1": 0, "split-v2": 100}))
		app.within(t, time.Second, "TrafficSplit changed to all v2", start, probe,
			func(r result) bool { return r.backend == "split-v2" })

		start = time.Now()
		e.delete(t, trafficSplit("split", "split", nil))
		app.within(t, time.Second, "TrafficSplit deleted", start, probe,
			func(r result) bool { return r.backend == "split-root" })
	})

	t.Run("HTTPRoute", func(t *testing.T) {
		bs := pods.backends(t, "rt-main", "rt-canary", "rt-v1")
		e.backendService(t, "rt", bs[0])
		e.backendService(t, "rt-canary", bs[1])
		e.backendService(t, "rt-v1", bs[2])
		host := authority("rt")
		canary := map[string]string{"X-Canary": "yes"}
		app.within(t, 5*time.Second, "root Service served", time.Now(), func() result { return app.get(host, "/v1/x", canary) },
			func(r result) bool { return r.backend == "rt-main" })

		// Gateway API precedence: the longer path prefix first, then more header
		// matches; a header-only rule (path "/" by default) would lose to "/v1".
		v1Canary := []gatewayv1.HTTPRouteMatch{{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/v1")},
			Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-canary", Value: "yes"}},
		}}
		route := httpRoute("rt", "rt",
			gatewayv1.HTTPRouteRule{Matches: pathPrefix("/v1"), BackendRefs: backendRefs("rt-v1")},
			gatewayv1.HTTPRouteRule{Matches: v1Canary, BackendRefs: backendRefs("rt-canary")},
			gatewayv1.HTTPRouteRule{Matches: pathPrefix("/"), BackendRefs: backendRefs("rt")},
		)
		start := time.Now()
		e.apply(t, route)
		app.within(t, time.Second, "HTTPRoute created", start, func() result { return app.get(host, "/v1/x", canary) },
			func(r result) bool { return r.backend == "rt-canary" })
		for _, tc := range []struct {
			name, path string
			hdr        map[string]string
			want       string
		}{
			{"path and header", "/v1/books", canary, "rt-canary"},
			{"header name case-insensitive", "/v1/books", map[string]string{"x-CANARY": "yes"}, "rt-canary"},
			{"header with another value", "/v1/books", map[string]string{"X-Canary": "no"}, "rt-v1"},
			{"path prefix", "/v1", nil, "rt-v1"},
			{"path prefix on a segment boundary", "/v10", nil, "rt-main"},
			{"header outside the path", "/shelf", canary, "rt-main"},
			{"catch-all", "/shelf", nil, "rt-main"},
		} {
			got, _, errs := app.spread(host, tc.path, tc.hdr, 20, 2)
			if got[tc.want] != 20 || errs > 0 {
				t.Errorf("%s: GET %s %v: want all 20 to %s, got %v (%d errors)", tc.name, tc.path, tc.hdr, tc.want, got, errs)
			}
		}

		// Change: /v1 now goes to the main Service.
		route.Spec.Rules[0].BackendRefs = backendRefs("rt")
		start = time.Now()
		e.apply(t, route)
		app.within(t, time.Second, "HTTPRoute changed", start, func() result { return app.get(host, "/v1", nil) },
			func(r result) bool { return r.backend == "rt-main" })

		// Deleted: the canary rule no longer applies.
		start = time.Now()
		e.delete(t, route)
		app.within(t, time.Second, "HTTPRoute deleted", start, func() result { return app.get(host, "/v1", canary) },
			func(r result) bool { return r.backend == "rt-main" })
	})

	t.Run("RequestMirror", func(t *testing.T) {
		bs := pods.backends(t, "mir-main", "mir-shadow")
		main, shadow := bs[0], bs[1]
		e.backendService(t, "mir", main)
		host := authority("mir")
		probe := func() result { return app.get(host, "/", nil) }
		app.within(t, 5*time.Second, "root Service served", time.Now(), probe,
			func(r result) bool { return r.backend == "mir-main" })
		// The mirror's Service does not exist yet: the rule works, nothing is
		// copied.
		rule := gatewayv1.HTTPRouteRule{Matches: pathPrefix("/"), BackendRefs: backendRefs("mir"),
			Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
				BackendRef: backendRefs("mir-shadow")[0].BackendObjectReference, Percent: ptr.To[int32](50)}}}}
		e.apply(t, httpRoute("mir", "mir", rule))
		time.Sleep(500 * time.Millisecond)
		if got, _, errs := app.spread(host, "/", nil, 50, 2); got["mir-main"] != 50 || errs > 0 || shadow.hits.Load() != 0 {
			t.Fatalf("mirror Service missing: want all 50 to mir-main and none copied, got %v (%d errors), %d copies", got, errs, shadow.hits.Load())
		}
		// Creating it is enough: the destination is recompiled with the mirror.
		start := time.Now()
		e.backendService(t, "mir-shadow", shadow)
		app.within(t, 5*time.Second, "mirror Service created", start, probe,
			func(r result) bool { return shadow.hits.Load() > 0 })
		const n = 1000
		before := shadow.hits.Load()
		got, _, errs := app.spread(host, "/", nil, n, 4)
		if got["mir-main"] != n || errs > 0 {
			t.Errorf("primary: want all %d to mir-main, got %v (%d errors)", n, got, errs)
		}
		time.Sleep(500 * time.Millisecond) // copies are sent after the answers
		share := float64(shadow.hits.Load()-before) / n
		t.Logf("percent 50 over %d requests: %.1f%% copied", n, 100*share)
		if share < 0.45 || share > 0.55 {
			t.Errorf("copied %.1f%% of %d requests, want 50±5%%", 100*share, n)
		}
		e.delete(t, httpRoute("mir", "mir"))
	})

	t.Run("route timeout", func(t *testing.T) {
		bs := pods.backends(t, "slow")
		bs[0].delay.Store(int64(time.Second))
		e.backendService(t, "slow", bs[0])
		host := authority("slow")
		route := httpRoute("slow", "slow", gatewayv1.HTTPRouteRule{BackendRefs: backendRefs("slow"),
			Timeouts: &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("200ms"))}})
		start := time.Now()
		e.apply(t, route)
		// The probes before the route applies take the backend's full second.
		first := result{}
		app.withinN(t, 1, 2*time.Second, "HTTPRoute with a timeout created", start,
			func() result { first = app.get(host, "/", nil); return first },
			func(r result) bool { return r.status == http.StatusGatewayTimeout })
		// A few more, fewer than the balancer's failure threshold (timeouts count as
		// the endpoint's failures).
		for _, r := range []result{first, app.get(host, "/", nil), app.get(host, "/", nil)} {
			if r.status != http.StatusGatewayTimeout || r.latency < 200*time.Millisecond || r.latency > 400*time.Millisecond {
				t.Errorf("a 200ms route timeout on a 1s backend: got %d after %s, want 504 after 200–400ms", r.status, r.latency.Round(time.Millisecond))
			} else {
				t.Logf("504 after %s", r.latency.Round(time.Millisecond))
			}
		}
	})

	t.Run("ServiceProfile", func(t *testing.T) {
		bs := pods.backends(t, "sp")
		bs[0].delay.Store(int64(300 * time.Millisecond))
		e.backendService(t, "sp", bs[0])
		host := authority("sp")
		probe := func() result { return app.get(host, "/books/1", nil) }
		app.within(t, 5*time.Second, "served without a profile", time.Now(), probe,
			func(r result) bool { return r.status == 200 })

		sp := serviceProfile("sp", meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{{
			Name: "GET /books/{id}", Condition: meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*"},
			Timeout: "100ms",
		}}})
		start := time.Now()
		e.apply(t, sp)
		app.within(t, time.Second+100*time.Millisecond, "ServiceProfile with a 100ms timeout created", start, probe,
			func(r result) bool { return r.status == http.StatusGatewayTimeout })
		if r := app.get(host, "/other", nil); r.status != 200 {
			t.Errorf("a path outside the profile's route: got %d", r.status)
		}

		sp.Spec.Routes[0].Timeout = "2s"
		start = time.Now()
		e.apply(t, sp)
		app.within(t, time.Second+300*time.Millisecond, "ServiceProfile timeout raised", start, probe,
			func(r result) bool { return r.status == 200 })

		sp.Spec.Routes[0].Timeout = "100ms"
		e.apply(t, sp)
		app.within(t, time.Second+100*time.Millisecond, "ServiceProfile timeout lowered", time.Now(), probe,
			func(r result) bool { return r.status == http.StatusGatewayTimeout })
		start = time.Now()
		e.delete(t, sp)
		app.within(t, time.Second+300*time.Millisecond, "ServiceProfile deleted", start, probe,
			func(r result) bool { return r.status == 200 })
	})

	t.Run("retries", func(t *testing.T) {
		bs := pods.backends(t, "flaky-a", "flaky-b")
		for _, b := range bs {
			b.failEvery.Store(5) // 20% of each backend's requests fail
		}
		e.backendService(t, "flaky", bs...)
		host := authority("flaky")
		e.apply(t, serviceProfile("flaky", meshv1alpha1.ServiceProfileSpec{
			Routes:      []meshv1alpha1.RouteSpec{{Name: "all", Condition: meshv1alpha1.RequestMatch{PathRegex: "/.*"}, IsRetryable: true}},
			RetryBudget: &meshv1alpha1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"},
		}))
		// The profile is in place once a failure is retried: wait for 50 successes in a row.
		waitFor(t, 10*time.Second, "retries to take effect", func() error {
			_, statuses, errs := app.spread(host, "/", nil, 50, 1)
			if statuses[200] != 50 || errs > 0 {
				return fmt.Errorf("statuses %v", statuses)
			}
			return nil
		})
		before := bs[0].hits.Load() + bs[1].hits.Load()
		const n = 1000
		start := time.Now()
		_, statuses, errs := app.spread(host, "/", nil, n, 4)
		took := time.Since(start)
		attempts := bs[0].hits.Load() + bs[1].hits.Load() - before
		success := float64(statuses[200]) / n
		retries := attempts - n
		// The budget: within the last ttl (10s, which covers the run), 20% of the
		// original requests plus minRetriesPerSecond × ttl.
		budget := int64(0.2*n) + 10*10
		t.Logf("20%%-failing backends with retries: %d requests, success %.2f%%, %d retries (budget %d), %s",
			n, 100*success, retries, budget, took.Round(time.Millisecond))
		if success < 0.995 || errs > 0 {
			t.Errorf("want ≥ 99.5%% success with retries, got %.2f%% (statuses %v, %d errors)", 100*success, statuses, errs)
		}
		if retries > budget {
			t.Errorf("%d retries exceed the budget of %d", retries, budget)
		}

		// The budget binds: when every attempt fails, retries stop at the budget.
		doomed := pods.backends(t, "doomed-a", "doomed-b")
		for _, b := range doomed {
			// Every other request fails: never twice in a row on one endpoint, so
			// failure accrual does not eject them and the budget alone bounds retries.
			b.failEvery.Store(2)
		}
		e.backendService(t, "doomed", doomed...)
		e.apply(t, serviceProfile("doomed", meshv1alpha1.ServiceProfileSpec{
			Routes:      []meshv1alpha1.RouteSpec{{Name: "all", Condition: meshv1alpha1.RequestMatch{PathRegex: "/.*"}, IsRetryable: true}},
			RetryBudget: &meshv1alpha1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 1, TTL: "10s"},
		}))
		dhost := authority("doomed")
		warm := 0
		waitFor(t, 10*time.Second, "the doomed profile to apply (a failed request retried)", func() error {
			h := doomed[0].hits.Load() + doomed[1].hits.Load()
			warm++
			app.get(dhost, "/", nil)
			if got := doomed[0].hits.Load() + doomed[1].hits.Load() - h; got < 2 {
				return fmt.Errorf("%d attempts for one request", got)
			}
			return nil
		})
		before = doomed[0].hits.Load() + doomed[1].hits.Load()
		const dn = 300
		_, dstatuses, _ := app.spread(dhost, "/", nil, dn, 2)
		dattempts := doomed[0].hits.Load() + doomed[1].hits.Load() - before
		// The 10s window allows 0.2 × (dn + warm-up requests) + 1/s × 10s retries.
		dbudget := int64(0.2*float64(dn+warm)) + 10
		dretries := dattempts - dn
		t.Logf("50%%-failing backends: %d requests, %d retries (budget %d), statuses %v", dn, dretries, dbudget, dstatuses)
		if dretries > dbudget {
			t.Errorf("%d retries exceed the budget of %d", dretries, dbudget)
		}
		// Half the requests fail at first, far more than the budget covers: unless the
		// budget is what stops them, retries would be about dn/2.
		if dretries < dbudget/2 {
			t.Errorf("only %d retries: the budget of %d should have been spent", dretries, dbudget)
		}
	})

	t.Run("failing endpoint ejected", func(t *testing.T) {
		bs := pods.backends(t, "ej-a", "ej-b", "ej-bad")
		bs[2].failAll.Store(true)
		e.backendService(t, "ej", bs...)
		host := authority("ej")
		app.within(t, 5*time.Second, "served", time.Now(), func() result { return app.get(host, "/", nil) },
			func(r result) bool { return r.backend != "" })
		// Let failure accrual see the bad endpoint, then measure.
		app.spread(host, "/", nil, 100, 2)
		got, statuses, _ := app.spread(host, "/", nil, 300, 2)
		t.Logf("after warm-up, 300 requests went %v, statuses %v", got, statuses)
		if got["ej-bad"] > 15 {
			t.Errorf("the failing endpoint still got %d of 300 requests", got["ej-bad"])
		}
		if got["ej-a"] < 60 || got["ej-b"] < 60 {
			t.Errorf("traffic did not move to both healthy endpoints: %v", got)
		}
	})

	t.Run("slow endpoint avoided", func(t *testing.T) {
		bs := pods.backends(t, "lat-a", "lat-b", "lat-slow")
		// 10ms against 100ms: large enough that scheduling noise on a busy machine
		// does not blur the difference.
		bs[0].delay.Store(int64(10 * time.Millisecond))
		bs[1].delay.Store(int64(10 * time.Millisecond))
		bs[2].delay.Store(int64(100 * time.Millisecond))
		e.backendService(t, "lat", bs...)
		host := authority("lat")
		app.within(t, 5*time.Second, "served", time.Now(), func() result { return app.get(host, "/", nil) },
			func(r result) bool { return r.backend != "" })
		// Let the balancer learn the latencies (every endpoint starts at the default
		// RTT), then measure.
		app.spread(host, "/", nil, 100, 4)
		got, _, errs := app.spread(host, "/", nil, 1000, 4)
		slow := float64(got["lat-slow"]) / 1000
		t.Logf("a 10× slower endpoint among 3: %v (slow %.1f%%)", got, 100*slow)
		if slow >= 0.10 || errs > 0 {
			t.Errorf("the 10× slow endpoint got %.1f%% of the requests, want < 10%%", 100*slow)
		}
	})

	t.Cleanup(func() {
		// What the web proxy costs after following ~20 destinations through all this.
		if text, err := web.Metrics(); err == nil {
			t.Logf("web proxy: RSS %.1f MiB, CPU %.2fs, %v destination subscriptions", localmesh.Sum(text, "process_resident_memory_bytes")/(1<<20),
				localmesh.Sum(text, "process_cpu_seconds_total"), localmesh.Sum(text, "weft_destination_subscriptions"))
		}
	})

	t.Run("meshed endpoint", func(t *testing.T) {
		// The books pod: its app and its proxy on the host-side address, the pod object
		// as the injector leaves it; the endpoint's identity and proxy port come from
		// the control plane, and the web proxy must reach it over mTLS.
		ln, err := net.Listen("tcp", pods.hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		app1 := serveBackend(t, "books-meshed", ln)
		booksID := internalidentity.SPIFFEID("cluster.local", shop, "books")
		books := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: e.cp.IdentityAddr, Roots: e.roots,
			Token: e.token(t, "books"), ID: booksID, ListenAddr: pods.hostIP})
		waitFor(t, 20*time.Second, "the books proxy to be ready", books.Ready)
		e.apply(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "books-0", Annotations: map[string]string{
				inject.AnnotationInjected:    "",
				inject.AnnotationInboundPort: strconv.Itoa(books.Inbound),
			}},
			Spec: corev1.PodSpec{ServiceAccountName: "books", Containers: []corev1.Container{{Name: "app", Image: "books:dev"}}},
		})
		e.apply(t, service("books", int(app1.addr.Port())))
		es := endpointSlice("books", app1)
		es.Endpoints[0].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: shop, Name: "books-0"}
		e.apply(t, es)
		host := authority("books")
		app.within(t, 5*time.Second, "meshed endpoint served", time.Now(), func() result { return app.get(host, "/", nil) },
			func(r result) bool { return r.status == 200 && r.backend == "books-meshed" })
		got, _, errs := app.spread(host, "/", nil, 50, 2)
		if got["books-meshed"] != 50 || errs > 0 {
			t.Errorf("50 requests to the meshed endpoint: %v (%d errors)", got, errs)
		}
		if n := localmesh.Sum(scrape(t, web), "request_total", `direction="outbound"`, `server_id="`+booksID+`"`, `tls="true"`); n < 50 {
			t.Errorf("want ≥ 50 outbound requests over mTLS to %s, web's metrics count %v", booksID, n)
		}
		if n := localmesh.Sum(scrape(t, books), "request_total", `direction="inbound"`, `client_id="`+webID+`"`, `tls="true"`); n < 50 {
			t.Errorf("want ≥ 50 inbound requests over mTLS from %s, books' metrics count %v", webID, n)
		}
	})

	t.Run("destination service down at proxy start", func(t *testing.T) {
		bs := pods.backends(t, "late")
		e.backendService(t, "late", bs...)
		if err := e.cp.StopDestination(); err != nil {
			t.Fatal(err)
		}
		web2 := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: e.cp.IdentityAddr, Roots: e.roots,
			Token: e.token(t, "web"), ID: webID, DestinationAddr: e.cp.DestinationAddr,
			Config: fmt.Sprintf("outbound:\n  originalDstOverride: %s\n", origDst.addr)})
		waitFor(t, 20*time.Second, "the second web proxy to be ready", web2.Ready)
		app2 := &appClient{proxy: web2, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
		host := authority("late")
		// Unknown for now: after the bounded wait the request goes to its original
		// destination, and the next one does not wait again.
		first := app2.get(host, "/", nil)
		second := app2.get(host, "/", nil)
		t.Logf("with the destination service down: first request %d from %q after %s, second after %s",
			first.status, first.backend, first.latency.Round(time.Millisecond), second.latency.Round(time.Millisecond))
		if first.backend != "original-dst" || second.backend != "original-dst" {
			t.Errorf("with no destination service, want the original destination, got %q and %q (%v %v)", first.backend, second.backend, first.err, second.err)
		}
		if first.latency > 2500*time.Millisecond || second.latency > 200*time.Millisecond {
			t.Errorf("waits: first %s (want at most 2s: a first answer is awaited 1s for the authority and 1s for the address), second %s (want none)", first.latency, second.latency)
		}
		start := time.Now()
		if err := e.cp.StartDestination(); err != nil {
			t.Fatal(err)
		}
		app2.within(t, 5*time.Second, "routed once the destination service is up", start, func() result { return app2.get(host, "/", nil) },
			func(r result) bool { return r.backend == "late" })
	})

	t.Run("idle subscription expires", func(t *testing.T) {
		bs := pods.backends(t, "idle")
		e.backendService(t, "idle", bs...)
		const idle = 500 * time.Millisecond
		web3 := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: e.cp.IdentityAddr, Roots: e.roots,
			Token: e.token(t, "web"), ID: webID, DestinationAddr: e.cp.DestinationAddr,
			Config: fmt.Sprintf("outbound:\n  originalDstOverride: %s\n", origDst.addr),
			Args:   []string{"--destination-idle-timeout=" + idle.String()}})
		waitFor(t, 20*time.Second, "the third web proxy to be ready", web3.Ready)
		app3 := &appClient{proxy: web3, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
		host := authority("idle")
		subs := func() (float64, float64) {
			text := scrape(t, web3)
			return localmesh.Sum(text, "weft_destination_subscriptions"), localmesh.Sum(text, "weft_destination_expired_total")
		}
		if r := app3.get(host, "/", nil); r.backend != "idle" {
			t.Fatalf("first request: %d from %q (%v)", r.status, r.backend, r.err)
		}
		// The request's authority, and the connection's original destination (looked
		// up when the connection is accepted).
		n0, _ := subs()
		if n0 < 1 {
			t.Errorf("after one request want a subscription, got %v", n0)
		}
		// Traffic keeps the authority's alive past the idle timeout (the address's is
		// used only by new connections; the client keeps its one).
		for range 10 {
			time.Sleep(idle / 5)
			app3.get(host, "/", nil)
		}
		if n, exp := subs(); n < 1 || exp > n0-1 {
			t.Errorf("in use for 2× the idle timeout: %v subscriptions, %v expired; want the one in use kept", n, exp)
		}
		// Unused, it goes (between 1 and 1.5 idle timeouts).
		start := time.Now()
		waitFor(t, 5*idle, "the idle subscription to expire", func() error {
			if n, exp := subs(); n != 0 || exp != n0 {
				return fmt.Errorf("%v subscriptions, %v expired", n, exp)
			}
			return nil
		})
		t.Logf("unused subscription expired %s after the last request (idle timeout %s)", time.Since(start).Round(10*time.Millisecond), idle)
		// And comes back with the next request.
		if r := app3.get(host, "/", nil); r.backend != "idle" {
			t.Errorf("request after expiry: %d from %q (%v)", r.status, r.backend, r.err)
		}
		if n, _ := subs(); n < 1 {
			t.Errorf("after a new request want a subscription again, got %v", n)
		}
	})

	t.Run("destination service restart", func(t *testing.T) {
		bs := pods.backends(t, "res-a", "res-b")
		e.backendService(t, "res", bs[0])
		host := authority("res")
		probe := func() result { return app.get(host, "/", nil) }
		app.within(t, 5*time.Second, "served", time.Now(), probe,
			func(r result) bool { return r.backend == "res-a" })

		// Steady traffic while the destination service stops and comes back.
		stop := make(chan struct{})
		var total, failed atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r := app.get(host, "/", nil)
					total.Add(1)
					if r.err != nil || r.status != 200 || r.backend != "res-a" {
						failed.Add(1)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		if err := e.cp.StopDestination(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if n := localmesh.Sum(scrape(t, web), "weft_destination_streams"); n != 0 {
			t.Errorf("with the destination service stopped, weft_destination_streams is %v, want 0", n)
		}
		restarted := time.Now()
		if err := e.cp.StartDestination(); err != nil {
			t.Fatal(err)
		}
		// Every subscription streams again once the first retry after the restart
		// is answered: at most the largest backoff reached in 2s (1.6s), not one
		// backoff per subscription.
		var subs, streams, resubs float64
		waitFor(t, 10*time.Second, "every subscription to stream again", func() error {
			text := scrape(t, web)
			subs, streams = localmesh.Sum(text, "weft_destination_subscriptions"), localmesh.Sum(text, "weft_destination_streams")
			resubs = localmesh.Sum(text, "weft_destination_resubscriptions_total")
			if subs < 1 || streams != subs {
				return fmt.Errorf("%v of %v subscriptions streaming", streams, subs)
			}
			return nil
		})
		back := time.Since(restarted)
		t.Logf("web proxy: %v subscriptions streaming again %s after the restart, %v resubscriptions", subs, back.Round(time.Millisecond), resubs)
		if back > 3*time.Second {
			t.Errorf("subscriptions came back %s after the restart, want within 3s", back.Round(time.Millisecond))
		}
		if resubs < subs {
			t.Errorf("after the restart want every subscription resubscribed: weft_destination_subscriptions %v, weft_destination_resubscriptions_total %v", subs, resubs)
		}
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()
		t.Logf("%d requests while the destination service stopped for 2s and restarted: %d failed", total.Load(), failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed across the restart", failed.Load(), total.Load())
		}
		// The proxy is subscribed again: a change reaches it.
		start := time.Now()
		e.apply(t, endpointSlice("res", bs[1]))
		app.within(t, time.Second, "endpoint change after the restart", start, probe,
			func(r result) bool { return r.backend == "res-b" })

		// Then the whole control plane goes away for good (API server, identity,
		// destination) while traffic flows: known destinations keep working on the
		// last configuration and the current certificate.
		stop = make(chan struct{})
		total.Store(0)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r := app.get(host, "/", nil)
					total.Add(1)
					if r.err != nil || r.status != 200 || r.backend != "res-b" {
						failed.Add(1)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		_ = e.cp.Stop()
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()
		t.Logf("%d requests while the whole control plane stopped: %d failed", total.Load(), failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed with the control plane gone", failed.Load(), total.Load())
		}
	})
}
