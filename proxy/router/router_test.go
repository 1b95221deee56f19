package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
)

func exact(s string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: s}}
}
func prefix(s string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: s}}
}
func regex(s string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: s}}
}

func pathRe(s string) *api.RequestCondition {
	return &api.RequestCondition{Kind: &api.RequestCondition_PathRegex{PathRegex: s}}
}
func method(s string) *api.RequestCondition {
	return &api.RequestCondition{Kind: &api.RequestCondition_Method{Method: s}}
}
func all(cs ...*api.RequestCondition) *api.RequestCondition {
	return &api.RequestCondition{Kind: &api.RequestCondition_All{All: &api.RequestConditions{Conditions: cs}}}
}
func anyOf(cs ...*api.RequestCondition) *api.RequestCondition {
	return &api.RequestCondition{Kind: &api.RequestCondition_Any{Any: &api.RequestConditions{Conditions: cs}}}
}
func not(c *api.RequestCondition) *api.RequestCondition {
	return &api.RequestCondition{Kind: &api.RequestCondition_Not{Not: c}}
}

type req struct {
	method, target string
	header         map[string][]string
}

func (r req) build() *http.Request {
	m := r.method
	if m == "" {
		m = "GET"
	}
	hr := httptest.NewRequest(m, "http://svc"+r.target, nil)
	for k, vs := range r.header {
		for _, v := range vs {
			hr.Header.Add(k, v)
		}
	}
	return hr
}

func grpcReq(path string) req {
	return req{method: "POST", target: path, header: map[string][]string{"Content-Type": {"application/grpc"}}}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match *api.RouteMatch
		yes   []req
		no    []req
	}{
		{"path exact", &api.RouteMatch{Path: exact("/foo")},
			[]req{{target: "/foo"}, {target: "/foo?x=1"}},
			[]req{{target: "/foo/"}, {target: "/foobar"}, {target: "/"}}},
		{"path prefix on segment boundaries", &api.RouteMatch{Path: prefix("/foo")},
			[]req{{target: "/foo"}, {target: "/foo/"}, {target: "/foo/bar"}},
			[]req{{target: "/foobar"}, {target: "/fo"}, {target: "/bar/foo"}}},
		{"path prefix with trailing slash", &api.RouteMatch{Path: prefix("/foo/")},
			[]req{{target: "/foo"}, {target: "/foo/bar"}},
			[]req{{target: "/foobar"}}},
		{"path prefix /", &api.RouteMatch{Path: prefix("/")},
			[]req{{target: "/"}, {target: "/anything/at/all"}}, nil},
		{"path regex is anchored", &api.RouteMatch{Path: regex(`/users/[0-9]+`)},
			[]req{{target: "/users/42"}},
			[]req{{target: "/users/42/x"}, {target: "/x/users/42"}, {target: "/users/abc"}}},
		{"method", &api.RouteMatch{Method: "POST"},
			[]req{{method: "POST", target: "/"}},
			[]req{{method: "GET", target: "/"}, {method: "post", target: "/"}}},
		{"header exact, case-insensitive name", &api.RouteMatch{Headers: []*api.HeaderMatch{{Name: "x-canary", Value: exact("yes")}}},
			[]req{{target: "/", header: map[string][]string{"X-Canary": {"yes"}}}},
			[]req{{target: "/"}, {target: "/", header: map[string][]string{"X-Canary": {"no"}}}}},
		{"repeated header joined with commas", &api.RouteMatch{Headers: []*api.HeaderMatch{{Name: "X-Tag", Value: exact("a,b")}}},
			[]req{{target: "/", header: map[string][]string{"X-Tag": {"a", "b"}}}},
			[]req{{target: "/", header: map[string][]string{"X-Tag": {"a"}}}}},
		{"header regex", &api.RouteMatch{Headers: []*api.HeaderMatch{{Name: "X-User", Value: regex(`[a-z]+-[0-9]`)}}},
			[]req{{target: "/", header: map[string][]string{"X-User": {"bob-1"}}}},
			[]req{{target: "/", header: map[string][]string{"X-User": {"bob-12"}}}}},
		{"every header must match", &api.RouteMatch{Headers: []*api.HeaderMatch{{Name: "A", Value: exact("1")}, {Name: "B", Value: exact("2")}}},
			[]req{{target: "/", header: map[string][]string{"A": {"1"}, "B": {"2"}}}},
			[]req{{target: "/", header: map[string][]string{"A": {"1"}}}}},
		{"query param exact, case-sensitive name", &api.RouteMatch{QueryParams: []*api.HeaderMatch{{Name: "v", Value: exact("2")}}},
			[]req{{target: "/?v=2"}, {target: "/x?a=1&v=2"}},
			[]req{{target: "/?V=2"}, {target: "/?v=3"}, {target: "/"}}},
		{"query param regex", &api.RouteMatch{QueryParams: []*api.HeaderMatch{{Name: "id", Value: regex(`[0-9]+`)}}},
			[]req{{target: "/?id=17"}},
			[]req{{target: "/?id=x"}}},
		{"grpc service and method", &api.RouteMatch{Grpc: &api.GRPCMethodMatch{Service: exact("pkg.Echo"), Method: exact("Say")}},
			[]req{grpcReq("/pkg.Echo/Say")},
			[]req{grpcReq("/pkg.Echo/Other"), grpcReq("/pkg.Other/Say"), {method: "POST", target: "/pkg.Echo/Say"}}},
		{"grpc service only", &api.RouteMatch{Grpc: &api.GRPCMethodMatch{Service: exact("pkg.Echo")}},
			[]req{grpcReq("/pkg.Echo/Say"), grpcReq("/pkg.Echo/Other")},
			[]req{grpcReq("/pkg.Other/Say"), grpcReq("/pkg.Echo")}},
		{"grpc content-type with suffix", &api.RouteMatch{Grpc: &api.GRPCMethodMatch{}},
			[]req{{method: "POST", target: "/a/b", header: map[string][]string{"Content-Type": {"application/grpc+proto"}}}},
			[]req{{method: "POST", target: "/a/b", header: map[string][]string{"Content-Type": {"application/grpcx"}}}}},
		{"condition all", &api.RouteMatch{Condition: all(method("GET"), pathRe(`/books/[0-9]+`))},
			[]req{{target: "/books/1"}},
			[]req{{method: "POST", target: "/books/1"}, {target: "/books/x"}}},
		{"condition any", &api.RouteMatch{Condition: anyOf(method("DELETE"), pathRe(`/admin/.*`))},
			[]req{{method: "DELETE", target: "/x"}, {target: "/admin/y"}},
			[]req{{target: "/x"}}},
		{"condition not", &api.RouteMatch{Condition: not(pathRe(`/health.*`))},
			[]req{{target: "/books"}},
			[]req{{target: "/healthz"}}},
		{"condition nested", &api.RouteMatch{Condition: all(method("GET"), not(anyOf(pathRe(`/a`), pathRe(`/b`))))},
			[]req{{target: "/c"}},
			[]req{{target: "/a"}, {target: "/b"}, {method: "PUT", target: "/c"}}},
		{"invalid regex never matches", &api.RouteMatch{Path: regex(`(`)},
			nil,
			[]req{{target: "/"}, {target: "/("}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, _ := Compile(&api.DestinationConfig{Routes: []*api.Route{{Name: "r", Matches: []*api.RouteMatch{tc.match}}}})
			for _, r := range tc.yes {
				if rt, _ := tbl.Match(r.build()); rt == nil || rt.Name != "r" {
					t.Errorf("%s %s %v: no match, want one", r.method, r.target, r.header)
				}
			}
			for _, r := range tc.no {
				if rt, _ := tbl.Match(r.build()); rt != nil {
					t.Errorf("%s %s %v: matched, want none", r.method, r.target, r.header)
				}
			}
		})
	}
}

func TestMatchOrderAndFallback(t *testing.T) {
	cfg := &api.DestinationConfig{
		Routes: []*api.Route{
			{Name: "exact", Matches: []*api.RouteMatch{{Path: exact("/a")}}},
			{Name: "either", Matches: []*api.RouteMatch{{Path: prefix("/a")}, {Method: "PUT"}}},
		},
		Fallback: &api.Route{Name: "default"},
	}
	tbl, errs := Compile(cfg)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		name string
		r    req
		want string
	}{
		{"first route wins", req{target: "/a"}, "exact"},
		{"second route, first alternative", req{target: "/a/b"}, "either"},
		{"second route, second alternative", req{method: "PUT", target: "/z"}, "either"},
		{"no route: fallback", req{target: "/z"}, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _ := tbl.Match(tc.r.build())
			if rt == nil || rt.Name != tc.want {
				t.Fatalf("matched %v, want %s", rt, tc.want)
			}
		})
	}
	cfg.Fallback = nil
	tbl, _ = Compile(cfg)
	if rt, _ := tbl.Match(req{target: "/z"}.build()); rt != nil {
		t.Fatalf("no fallback (Gateway API): matched %s, want nil", rt.Name)
	}
}

func hm(set, add [][2]string, remove ...string) *api.HeaderModifier {
	out := &api.HeaderModifier{Remove: remove}
	for _, s := range set {
		out.Set = append(out.Set, &api.Header{Name: s[0], Value: s[1]})
	}
	for _, a := range add {
		out.Add = append(out.Add, &api.Header{Name: a[0], Value: a[1]})
	}
	return out
}

func TestRequestFilters(t *testing.T) {
	for _, tc := range []struct {
		name     string
		match    *api.RouteMatch
		filters  []*api.Filter
		r        req
		wantPath string
		wantHost string
		wantHdr  map[string][]string
		wantLoc  string
		wantCode int
	}{
		{
			name:  "header modifier sets, adds, removes in that order",
			match: &api.RouteMatch{},
			filters: []*api.Filter{{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: hm(
				[][2]string{{"x-set", "new"}}, [][2]string{{"X-Add", "two"}}, "x-gone")}}},
			r:        req{target: "/p", header: map[string][]string{"X-Set": {"old", "older"}, "X-Add": {"one"}, "X-Gone": {"bye"}}},
			wantPath: "/p", wantHost: "svc",
			wantHdr: map[string][]string{"X-Set": {"new"}, "X-Add": {"one", "two"}, "X-Gone": nil},
		},
		{
			name:     "rewrite full path and hostname",
			match:    &api.RouteMatch{Path: prefix("/api")},
			filters:  []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Hostname: "other.ns.svc", Path: &api.PathModifier{Kind: &api.PathModifier_ReplaceFullPath{ReplaceFullPath: "/v2/all"}}}}}},
			r:        req{target: "/api/x?q=1"},
			wantPath: "/v2/all", wantHost: "other.ns.svc",
		},
		{
			name:     "rewrite prefix keeps the rest",
			match:    &api.RouteMatch{Path: prefix("/api")},
			filters:  []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/v2"}}}}}},
			r:        req{target: "/api/users/1"},
			wantPath: "/v2/users/1", wantHost: "svc",
		},
		{
			name:     "rewrite prefix to /",
			match:    &api.RouteMatch{Path: prefix("/api/")},
			filters:  []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/"}}}}}},
			r:        req{target: "/api/users"},
			wantPath: "/users", wantHost: "svc",
		},
		{
			name:     "rewrite prefix of the whole path",
			match:    &api.RouteMatch{Path: prefix("/api")},
			filters:  []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/"}}}}}},
			r:        req{target: "/api"},
			wantPath: "/", wantHost: "svc",
		},
		{
			name:     "redirect defaults to 302 keeping everything",
			match:    &api.RouteMatch{},
			filters:  []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{}}}},
			r:        req{target: "/x?y=1"},
			wantCode: 302, wantLoc: "http://svc/x?y=1",
		},
		{
			name:  "redirect scheme change drops the port; 301",
			match: &api.RouteMatch{},
			filters: []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{
				Scheme: "https", StatusCode: 301}}}},
			r:        req{target: "/x", header: map[string][]string{}},
			wantCode: 301, wantLoc: "https://svc/x",
		},
		{
			name:  "redirect hostname, port and prefix",
			match: &api.RouteMatch{Path: prefix("/old")},
			filters: []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{
				Hostname: "new.example", Port: 8080, Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/new"}}}}}},
			r:        req{target: "/old/page"},
			wantCode: 302, wantLoc: "http://new.example:8080/new/page",
		},
		{
			name:     "redirect 303",
			match:    &api.RouteMatch{},
			filters:  []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{StatusCode: 303}}}},
			r:        req{target: "/x"},
			wantCode: 303, wantLoc: "http://svc/x",
		},
		{
			name:     "redirect 307 keeps the method",
			match:    &api.RouteMatch{},
			filters:  []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{StatusCode: 307}}}},
			r:        req{target: "/x"},
			wantCode: 307, wantLoc: "http://svc/x",
		},
		{
			name:     "redirect 308",
			match:    &api.RouteMatch{},
			filters:  []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{StatusCode: 308, Scheme: "https"}}}},
			r:        req{target: "/x"},
			wantCode: 308, wantLoc: "https://svc/x",
		},
		{
			name:  "redirect full path",
			match: &api.RouteMatch{},
			filters: []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{
				Path: &api.PathModifier{Kind: &api.PathModifier_ReplaceFullPath{ReplaceFullPath: "/moved"}}}}}},
			r:        req{target: "/anything"},
			wantCode: 302, wantLoc: "http://svc/moved",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, errs := Compile(&api.DestinationConfig{Routes: []*api.Route{{Name: "r", Matches: []*api.RouteMatch{tc.match}, Filters: tc.filters}}})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			r := tc.r.build()
			rt, pre := tbl.Match(r)
			if rt == nil {
				t.Fatal("no match")
			}
			rd := ApplyRequest(rt.Filters, r, pre, "http")
			if tc.wantCode != 0 {
				if rd == nil || rd.Status != tc.wantCode || rd.Location != tc.wantLoc {
					t.Fatalf("redirect = %+v, want %d %s", rd, tc.wantCode, tc.wantLoc)
				}
				return
			}
			if rd != nil {
				t.Fatalf("unexpected redirect %+v", rd)
			}
			if r.URL.Path != tc.wantPath || r.Host != tc.wantHost {
				t.Fatalf("path %q host %q, want %q %q", r.URL.Path, r.Host, tc.wantPath, tc.wantHost)
			}
			for k, want := range tc.wantHdr {
				if got := r.Header[k]; strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestResponseFilters(t *testing.T) {
	tbl, _ := Compile(&api.DestinationConfig{Routes: []*api.Route{{Name: "r", Filters: []*api.Filter{
		{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: hm([][2]string{{"X-Route", "r"}}, nil, "Server")}},
	}}}})
	rt, _ := tbl.Match(req{target: "/"}.build())
	h := http.Header{"Server": {"app"}}
	if !HasResponseFilters(rt.Filters) {
		t.Fatal("HasResponseFilters = false")
	}
	ApplyResponse(rt.Filters, h)
	if h.Get("X-Route") != "r" || h.Get("Server") != "" {
		t.Fatalf("response header = %v", h)
	}
}

func TestPickBackend(t *testing.T) {
	cfg := &api.DestinationConfig{
		Backends: []*api.Backend{{Key: "ns/a:80"}, {Key: "ns/b:80"}},
		Routes: []*api.Route{
			{Name: "split", Backends: []*api.WeightedBackend{{Backend: "ns/a:80", Weight: 90}, {Backend: "ns/b:80", Weight: 10}}},
		},
	}
	tbl, _ := Compile(cfg)
	counts := map[string]int{}
	const n = 20000
	for range n {
		counts[tbl.Routes[0].PickBackend().Key]++
	}
	if share := float64(counts["ns/a:80"]) / n; share < 0.88 || share > 0.92 {
		t.Fatalf("a got %.3f, want 0.90±0.02 (%v)", share, counts)
	}
	for _, tc := range []struct {
		name        string
		backends    []*api.WeightedBackend
		wantNil     bool
		wantInvalid bool
	}{
		{"all weights zero", []*api.WeightedBackend{{Backend: "ns/a:80", Weight: 0}}, true, false},
		{"no backends", nil, true, false},
		{"invalid backend", []*api.WeightedBackend{{Invalid: "Service ns/x does not exist", Weight: 1}}, false, true},
		{"unknown key", []*api.WeightedBackend{{Backend: "ns/zzz:80", Weight: 1}}, false, true},
		{"zero weight is never chosen", []*api.WeightedBackend{{Backend: "ns/a:80", Weight: 0}, {Backend: "ns/b:80", Weight: 1}}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.Routes[0].Backends = tc.backends
			tbl, _ := Compile(cfg)
			for range 50 {
				b := tbl.Routes[0].PickBackend()
				if (b == nil) != tc.wantNil {
					t.Fatalf("PickBackend = %v, want nil %v", b, tc.wantNil)
				}
				if b != nil && (b.Invalid != "") != tc.wantInvalid {
					t.Fatalf("backend %+v: invalid want %v", b, tc.wantInvalid)
				}
				if b != nil && b.Weight == 0 {
					t.Fatal("a zero-weight backend was chosen")
				}
			}
		})
	}
}

func status(min, max uint32) *api.ResponseCondition {
	return &api.ResponseCondition{Kind: &api.ResponseCondition_Status{Status: &api.StatusRange{Min: min, Max: max}}}
}

func TestClassifyAndRetry(t *testing.T) {
	classes := []*api.ResponseClass{
		// 500-599 except 503 is a failure; 429 too; everything else success.
		{Condition: &api.ResponseCondition{Kind: &api.ResponseCondition_All{All: &api.ResponseConditions{Conditions: []*api.ResponseCondition{
			status(500, 599), {Kind: &api.ResponseCondition_Not{Not: status(503, 503)}}}}}}, IsFailure: true},
		{Condition: &api.ResponseCondition{Kind: &api.ResponseCondition_Any{Any: &api.ResponseConditions{Conditions: []*api.ResponseCondition{status(429, 429)}}}}, IsFailure: true},
		{Condition: status(503, 503), IsFailure: false},
	}
	for _, tc := range []struct {
		name      string
		route     *api.Route
		status    int
		grpc      int
		failure   bool
		retryable bool
	}{
		{"default: 200 success", &api.Route{}, 200, GRPCNone, false, false},
		{"default: 500 failure, no retry without policy", &api.Route{}, 500, GRPCNone, true, false},
		{"default: 404 success", &api.Route{}, 404, GRPCNone, false, false},
		{"default: grpc-status 14 failure", &api.Route{}, 200, 14, true, false},
		{"default: grpc-status 0 success", &api.Route{}, 200, 0, false, false},
		{"retry default policy retries failures", &api.Route{Retry: &api.RetryPolicy{}}, 502, GRPCNone, true, true},
		{"retry default policy skips success", &api.Route{Retry: &api.RetryPolicy{}}, 404, GRPCNone, false, false},
		{"retry grpc unavailable", &api.Route{Retry: &api.RetryPolicy{}}, 200, 14, true, true},
		{"classes: 500 failure", &api.Route{ResponseClasses: classes, Retry: &api.RetryPolicy{}}, 500, GRPCNone, true, true},
		{"classes: 503 success", &api.Route{ResponseClasses: classes, Retry: &api.RetryPolicy{}}, 503, GRPCNone, false, false},
		{"classes: 429 failure", &api.Route{ResponseClasses: classes, Retry: &api.RetryPolicy{}}, 429, GRPCNone, true, true},
		{"classes: 404 falls to default", &api.Route{ResponseClasses: classes}, 404, GRPCNone, false, false},
		{"statuses decide retries", &api.Route{Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 503, Max: 503}}}}, 503, GRPCNone, true, true},
		{"statuses: 500 not listed", &api.Route{Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 503, Max: 503}}}}, 500, GRPCNone, true, false},
		{"grpc codes: UNAVAILABLE listed", &api.Route{Retry: &api.RetryPolicy{GrpcCodes: []uint32{14}}}, 200, 14, true, true},
		{"grpc codes: INTERNAL not listed", &api.Route{Retry: &api.RetryPolicy{GrpcCodes: []uint32{14}}}, 200, 13, true, false},
		{"grpc codes: OK never", &api.Route{Retry: &api.RetryPolicy{GrpcCodes: []uint32{14}}}, 200, 0, false, false},
		{"grpc codes: a 5xx not listed", &api.Route{Retry: &api.RetryPolicy{GrpcCodes: []uint32{14}}}, 503, GRPCNone, true, false},
		{"statuses and grpc codes: either matches", &api.Route{Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 502, Max: 504}}, GrpcCodes: []uint32{14}}}, 503, GRPCNone, true, true},
		{"statuses with a gRPC failure not listed", &api.Route{Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 502, Max: 504}}}}, 200, 14, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.route.Name = "r"
			tbl, _ := Compile(&api.DestinationConfig{Routes: []*api.Route{tc.route}})
			rt := tbl.Routes[0]
			if got := rt.IsFailure(tc.status, tc.grpc); got != tc.failure {
				t.Errorf("IsFailure = %v, want %v", got, tc.failure)
			}
			if got := rt.Retryable(tc.status, tc.grpc); got != tc.retryable {
				t.Errorf("Retryable = %v, want %v", got, tc.retryable)
			}
		})
	}
}

func TestTimeoutsCompile(t *testing.T) {
	tbl, _ := Compile(&api.DestinationConfig{Routes: []*api.Route{
		{Name: "set", Timeouts: &api.Timeouts{Request: durationpb.New(time.Second), BackendRequest: durationpb.New(100 * time.Millisecond)},
			Retry: &api.RetryPolicy{MaxAttempts: 3, Backoff: durationpb.New(5 * time.Millisecond)}},
		{Name: "zero disables", Timeouts: &api.Timeouts{Request: durationpb.New(0)}},
		{Name: "idle and retry timeout", Timeouts: &api.Timeouts{Idle: durationpb.New(3 * time.Second)},
			Retry: &api.RetryPolicy{Timeout: durationpb.New(150 * time.Millisecond)}},
	}})
	if c := tbl.Routes[2]; c.IdleTimeout != 3*time.Second || c.Retry.Timeout != 150*time.Millisecond {
		t.Fatalf("route c compiled to idle %v, retry timeout %v", c.IdleTimeout, c.Retry.Timeout)
	}
	a, b := tbl.Routes[0], tbl.Routes[1]
	if a.RequestTimeout != time.Second || a.BackendTimeout != 100*time.Millisecond || a.Retry.MaxAttempts != 3 || a.Retry.Backoff != 5*time.Millisecond {
		t.Fatalf("route a compiled to %+v %+v", a, a.Retry)
	}
	if b.RequestTimeout != 0 || b.Retry != nil {
		t.Fatalf("route b compiled to %+v", b)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(100, 0)
	clock := func() time.Time { return now }
	for _, tc := range []struct {
		name      string
		budget    *api.RetryBudget
		originals int
		want      int // retries allowed
	}{
		{"ratio only", &api.RetryBudget{RetryRatio: 0.25, Ttl: durationpb.New(10 * time.Second)}, 100, 25},
		{"minimum per second", &api.RetryBudget{RetryRatio: 0, MinRetriesPerSecond: 2, Ttl: durationpb.New(10 * time.Second)}, 100, 20},
		{"both", &api.RetryBudget{RetryRatio: 0.1, MinRetriesPerSecond: 1, Ttl: durationpb.New(5 * time.Second)}, 100, 15},
		{"nothing", &api.RetryBudget{}, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(tc.budget, clock)
			for range tc.originals {
				b.Deposit()
			}
			got := 0
			for b.Withdraw() {
				got++
			}
			if got != tc.want {
				t.Fatalf("allowed %d retries, want %d", got, tc.want)
			}
		})
	}
	t.Run("window slides", func(t *testing.T) {
		b := NewBudget(&api.RetryBudget{RetryRatio: 0.5, Ttl: durationpb.New(10 * time.Second)}, clock)
		for range 10 {
			b.Deposit()
		}
		for range 5 {
			if !b.Withdraw() {
				t.Fatal("withdraw refused within budget")
			}
		}
		if b.Withdraw() {
			t.Fatal("withdraw allowed beyond budget")
		}
		now = now.Add(11 * time.Second)
		if b.Withdraw() {
			t.Fatal("withdraw allowed with no recent originals")
		}
		b.Deposit()
		b.Deposit()
		if !b.Withdraw() {
			t.Fatal("withdraw refused after new originals")
		}
	})
}

// TestParseGRPCStatus: the int form IsFailure takes; "00" is OK (not a failure) and
// anything that is not digits is no status at all.
func TestParseGRPCStatus(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{{"0", 0}, {"00", 0}, {"14", 14}, {"", GRPCNone}, {"-1", GRPCNone}, {"+1", GRPCNone}, {"x", GRPCNone}}
	for _, tc := range cases {
		if got := ParseGRPCStatus(tc.in); got != tc.want {
			t.Errorf("ParseGRPCStatus(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
