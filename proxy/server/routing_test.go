package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/server"
)

// testSource is a destination.Source whose configurations a test sets and swaps while
// traffic flows.
type testSource struct {
	mu     sync.RWMutex
	byAuth map[string]*api.DestinationConfig
	byAddr map[netip.AddrPort]*api.DestinationConfig
}

func newTestSource() *testSource {
	return &testSource{byAuth: map[string]*api.DestinationConfig{}, byAddr: map[netip.AddrPort]*api.DestinationConfig{}}
}

func (s *testSource) set(cfg *api.DestinationConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range cfg.Authorities {
		s.byAuth[a] = cfg
	}
	for _, a := range cfg.Addresses {
		s.byAddr[netip.MustParseAddrPort(a)] = cfg
	}
}

func (s *testSource) Lookup(_ context.Context, t destination.Target) *api.DestinationConfig {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t.Authority != "" {
		return s.byAuth[t.Authority]
	}
	return s.byAddr[t.Addr]
}

// app is a backend HTTP server that names itself in X-Backend and counts its hits.
// behave, when set, may answer instead (returning true).
type app struct {
	name   string
	addr   string
	hits   atomic.Int64
	behave func(w http.ResponseWriter, r *http.Request, hit int64) bool
}

func newApp(t *testing.T, name string, behave func(w http.ResponseWriter, r *http.Request, hit int64) bool) *app {
	a := &app{name: name, behave: behave}
	a.addr = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := a.hits.Add(1)
		w.Header().Set("X-Backend", a.name)
		if a.behave != nil && a.behave(w, r, n) {
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "host=%s path=%s x-added=%s body=%d", r.Host, r.URL.Path, r.Header.Get("X-Added"), len(body))
	}))
	return a
}

func failing(status int) func(http.ResponseWriter, *http.Request, int64) bool {
	return func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		return true
	}
}

func sleeping(d time.Duration) func(http.ResponseWriter, *http.Request, int64) bool {
	return func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		return false
	}
}

func ep(addr string) *api.Endpoint {
	ap := netip.MustParseAddrPort(addr)
	return &api.Endpoint{Address: ap.Addr().String(), Port: uint32(ap.Port())}
}

func be(key string, apps ...*app) *api.Backend {
	b := &api.Backend{Key: key}
	for _, a := range apps {
		b.Endpoints = append(b.Endpoints, ep(a.addr))
	}
	return b
}

func wb(key string, w uint32) *api.WeightedBackend {
	return &api.WeightedBackend{Backend: key, Weight: w}
}

const routedAuthority = "web.shop.svc.cluster.local:80"

// dest builds a destination named by routedAuthority and by svc (its "cluster IP").
func dest(svc string, routes []*api.Route, fallback *api.Route, backends ...*api.Backend) *api.DestinationConfig {
	src := api.RouteSource_ROUTE_SOURCE_DEFAULT
	if len(routes) > 0 {
		src = api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE
		if fallback == nil {
			src = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
		}
	}
	return &api.DestinationConfig{
		Version:     fmt.Sprint(rand.Uint64()),
		Service:     &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
		Addresses:   []string{svc},
		Authorities: []string{routedAuthority},
		RouteSource: src,
		Routes:      routes,
		Fallback:    fallback,
		RetryBudget: &api.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)},
		Backends:    backends,
	}
}

func fallbackTo(bs ...*api.WeightedBackend) *api.Route {
	return &api.Route{Name: "default", Backends: bs}
}

// routedProxy is a client-side proxy fed by a testSource, with an outbound listener
// for svc.
type routedProxy struct {
	*proxy
	src  *testSource
	addr string // what the app dials
}

func startRouted(t *testing.T, svc string, mods ...func(*server.Options)) *routedProxy {
	src := newTestSource()
	mods = append([]func(*server.Options){func(o *server.Options) { o.Source = src }}, mods...)
	p := startProxy(t, &config.Config{DetectTimeout: config.Duration{Duration: detectTimeout}}, nil, mods...)
	return &routedProxy{proxy: p, src: src, addr: p.outbound(svc)}
}

type result struct {
	status  int
	backend string
	body    string
	header  http.Header
	err     error
}

func (rp *routedProxy) do(c *http.Client, method, target string, hdr http.Header, body []byte) result {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+rp.addr+target, rd)
	if err != nil {
		return result{err: err}
	}
	req.Host = routedAuthority
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, backend: resp.Header.Get("X-Backend"), body: string(b), header: resp.Header}
}

func sm(kind string, v string) *api.StringMatch {
	switch kind {
	case "exact":
		return &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: v}}
	case "prefix":
		return &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: v}}
	}
	return &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: v}}
}

// TestRoutedMatchesAndFilters drives every match kind and filter through a real
// proxy to real backends.
func TestRoutedMatchesAndFilters(t *testing.T) {
	const svc = "10.96.1.1:80"
	apps := map[string]*app{}
	for _, n := range []string{"exact", "prefix", "regex", "method", "header", "query", "grpc", "cond", "rewrite", "classes", "split"} {
		apps[n] = newApp(t, n, nil)
	}
	apps["classes"].behave = func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		w.WriteHeader(404)
		return true
	}
	var backends []*api.Backend
	for _, n := range []string{"classes", "cond", "exact", "grpc", "header", "method", "prefix", "query", "regex", "rewrite", "split"} {
		backends = append(backends, be("shop/"+n+":80", apps[n]))
	}
	route := func(name, backend string, m *api.RouteMatch, filters ...*api.Filter) *api.Route {
		return &api.Route{Name: name, Matches: []*api.RouteMatch{m}, Filters: filters, Backends: []*api.WeightedBackend{wb("shop/"+backend+":80", 1)}}
	}
	setHdr := &api.Filter{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Set: []*api.Header{{Name: "X-Added", Value: "yes"}}}}}
	respHdr := &api.Filter{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: &api.HeaderModifier{Set: []*api.Header{{Name: "X-Route", Value: "rewrite"}}, Remove: []string{"X-Backend-Secret"}}}}
	rewrite := &api.Filter{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Hostname: "rewritten.example", Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/v2"}}}}}
	redirect := &api.Filter{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{Scheme: "https", Hostname: "new.example", StatusCode: 301}}}
	cond := &api.RequestCondition{Kind: &api.RequestCondition_All{All: &api.RequestConditions{Conditions: []*api.RequestCondition{
		{Kind: &api.RequestCondition_Method{Method: "DELETE"}},
		{Kind: &api.RequestCondition_Not{Not: &api.RequestCondition{Kind: &api.RequestCondition_PathRegex{PathRegex: "/keep/.*"}}}},
	}}}}
	invalid := &api.Route{Name: "invalid", Matches: []*api.RouteMatch{{Path: sm("exact", "/invalid")}},
		Backends: []*api.WeightedBackend{{Weight: 1, Invalid: "Service shop/gone does not exist"}}}
	classes := route("classes", "classes", &api.RouteMatch{Path: sm("exact", "/classes")})
	classes.ResponseClasses = []*api.ResponseClass{{Condition: &api.ResponseCondition{Kind: &api.ResponseCondition_Status{Status: &api.StatusRange{Min: 404, Max: 404}}}, IsFailure: true}}
	split := route("split", "split", &api.RouteMatch{Path: sm("exact", "/split")})
	split.Backends = append(split.Backends, &api.WeightedBackend{Backend: "shop/split:80", Weight: 1,
		Filters: []*api.Filter{{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Set: []*api.Header{{Name: "X-Added", Value: "backend"}}}}}}})
	split.Backends[0].Weight = 0 // only the backend with its own filter
	routes := []*api.Route{
		route("exact", "exact", &api.RouteMatch{Path: sm("exact", "/exact")}, setHdr),
		route("regex", "regex", &api.RouteMatch{Path: sm("regex", "/users/[0-9]+")}),
		route("rewrite", "rewrite", &api.RouteMatch{Path: sm("prefix", "/old")}, rewrite, respHdr),
		{Name: "redirect", Matches: []*api.RouteMatch{{Path: sm("prefix", "/moved")}}, Filters: []*api.Filter{redirect}},
		route("prefix", "prefix", &api.RouteMatch{Path: sm("prefix", "/api")}),
		route("method", "method", &api.RouteMatch{Method: "PUT"}),
		route("header", "header", &api.RouteMatch{Headers: []*api.HeaderMatch{{Name: "x-canary", Value: sm("exact", "yes")}}}),
		route("query", "query", &api.RouteMatch{QueryParams: []*api.HeaderMatch{{Name: "v", Value: sm("regex", "2|3")}}}),
		route("grpc", "grpc", &api.RouteMatch{Grpc: &api.GRPCMethodMatch{Service: sm("exact", "pkg.Echo")}}),
		route("cond", "cond", &api.RouteMatch{Condition: cond}),
		classes, split, invalid,
	}
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, routes, nil, backends...))
	c := h1Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	grpcHdr := http.Header{"Content-Type": {"application/grpc"}}
	for _, tc := range []struct {
		name        string
		method      string
		target      string
		hdr         http.Header
		h2          bool
		wantStatus  int
		wantBackend string
		wantBody    string
		wantHeader  [2]string
	}{
		{name: "path exact with request header filter", target: "/exact", wantStatus: 200, wantBackend: "exact", wantBody: "x-added=yes"},
		{name: "path exact does not match a longer path", target: "/exact/more", wantStatus: 404},
		{name: "path prefix", target: "/api/users", wantStatus: 200, wantBackend: "prefix"},
		{name: "path prefix on a segment boundary", target: "/apiary", wantStatus: 404},
		{name: "path regex", target: "/users/42", wantStatus: 200, wantBackend: "regex"},
		{name: "method", method: "PUT", target: "/x", wantStatus: 200, wantBackend: "method"},
		{name: "header", target: "/x", hdr: http.Header{"X-Canary": {"yes"}}, wantStatus: 200, wantBackend: "header"},
		{name: "header other value", target: "/x", hdr: http.Header{"X-Canary": {"no"}}, wantStatus: 404},
		{name: "query parameter", target: "/x?v=3", wantStatus: 200, wantBackend: "query"},
		{name: "gRPC service", method: "POST", target: "/pkg.Echo/Say", hdr: grpcHdr, h2: true, wantStatus: 200, wantBackend: "grpc"},
		{name: "gRPC other service: no route, UNIMPLEMENTED", method: "POST", target: "/pkg.Other/Say", hdr: grpcHdr, h2: true, wantStatus: 200, wantHeader: [2]string{"Grpc-Status", "12"}},
		{name: "condition all/not holds", method: "DELETE", target: "/drop/1", wantStatus: 200, wantBackend: "cond"},
		{name: "condition not excludes", method: "DELETE", target: "/keep/1", wantStatus: 404},
		{name: "url rewrite of prefix and host, response header filter", target: "/old/page", wantStatus: 200, wantBackend: "rewrite",
			wantBody: "host=rewritten.example path=/v2/page", wantHeader: [2]string{"X-Route", "rewrite"}},
		{name: "redirect", target: "/moved/here?q=1", wantStatus: 301, wantHeader: [2]string{"Location", "https://new.example/moved/here?q=1"}},
		{name: "backend filter", target: "/split", wantStatus: 200, wantBackend: "split", wantBody: "x-added=backend"},
		{name: "invalid backend answers 500", target: "/invalid", wantStatus: 500, wantHeader: [2]string{"Weft-Proxy-Error", "invalid backend"}},
		{name: "no route answers 404", target: "/nothing", wantStatus: 404, wantHeader: [2]string{"Weft-Proxy-Error", "no route"}},
		{name: "response class makes 404 a failure", target: "/classes", wantStatus: 404, wantBackend: "classes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := c
			if tc.h2 {
				cl = h2cClient()
			}
			m := tc.method
			if m == "" {
				m = "GET"
			}
			var body []byte
			if m == "POST" {
				body = []byte("x")
			}
			res := rp.do(cl, m, tc.target, tc.hdr, body)
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.status != tc.wantStatus || res.backend != tc.wantBackend {
				t.Fatalf("got %d from %q (%s), want %d from %q", res.status, res.backend, res.body, tc.wantStatus, tc.wantBackend)
			}
			if tc.wantBody != "" && !strings.Contains(res.body, tc.wantBody) {
				t.Fatalf("body %q does not contain %q", res.body, tc.wantBody)
			}
			if tc.wantHeader[0] != "" && res.header.Get(tc.wantHeader[0]) != tc.wantHeader[1] {
				t.Fatalf("header %s = %q, want %q", tc.wantHeader[0], res.header.Get(tc.wantHeader[0]), tc.wantHeader[1])
			}
		})
	}
	text := rp.metricsText()
	ls := func(route string) string { return `rt_route="` + route + `"` }
	for _, tc := range []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"route requests", "route_request_total", []string{ls("exact")}, 1},
		{"route response", "route_response_total", []string{ls("exact"), `status_code="200"`, `classification="success"`}, 1},
		{"response class failure", "route_response_total", []string{ls("classes"), `status_code="404"`, `classification="failure"`}, 1},
		{"invalid backend counted as failure", "route_response_total", []string{ls("invalid"), `status_code="500"`, `classification="failure"`}, 1},
		{"redirect counted", "route_response_total", []string{ls("redirect"), `status_code="301"`}, 1},
		{"latency histogram", "route_response_latency_ms_count", []string{ls("regex"), `status_code="200"`}, 1},
		{"attempts", "route_actual_request_total", []string{ls("prefix")}, 1},
		{"authority label", "route_request_total", []string{`authority="` + routedAuthority + `"`, ls("method")}, 1},
		{"request_total still counts", "request_total", []string{`authority="` + routedAuthority + `"`, `tls="no_identity"`}, 19},
	} {
		t.Run("metrics/"+tc.name, func(t *testing.T) {
			if v := metricValue(text, tc.metric, tc.labels...); v != tc.want {
				t.Fatalf("%s%v = %v, want %v", tc.metric, tc.labels, v, tc.want)
			}
		})
	}
}

// TestRoutedWeights sends 2,000 requests over a 90/10 split.
func TestRoutedWeights(t *testing.T) {
	const svc = "10.96.1.2:80"
	a, b := newApp(t, "a", nil), newApp(t, "b", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/a:80", 90), wb("shop/b:80", 10)), be("shop/a:80", a), be("shop/b:80", b)))
	c := h1Client()
	const n = 2000
	for range n {
		if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
			t.Fatalf("request failed: %+v", res)
		}
	}
	share := float64(a.hits.Load()) / n
	t.Logf("a: %d, b: %d (%.1f%%)", a.hits.Load(), b.hits.Load(), 100*share)
	if share < 0.87 || share > 0.93 {
		t.Fatalf("a got %.1f%% of requests, want 90±3%%", 100*share)
	}
	// No routes: still measured by service, under the fallback's name.
	if v := metricValue(rp.metricsText(), "route_request_total", `rt_route="default"`); v != n {
		t.Fatalf("route_request_total{rt_route=default} = %v, want %d", v, n)
	}
}

// TestRoutedTimeouts checks the route's request timeout (504, gRPC DEADLINE_EXCEEDED)
// and the per-attempt backend timeout with a retry.
func TestRoutedTimeouts(t *testing.T) {
	const svc = "10.96.1.3:80"
	slow := newApp(t, "slow", sleeping(3*time.Second))
	var once atomic.Bool
	slowOnce := newApp(t, "slow-once", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		if once.CompareAndSwap(false, true) {
			return sleeping(3*time.Second)(w, r, 0)
		}
		return false
	})
	timeouts := func(req, backend time.Duration) *api.Timeouts {
		return &api.Timeouts{Request: durationpb.New(req), BackendRequest: durationpb.New(backend)}
	}
	routes := []*api.Route{
		{Name: "slow", Matches: []*api.RouteMatch{{Path: sm("prefix", "/slow")}}, Backends: []*api.WeightedBackend{wb("shop/slow:80", 1)},
			Timeouts: &api.Timeouts{Request: durationpb.New(300 * time.Millisecond)}},
		{Name: "attempt", Matches: []*api.RouteMatch{{Path: sm("prefix", "/attempt")}}, Backends: []*api.WeightedBackend{wb("shop/slow-once:80", 1)},
			Timeouts: timeouts(2*time.Second, 200*time.Millisecond), Retry: &api.RetryPolicy{MaxAttempts: 3}},
	}
	rp := startRouted(t, svc)
	// Headers at once, body after 300ms: latency is measured to the headers.
	streaming := newApp(t, "streaming", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "late body")
		return true
	})
	routes = append(routes, &api.Route{Name: "stream", Matches: []*api.RouteMatch{{Path: sm("prefix", "/stream")}},
		Backends: []*api.WeightedBackend{wb("shop/streaming:80", 1)}})
	rp.src.set(dest(svc, routes, nil, be("shop/slow:80", slow), be("shop/slow-once:80", slowOnce), be("shop/streaming:80", streaming)))
	for _, tc := range []struct {
		name       string
		target     string
		h2         bool
		hdr        http.Header
		wantStatus int
		wantHeader [2]string
		min, max   time.Duration
	}{
		{name: "request timeout answers 504 on time", target: "/slow", wantStatus: 504, wantHeader: [2]string{"Weft-Proxy-Error", "timeout"}, min: 300 * time.Millisecond, max: time.Second},
		{name: "gRPC request timeout answers DEADLINE_EXCEEDED", target: "/slow", h2: true, hdr: http.Header{"Content-Type": {"application/grpc"}},
			wantStatus: 200, wantHeader: [2]string{"Grpc-Status", "4"}, min: 300 * time.Millisecond, max: time.Second},
		{name: "backend timeout ends the attempt, the retry succeeds", target: "/attempt", wantStatus: 200, min: 200 * time.Millisecond, max: time.Second},
		{name: "streaming body after the headers", target: "/stream", wantStatus: 200, min: 300 * time.Millisecond, max: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h1Client()
			method := "GET"
			var body []byte
			if tc.h2 {
				c, method, body = h2cClient(), "POST", []byte("x")
			}
			start := time.Now()
			res := rp.do(c, method, tc.target, tc.hdr, body)
			took := time.Since(start)
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.status != tc.wantStatus {
				t.Fatalf("status %d (%s), want %d", res.status, res.body, tc.wantStatus)
			}
			if tc.wantHeader[0] != "" && res.header.Get(tc.wantHeader[0]) != tc.wantHeader[1] {
				t.Fatalf("header %s = %q, want %q (%v)", tc.wantHeader[0], res.header.Get(tc.wantHeader[0]), tc.wantHeader[1], res.header)
			}
			if took < tc.min || took > tc.max {
				t.Fatalf("took %v, want between %v and %v", took, tc.min, tc.max)
			}
		})
	}
	text := rp.metricsText()
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"timeouts are not under 300ms", []string{`rt_route="slow"`, `status_code="504"`, `le="200"`}, 0},
		{"timeouts are under 1s", []string{`rt_route="slow"`, `status_code="504"`, `le="1000"`}, 1},
		{"streaming latency is to the headers", []string{`rt_route="stream"`, `status_code="200"`, `le="100"`}, 1},
	} {
		t.Run("metrics/"+tc.name, func(t *testing.T) {
			if v := metricValue(text, "route_response_latency_ms_bucket", tc.labels...); v != tc.want {
				t.Fatalf("route_response_latency_ms_bucket%v = %v, want %v", tc.labels, v, tc.want)
			}
		})
	}
}

// TestRoutedRetries: a backend failing 20% of requests becomes ≥ 99.5% success
// within the budget; a tight budget stops retries; bodies over 64 KiB are not
// retried.
func TestRoutedRetries(t *testing.T) {
	t.Run("20% failures become at least 99.5% success within the budget", func(t *testing.T) {
		const svc = "10.96.1.4:80"
		rng := rand.New(rand.NewPCG(7, 7))
		var mu sync.Mutex
		flaky := newApp(t, "flaky", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			mu.Lock()
			fail := rng.Float64() < 0.2
			mu.Unlock()
			if fail {
				w.WriteHeader(503)
				return true
			}
			return false
		})
		rp := startRouted(t, svc)
		cfg := dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/flaky:80", 1)}, Retry: &api.RetryPolicy{}}}, nil, be("shop/flaky:80", flaky))
		rp.src.set(cfg)
		c := h1Client()
		const n = 1000
		ok := 0
		for i := range n {
			var body []byte
			method := "GET"
			if i%2 == 1 {
				method, body = "POST", bytes.Repeat([]byte("b"), 2048)
			}
			res := rp.do(c, method, "/", nil, body)
			if res.err == nil && res.status == 200 {
				ok++
				if method == "POST" && !strings.Contains(res.body, "body=2048") {
					t.Fatalf("retried body arrived as %q", res.body)
				}
			}
		}
		text := rp.metricsText()
		retries := metricValue(text, "weft_route_retry_total", `rt_route="all"`)
		budget := 0.2*n + 10*10 // ratio × originals + min per second × ttl
		t.Logf("success %d/%d, retries %v (budget %v), backend hits %d", ok, n, retries, budget, flaky.hits.Load())
		if float64(ok)/n < 0.995 {
			t.Fatalf("success rate %.2f%%, want ≥ 99.5%%", 100*float64(ok)/n)
		}
		if retries <= 0 || retries > budget {
			t.Fatalf("retries = %v, want > 0 and ≤ %v", retries, budget)
		}
		if got := float64(flaky.hits.Load()); got != n+retries {
			t.Fatalf("backend saw %v requests, want originals + retries = %v", got, n+retries)
		}
		if v := metricValue(text, "route_actual_request_total", `rt_route="all"`); v != n+retries {
			t.Fatalf("route_actual_request_total = %v, want %v", v, n+retries)
		}
	})
	t.Run("retries stop at the budget and are counted", func(t *testing.T) {
		const svc = "10.96.1.5:80"
		down := newApp(t, "down", failing(503))
		// Keep the failing endpoint in rotation: this test is about the budget.
		rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailureThreshold = 1 << 30 })
		cfg := dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/down:80", 1)}, Retry: &api.RetryPolicy{MaxAttempts: 2}}}, nil, be("shop/down:80", down))
		cfg.RetryBudget = &api.RetryBudget{RetryRatio: 0.1, MinRetriesPerSecond: 0, Ttl: durationpb.New(10 * time.Second)}
		rp.src.set(cfg)
		c := h1Client()
		const n = 300
		for range n {
			if res := rp.do(c, "GET", "/", nil, nil); res.status != 503 {
				t.Fatalf("status %d, want the backend's 503", res.status)
			}
		}
		text := rp.metricsText()
		retries := metricValue(text, "weft_route_retry_total", `rt_route="all"`)
		skipped := metricValue(text, "weft_route_retry_skipped_total", `rt_route="all"`, `reason="budget"`)
		t.Logf("retries %v, skipped %v", retries, skipped)
		if retries > 0.1*n || retries < 0.1*n-2 {
			t.Fatalf("retries = %v, want the budget's %v", retries, 0.1*n)
		}
		if retries+skipped != n {
			t.Fatalf("retries %v + skipped %v != %d failed originals", retries, skipped, n)
		}
	})
	t.Run("max_attempts and backoff", func(t *testing.T) {
		const svc = "10.96.1.15:80"
		down := newApp(t, "down", failing(502))
		rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailureThreshold = 1 << 30 })
		rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/down:80", 1)},
			Retry:    &api.RetryPolicy{MaxAttempts: 3, Backoff: durationpb.New(100 * time.Millisecond)}}}, nil, be("shop/down:80", down)))
		start := time.Now()
		res := rp.do(h1Client(), "GET", "/", nil, nil)
		took := time.Since(start)
		if res.status != 502 || down.hits.Load() != 3 {
			t.Fatalf("status %d after %d attempts, want the backend's 502 after 3", res.status, down.hits.Load())
		}
		if took < 200*time.Millisecond || took > time.Second {
			t.Fatalf("took %v, want two 100ms backoffs", took)
		}
	})
	t.Run("a body over 64 KiB is not retried", func(t *testing.T) {
		const svc = "10.96.1.6:80"
		// Odd hits fail: each request's first attempt fails.
		odd := newApp(t, "odd", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
			if hit%2 == 1 {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(503)
				return true
			}
			return false
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/odd:80", 1)}, Retry: &api.RetryPolicy{}}}, nil, be("shop/odd:80", odd)))
		c := h1Client()
		small := rp.do(c, "POST", "/", nil, bytes.Repeat([]byte("s"), 64<<10))
		if small.status != 200 || !strings.Contains(small.body, fmt.Sprintf("body=%d", 64<<10)) {
			t.Fatalf("64 KiB body: %d %q, want 200 after a retry with the whole body", small.status, small.body)
		}
		big := rp.do(c, "POST", "/", nil, bytes.Repeat([]byte("b"), 64<<10+1))
		if big.status != 503 {
			t.Fatalf("64 KiB + 1 body: status %d, want the first attempt's 503", big.status)
		}
		if v := metricValue(rp.metricsText(), "weft_route_retry_skipped_total", `rt_route="all"`, `reason="body"`); v != 1 {
			t.Fatalf("weft_route_retry_skipped_total{reason=body} = %v, want 1", v)
		}
		if odd.hits.Load() != 3 {
			t.Fatalf("backend saw %d requests, want 3 (2 for the retried body, 1 for the big one)", odd.hits.Load())
		}
	})
}

// TestRoutedEjection: an endpoint that fails (by status or by refusing
// connections) is ejected and traffic moves to the healthy ones.
func TestRoutedEjection(t *testing.T) {
	closedPort := func() string {
		ln := listen(t)
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	for _, tc := range []struct {
		name string
		bad  func() *app
	}{
		{"5xx answers", func() *app { return newApp(t, "bad", failing(500)) }},
		{"refused connections", func() *app { return &app{name: "bad", addr: closedPort()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.7:80"
			g1, g2, bad := newApp(t, "g1", nil), newApp(t, "g2", nil), tc.bad()
			rp := startRouted(t, svc)
			rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", g1, g2, bad)))
			c := h1Client()
			// P2C decides how often the bad endpoint is tried, so count requests
			// until it has failed 7 times in a row (the threshold), within a bound.
			failures, sent := 0, 0
			for ; failures < 7 && sent < 3000; sent++ {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					failures++
				}
			}
			if failures < 7 {
				t.Fatalf("only %d of %d requests reached the bad endpoint", failures, sent)
			}
			badHits := bad.hits.Load()
			// Ejected for 1s ± 20%: the next requests (well under 800ms) all go to
			// the healthy endpoints.
			start := time.Now()
			for i := range 200 {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					t.Fatalf("request %d after the 7th failure failed (%d %q): not ejected", i, res.status, res.header.Get("Weft-Proxy-Error"))
				}
			}
			if took := time.Since(start); took > 700*time.Millisecond {
				t.Logf("200 requests took %v: the ejection may have ended meanwhile", took)
			}
			if bad.hits.Load() != badHits {
				t.Fatalf("the ejected endpoint got %d more requests", bad.hits.Load()-badHits)
			}
			text := rp.metricsText()
			bl := []string{`authority="` + routedAuthority + `"`, `backend="shop/web:80"`}
			if v := metricValue(text, "weft_balancer_endpoints", append(bl, `state="ejected"`)...); v != 1 {
				t.Fatalf("weft_balancer_endpoints{ejected} = %v, want 1", v)
			}
			if v := metricValue(text, "weft_balancer_endpoints", append(bl, `state="ready"`)...); v != 2 {
				t.Fatalf("weft_balancer_endpoints{ready} = %v, want 2", v)
			}
			if v := metricValue(text, "weft_balancer_ejections_total", bl...); v != 1 {
				t.Fatalf("weft_balancer_ejections_total = %v, want 1", v)
			}
			t.Logf("ejected after %d requests; good hits %d+%d", sent, g1.hits.Load(), g2.hits.Load())
		})
	}
}

// TestRoutedSlowEndpoint: an endpoint 10× slower than the others gets < 10% of
// requests.
func TestRoutedSlowEndpoint(t *testing.T) {
	const svc = "10.96.1.8:80"
	delay := func(d time.Duration) func(http.ResponseWriter, *http.Request, int64) bool {
		return func(http.ResponseWriter, *http.Request, int64) bool { time.Sleep(d); return false }
	}
	fast := []*app{newApp(t, "f1", delay(5*time.Millisecond)), newApp(t, "f2", delay(5*time.Millisecond)), newApp(t, "f3", delay(5*time.Millisecond))}
	slow := newApp(t, "slow", delay(50*time.Millisecond))
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", fast[0], fast[1], slow, fast[2])))
	var wg sync.WaitGroup
	var errs atomic.Int64
	const workers, each = 8, 60
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for range each {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d requests failed", errs.Load())
	}
	share := float64(slow.hits.Load()) / (workers * each)
	t.Logf("slow endpoint: %d of %d (%.1f%%); fast: %d %d %d", slow.hits.Load(), workers*each, 100*share, fast[0].hits.Load(), fast[1].hits.Load(), fast[2].hits.Load())
	if share >= 0.10 {
		t.Fatalf("slow endpoint got %.1f%% of requests, want < 10%%", 100*share)
	}
}

// TestRoutedConfigChange swaps the configuration while requests flow: the next
// request follows the new one.
func TestRoutedConfigChange(t *testing.T) {
	const svc = "10.96.1.9:80"
	a, b := newApp(t, "a", nil), newApp(t, "b", nil)
	rp := startRouted(t, svc)
	toA := dest(svc, nil, fallbackTo(wb("shop/a:80", 1)), be("shop/a:80", a))
	toB := dest(svc, nil, fallbackTo(wb("shop/b:80", 1)), be("shop/b:80", b))
	rp.src.set(toA)
	stop := make(chan struct{})
	var flowErrs atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					flowErrs.Add(1)
				}
			}
		}()
	}
	c := h1Client()
	for range 20 {
		if res := rp.do(c, "GET", "/", nil, nil); res.backend != "a" {
			t.Fatalf("before the change: backend %q, want a", res.backend)
		}
	}
	rp.src.set(toB)
	for i := range 20 {
		if res := rp.do(c, "GET", "/", nil, nil); res.backend != "b" {
			t.Fatalf("request %d after the change: backend %q, want b", i, res.backend)
		}
	}
	// Back to A, over an HTTP/2 connection that stays open across the change.
	h2 := h2cClient()
	rp.do(h2, "GET", "/", nil, nil)
	rp.src.set(toA)
	if res := rp.do(h2, "GET", "/", nil, nil); res.backend != "a" {
		t.Fatalf("after the second change on a kept HTTP/2 connection: backend %q, want a", res.backend)
	}
	close(stop)
	wg.Wait()
	if flowErrs.Load() > 0 {
		t.Fatalf("%d requests failed while the configuration changed", flowErrs.Load())
	}
}

// TestRoutedOpaqueTCP balances opaque connections per connection over the
// fallback's backends.
func TestRoutedOpaqueTCP(t *testing.T) {
	const svc = "10.96.1.10:5432"
	var hitsA, hitsB atomic.Int64
	echo := func(name string, hits *atomic.Int64) string {
		return serveTCP(t, func(c net.Conn) {
			hits.Add(1)
			io.WriteString(c, name)
			c.Close()
		})
	}
	addrA, addrB := echo("A", &hitsA), echo("B", &hitsB)
	rp := startRouted(t, svc)
	cfg := dest(svc, nil, fallbackTo(wb("shop/a:5432", 1), wb("shop/b:5432", 3)),
		&api.Backend{Key: "shop/a:5432", Endpoints: []*api.Endpoint{ep(addrA)}},
		&api.Backend{Key: "shop/b:5432", Endpoints: []*api.Endpoint{ep(addrB)}})
	cfg.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	rp.src.set(cfg)
	const n = 200
	for range n {
		c, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if s := string(b); s != "A" && s != "B" {
			t.Fatalf("read %q, want a backend's name", s)
		}
	}
	share := float64(hitsB.Load()) / n
	t.Logf("A %d, B %d", hitsA.Load(), hitsB.Load())
	if share < 0.65 || share > 0.85 {
		t.Fatalf("B got %.1f%% of connections, want about 75%%", 100*share)
	}
}

// TestRoutedThroughMesh routes and retries over mTLS to a peer proxy: a 50/50 split
// of two meshed backends, with a POST body replayed on retry across the mesh.
func TestRoutedThroughMesh(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	const svc = "10.96.1.11:80"
	odd := newApp(t, "odd", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
		if hit%2 == 1 {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
			return true
		}
		return false
	})
	even := newApp(t, "even", nil)
	meshed := func(a *app) *api.Endpoint {
		e := ep(a.addr)
		e.Identity, e.ProxyPort = spiffe("b", serverSA), uint32(mp.b.inboundPort())
		return e
	}
	src := newTestSource()
	a := startProxy(t, &config.Config{}, newStore(t, mp.ca.IssueValid(t, spiffe("a", clientSA)), mp.ca), func(o *server.Options) { o.Source = src })
	addr := a.outbound(svc)
	rp := &routedProxy{proxy: a, src: src, addr: addr}
	src.set(dest(svc, []*api.Route{{Name: "split", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
		Backends: []*api.WeightedBackend{wb("shop/odd:80", 1), wb("shop/even:80", 1)}, Retry: &api.RetryPolicy{}}}, nil,
		&api.Backend{Key: "shop/even:80", Endpoints: []*api.Endpoint{meshed(even)}},
		&api.Backend{Key: "shop/odd:80", Endpoints: []*api.Endpoint{meshed(odd)}}))
	for _, c := range []*http.Client{h1Client(), h2cClient()} {
		for range 40 {
			res := rp.do(c, "POST", "/", nil, []byte("hello"))
			if res.err != nil || res.status != 200 || !strings.Contains(res.body, "body=5") {
				t.Fatalf("request: %+v", res)
			}
		}
	}
	t.Logf("odd %d, even %d", odd.hits.Load(), even.hits.Load())
	if odd.hits.Load() < 10 || even.hits.Load() < 10 {
		t.Fatalf("split did not reach both backends: odd %d, even %d", odd.hits.Load(), even.hits.Load())
	}
	text := a.metricsText()
	if v := metricValue(text, "weft_route_retry_total", `rt_route="split"`); v < 5 {
		t.Fatalf("weft_route_retry_total = %v, want the odd backend's failures retried", v)
	}
	if v := metricValue(text, "request_total", `server_id="`+spiffe("b", serverSA)+`"`); v != 80 {
		t.Fatalf("request_total over mTLS = %v, want 80", v)
	}
}

// TestRoutedGRPC drives grpc-go's interop client and server through GRPCRoute-style
// routes: a matched method works, an unmatched one is UNIMPLEMENTED, a request
// timeout is DEADLINE_EXCEEDED (trailers-only answers the real client understands),
// and a non-OK status in a trailers-only response is retried.
func TestRoutedGRPC(t *testing.T) {
	const svc = "10.96.1.12:50051"
	backend := startGRPC(t)
	method := func(m string) *api.RouteMatch {
		return &api.RouteMatch{Grpc: &api.GRPCMethodMatch{Service: sm("exact", "grpc.testing.TestService"), Method: sm("exact", m)}}
	}
	routes := []*api.Route{
		{Name: "unary", Matches: []*api.RouteMatch{method("UnaryCall")}, Backends: []*api.WeightedBackend{wb("shop/grpc:50051", 1)},
			Retry: &api.RetryPolicy{MaxAttempts: 3}},
		{Name: "streaming", Matches: []*api.RouteMatch{method("StreamingOutputCall")}, Backends: []*api.WeightedBackend{wb("shop/grpc:50051", 1)},
			Timeouts: &api.Timeouts{Request: durationpb.New(200 * time.Millisecond)}},
	}
	rp := startRouted(t, svc)
	cfg := dest(svc, routes, nil, &api.Backend{Key: "shop/grpc:50051", Endpoints: []*api.Endpoint{ep(backend)}})
	cfg.Authorities = nil // the gRPC client's authority is the listener's address
	rp.src.set(cfg)
	cc, err := grpc.NewClient("passthrough:///"+rp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("matched method", func(t *testing.T) {
		if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unmatched method is UNIMPLEMENTED", func(t *testing.T) {
		_, err := tc.EmptyCall(ctx, &testgrpc.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("EmptyCall: %v, want Unimplemented", err)
		}
	})
	t.Run("request timeout is DEADLINE_EXCEEDED", func(t *testing.T) {
		start := time.Now()
		stream, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 2_000_000}},
		})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("StreamingOutputCall: %v, want DeadlineExceeded", err)
		}
		// The upper bound is below the server's 2s interval (the call only fails
		// before it if the route's timeout did it), not near 200ms: a loaded machine
		// delays the answer by hundreds of milliseconds.
		if took := time.Since(start); took < 200*time.Millisecond || took > 1900*time.Millisecond {
			t.Fatalf("took %v, want the route's 200ms, well before the server's 2s", took)
		}
	})
	t.Run("a trailers-only failure is retried", func(t *testing.T) {
		_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Unavailable), Message: "try again"}})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("UnaryCall: %v, want the server's Unavailable", err)
		}
		text := rp.metricsText()
		if v := metricValue(text, "route_actual_request_total", `rt_route="unary"`); v != 4 {
			t.Fatalf("route_actual_request_total{unary} = %v, want 4: the first subtest's call + max_attempts 3", v)
		}
		if v := metricValue(text, "route_response_total", `rt_route="unary"`, `status_code="200"`, `classification="failure"`); v != 1 {
			t.Fatalf("route_response_total{unary,failure} = %v, want 1", v)
		}
	})
}

// TestStaticDestinationsRouted: a static file's destination takes the same path as a
// discovered one: balanced over its endpoints with failure accrual, measured per
// route under the fallback's name, and a new file takes effect on the next request.
func TestStaticDestinationsRouted(t *testing.T) {
	const svc = "10.96.1.13:80"
	g1, g2 := newApp(t, "g1", nil), newApp(t, "g2", nil)
	ln := listen(t)
	refused := ln.Addr().String()
	ln.Close()
	static := func(apps ...string) *config.Config {
		d := config.Destination{Name: "web", Addresses: []string{svc}}
		for _, a := range apps {
			d.Endpoints = append(d.Endpoints, config.Endpoint{Address: "127.0.0.1", Port: mustPort(a)})
		}
		return &config.Config{Destinations: []config.Destination{d}}
	}
	p := startProxy(t, static(g1.addr, refused, g2.addr), nil)
	addr := p.outbound(svc)
	c := h1Client()
	get := func() (int, string) {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return 0, ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Backend")
	}
	failures := 0
	for range 200 {
		if st, _ := get(); st != 200 {
			failures++
		}
	}
	if failures > 7 {
		t.Fatalf("%d failures: the refusing endpoint was not ejected after 7", failures)
	}
	if g1.hits.Load() < 40 || g2.hits.Load() < 40 {
		t.Fatalf("healthy endpoints got %d and %d of 200", g1.hits.Load(), g2.hits.Load())
	}
	if v := metricValue(p.metricsText(), "route_request_total", `authority="`+svc+`"`, `rt_route="default"`); v != 200 {
		t.Fatalf("route_request_total{default} = %v, want 200", v)
	}
	cfg := static(g2.addr)
	cfg.ApplyDefaults()
	p.srv.SetConfig(cfg)
	for range 20 {
		if _, b := get(); b != "g2" {
			t.Fatalf("after SetConfig: backend %q, want g2", b)
		}
	}
}

// TestRoutedEndpointAdded: an endpoint added to a backend gets a request at once,
// and takes most traffic from an incumbent slower than the default RTT (a newcomer is
// presumed to answer in the default 30ms until measured).
func TestRoutedEndpointAdded(t *testing.T) {
	const svc = "10.96.1.14:80"
	var slowA atomic.Bool
	a := newApp(t, "a", func(http.ResponseWriter, *http.Request, int64) bool {
		if slowA.Load() {
			time.Sleep(100 * time.Millisecond)
		}
		return false
	})
	b := newApp(t, "b", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", a)))
	c := h1Client()
	for range 20 {
		rp.do(c, "GET", "/", nil, nil)
	}
	slowA.Store(true)
	for range 3 {
		rp.do(c, "GET", "/", nil, nil)
	}
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", a, b)))
	if res := rp.do(c, "GET", "/", nil, nil); res.backend != "b" {
		t.Fatalf("first request after the endpoint was added went to %q, want the new b", res.backend)
	}
	for range 50 {
		rp.do(c, "GET", "/", nil, nil)
	}
	// Most, not all: on a loaded machine a fast answer can take tens of ms, and
	// peak-EWMA believes a slow sample at once.
	if b.hits.Load() < 35 {
		t.Fatalf("new fast endpoint got %d of 51 requests next to a 100ms one", b.hits.Load())
	}
}

// TestRoutedNoIdentityDoesNotEject: a proxy without a certificate cannot reach meshed
// endpoints; that is its own problem, so every request says so (502 "no identity")
// instead of the endpoints being ejected and answered 503.
func TestRoutedNoIdentityDoesNotEject(t *testing.T) {
	const svc = "10.96.1.16:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	e := ep(a.addr)
	e.Identity, e.ProxyPort = spiffe("b", serverSA), 4143
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), &api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{e}}))
	c := h1Client()
	for i := range 20 {
		res := rp.do(c, "GET", "/", nil, nil)
		if res.status != 502 || res.header.Get("Weft-Proxy-Error") != "no identity" {
			t.Fatalf("request %d: %d %q, want 502 no identity", i, res.status, res.header.Get("Weft-Proxy-Error"))
		}
	}
}

// TestRoutedAllEjected: when a backend's only endpoint is ejected, requests still
// reach it (the least bad endpoint) and the client sees the application's answers;
// with FailFast the proxy answers 503 itself.
func TestRoutedAllEjected(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failFast  bool
		want500   int
		want503   int
		wantError string
	}{
		{"least bad", false, 50, 0, ""},
		{"fail fast", true, 7, 43, "no healthy endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.17:80"
			down := newApp(t, "down", failing(500))
			rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailFast = tc.failFast })
			rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", down)))
			c := h1Client()
			got := map[int]int{}
			reason := ""
			for range 50 {
				res := rp.do(c, "GET", "/", nil, nil)
				got[res.status]++
				if res.status == 503 {
					reason = res.header.Get("Weft-Proxy-Error")
				}
			}
			if got[500] != tc.want500 || got[503] != tc.want503 || reason != tc.wantError {
				t.Fatalf("statuses %v (%q), want %d×500 and %d×503 (%q)", got, reason, tc.want500, tc.want503, tc.wantError)
			}
		})
	}
}

// TestSilentClientOfDeclaredHTTP checks that a connection whose client says nothing for
// longer than the detection timeout is still served as HTTP (routed and measured by
// route) when the Service declares the port HTTP, and becomes opaque TCP when it does
// not: the short timeout is only for ports that may be server-speaks-first.
func TestSilentClientOfDeclaredHTTP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		protocol   api.ProtocolHint
		wantRouted float64
	}{
		{"declared http", api.ProtocolHint_PROTOCOL_HINT_HTTP1, 1},
		{"undeclared", api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.40:80"
			a := newApp(t, "a", nil)
			rp := startRouted(t, svc)
			d := dest(svc, nil, fallbackTo(wb("shop/a:80", 1)), be("shop/a:80", a))
			d.Protocol = tc.protocol
			rp.src.set(d)
			conn, err := net.Dial("tcp", rp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			time.Sleep(2 * detectTimeout) // a pooled connection, used later
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", routedAuthority)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || a.hits.Load() != 1 {
				t.Fatalf("status %d, app hits %d; want 200 and 1", resp.StatusCode, a.hits.Load())
			}
			text := rp.metricsText()
			if v := metricValue(text, "route_request_total", `rt_route="default"`); v != tc.wantRouted {
				t.Fatalf("route_request_total = %v, want %v", v, tc.wantRouted)
			}
			if v := metricValue(text, "weft_detect_timeout_total", `direction="outbound"`); v != 1-tc.wantRouted {
				t.Fatalf("weft_detect_timeout_total = %v, want %v", v, 1-tc.wantRouted)
			}
		})
	}
}
