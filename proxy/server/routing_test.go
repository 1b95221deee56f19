package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
