package server_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/weftmesh/weft/proxy/api"
)

// TestRoutedCORS drives the CORS filter through a real client proxy to a real app,
// over HTTP/1.1 and h2c: the proxy answers preflights itself (the app never sees
// them), and adds the CORS headers to the app's responses for allowed origins only.
func TestRoutedCORS(t *testing.T) {
	const svc = "10.96.1.20:80"
	appCORS := newApp(t, "cors", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		if r.URL.Path == "/cors/app-headers" {
			// An app that answers CORS itself, too permissively: the route's policy
			// replaces it.
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("X-App", "1")
		}
		return false
	})
	appPlain := newApp(t, "plain", nil)
	cors := &api.Filter{Kind: &api.Filter_Cors{Cors: &api.CORS{
		AllowOrigins:     []string{"https://www.foo.com", "https://*.bar.com"},
		AllowMethods:     []string{"GET", "PUT"},
		AllowHeaders:     []string{"x-header-1"},
		ExposeHeaders:    []string{"x-app"},
		AllowCredentials: true,
		MaxAgeSeconds:    600,
	}}}
	// A backend whose only endpoint refuses connections (502), one with no endpoints
	// (503), and one that is invalid (500): the proxy's own answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	down := &api.Backend{Key: "shop/down:80", Endpoints: []*api.Endpoint{ep(refused)}}
	empty := &api.Backend{Key: "shop/empty:80"}
	routes := []*api.Route{
		{Name: "cors-down", Matches: []*api.RouteMatch{{Path: sm("exact", "/cors/down")}}, Filters: []*api.Filter{cors},
			Backends: []*api.WeightedBackend{wb("shop/down:80", 1)}},
		{Name: "cors-empty", Matches: []*api.RouteMatch{{Path: sm("exact", "/cors/empty")}}, Filters: []*api.Filter{cors},
			Backends: []*api.WeightedBackend{wb("shop/empty:80", 1)}},
		{Name: "cors-invalid", Matches: []*api.RouteMatch{{Path: sm("exact", "/cors/invalid")}}, Filters: []*api.Filter{cors},
			Backends: []*api.WeightedBackend{{Weight: 1, Invalid: "BackendNotFound: gone"}}},
		{Name: "cors", Matches: []*api.RouteMatch{{Path: sm("prefix", "/cors")}}, Filters: []*api.Filter{cors},
			Backends: []*api.WeightedBackend{wb("shop/cors:80", 1)}},
		{Name: "plain", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/plain:80", 1)}},
	}
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, routes, nil, be("shop/cors:80", appCORS), down, empty, be("shop/plain:80", appPlain)))

	preflight := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"PUT"}, "Access-Control-Request-Headers": {"x-header-1"}}
	}
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		c := h1Client()
		if proto == "h2c" {
			c = h2cClient()
		}
		for _, tc := range []struct {
			name        string
			method      string
			target      string
			hdr         http.Header
			wantStatus  int
			wantBackend string            // "" = the proxy answered
			want        map[string]string // "" = absent
		}{
			{name: "preflight from an allowed origin is answered by the proxy", method: "OPTIONS", target: "/cors/x", hdr: preflight("https://www.foo.com"),
				wantStatus: 204, want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Methods": "GET, PUT",
					"Access-Control-Allow-Headers": "x-header-1", "Access-Control-Max-Age": "600", "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}},
			{name: "preflight from a wildcard-matched origin", method: "OPTIONS", target: "/cors/x", hdr: preflight("https://a.b.bar.com"),
				wantStatus: 204, want: map[string]string{"Access-Control-Allow-Origin": "https://a.b.bar.com"}},
			{name: "preflight from another origin: 204 without CORS headers, app not reached", method: "OPTIONS", target: "/cors/x", hdr: preflight("https://evil.example"),
				wantStatus: 204, want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Allow-Credentials": ""}},
			{name: "OPTIONS that is not a preflight goes to the app", method: "OPTIONS", target: "/cors/x", hdr: http.Header{"Origin": {"https://www.foo.com"}},
				wantStatus: 200, wantBackend: "cors", want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com"}},
			{name: "preflight on a route without CORS goes to the app", method: "OPTIONS", target: "/other", hdr: preflight("https://www.foo.com"),
				wantStatus: 200, wantBackend: "plain", want: map[string]string{"Access-Control-Allow-Origin": ""}},
			{name: "actual request from an allowed origin", method: "GET", target: "/cors/x", hdr: http.Header{"Origin": {"https://www.foo.com"}},
				wantStatus: 200, wantBackend: "cors", want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com",
					"Access-Control-Allow-Credentials": "true", "Access-Control-Expose-Headers": "x-app", "Access-Control-Allow-Methods": ""}},
			{name: "the app's own CORS answer is replaced", method: "GET", target: "/cors/app-headers", hdr: http.Header{"Origin": {"https://x.bar.com"}},
				wantStatus: 200, wantBackend: "cors", want: map[string]string{"Access-Control-Allow-Origin": "https://x.bar.com", "X-App": "1"}},
			{name: "actual request from another origin gets no CORS headers", method: "GET", target: "/cors/x", hdr: http.Header{"Origin": {"https://www.foo.com.evil.example"}},
				wantStatus: 200, wantBackend: "cors", want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": "", "Vary": "Origin"}},
			{name: "the proxy's 502 carries the headers", method: "GET", target: "/cors/down", hdr: http.Header{"Origin": {"https://www.foo.com"}},
				wantStatus: 502, want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Credentials": "true"}},
			{name: "the proxy's 503 carries the headers", method: "GET", target: "/cors/empty", hdr: http.Header{"Origin": {"https://www.foo.com"}},
				wantStatus: 503, want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com"}},
			{name: "the proxy's 500 carries the headers", method: "GET", target: "/cors/invalid", hdr: http.Header{"Origin": {"https://www.foo.com"}},
				wantStatus: 500, want: map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com"}},
			{name: "the proxy's 502 for another origin: no CORS headers", method: "GET", target: "/cors/down", hdr: http.Header{"Origin": {"https://evil.example"}},
				wantStatus: 502, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"}},
			{name: "same-origin request (no Origin) gets only Vary: Origin", method: "GET", target: "/cors/x",
				wantStatus: 200, wantBackend: "cors", want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"}},
		} {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				before := appCORS.hits.Load() + appPlain.hits.Load()
				res := rp.do(c, tc.method, tc.target, tc.hdr, nil)
				if res.err != nil {
					t.Fatal(res.err)
				}
				if res.status != tc.wantStatus || res.backend != tc.wantBackend {
					t.Fatalf("got %d from %q (%s), want %d from %q", res.status, res.backend, res.body, tc.wantStatus, tc.wantBackend)
				}
				hits := appCORS.hits.Load() + appPlain.hits.Load() - before
				if tc.wantBackend == "" && hits != 0 {
					t.Errorf("the proxy answered, yet the apps saw %d requests", hits)
				}
				for k, v := range tc.want {
					if got := res.header.Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
			})
		}
	}
	text := rp.metricsText()
	if v := metricValue(text, "route_response_total", `rt_route="cors"`, `status_code="204"`, `classification="success"`); v != 6 {
		t.Errorf(`route_response_total{rt_route="cors",status_code="204"} = %v, want 6 (three preflights on each protocol)`, v)
	}
}
