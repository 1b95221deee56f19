package router

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/api"
)

// FuzzMatchAndFilters compiles routes with fuzzed patterns and runs fuzzed requests
// through matching, filters and classification: nothing may panic, a match must
// come from the table, and an absolute path must stay absolute when rewritten.
func FuzzMatchAndFilters(f *testing.F) {
	f.Add("/api", "/users/[0-9]+", "GET", "/api/users/1?x=1", "X-A", "1", uint32(2), "/v2")
	f.Add("/", "(", "POST", "/", "", "", uint32(0), "/")
	f.Add("/foo/", ".*", "DELETE", "/foo", "x-b", "a,b", uint32(65535), "")
	f.Fuzz(func(t *testing.T, pre, re, method, target, hname, hval string, status uint32, repl string) {
		cfg := &api.DestinationConfig{
			Backends: []*api.Backend{{Key: "b"}},
			Routes: []*api.Route{
				{Name: "prefix", Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: pre}}}},
					Filters:  []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: repl}}}}}},
					Backends: []*api.WeightedBackend{{Backend: "b", Weight: 1}}},
				{Name: "regex", Matches: []*api.RouteMatch{{Path: &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: re}},
					Headers: []*api.HeaderMatch{{Name: hname, Value: &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: hval}}}}}},
					Filters: []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{Port: status}}}}},
				{Name: "cond", Matches: []*api.RouteMatch{{Condition: &api.RequestCondition{Kind: &api.RequestCondition_Not{Not: &api.RequestCondition{Kind: &api.RequestCondition_PathRegex{PathRegex: re}}}}}}},
			},
			Fallback: &api.Route{Name: "default"},
		}
		tbl, _ := Compile(cfg)
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r := &http.Request{Method: method, URL: u, Host: "svc:80", Header: http.Header{}}
		if hname != "" {
			r.Header.Set(hname, hval)
		}
		rt, prefix := tbl.Match(r)
		if rt == nil {
			t.Fatal("no route although there is a fallback")
		}
		if rt != tbl.Fallback && rt != tbl.Routes[rt.Index] {
			t.Fatalf("matched route %q is not the table's", rt.Name)
		}
		absolute := strings.HasPrefix(r.URL.Path, "/") // not the asterisk form of OPTIONS *
		ApplyRequest(rt.Filters, r, prefix, "http")
		if rt.Name == "prefix" && absolute && !strings.HasPrefix(r.URL.Path, "/") {
			t.Fatalf("rewrite produced %q", r.URL.Path)
		}
		rt.IsFailure(int(status%1000), GRPCNone)
		rt.Retryable(int(status%1000), int(status%17))
		rt.PickBackend()
	})
}
