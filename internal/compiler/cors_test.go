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

package compiler

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/proxy/api"
)

func corsRule(c *gatewayv1.HTTPCORSFilter) gatewayv1.HTTPRouteRule {
	return gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterCORS, CORS: c}}}
}

func TestCORSRuleProblems(t *testing.T) {
	many := func(n int, v string) []gatewayv1.HTTPHeaderName {
		out := make([]gatewayv1.HTTPHeaderName, n)
		for i := range out {
			out[i] = gatewayv1.HTTPHeaderName(v + strings.Repeat("x", i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		rule gatewayv1.HTTPRouteRule
		want string // "" accepted; else a part of the problem
	}{
		{name: "every field, as upstream's conformance route", rule: corsRule(&gatewayv1.HTTPCORSFilter{
			AllowOrigins:     []gatewayv1.CORSOrigin{"https://www.foo.com", "https://*.bar.com", "http://*:8080", "http://10.0.0.1:65535"},
			AllowMethods:     []gatewayv1.HTTPMethodWithWildcard{"GET", "OPTIONS"},
			AllowHeaders:     []gatewayv1.HTTPHeaderName{"x-header-1"},
			ExposeHeaders:    []gatewayv1.HTTPHeaderName{"x-header-3", "*"},
			AllowCredentials: ptr.To(true),
			MaxAge:           3600,
		})},
		{name: "wildcards alone", rule: corsRule(&gatewayv1.HTTPCORSFilter{
			AllowOrigins: []gatewayv1.CORSOrigin{"*"}, AllowMethods: []gatewayv1.HTTPMethodWithWildcard{"*"}, AllowHeaders: []gatewayv1.HTTPHeaderName{"*"}})},
		{name: "empty filter allows nothing and is valid", rule: corsRule(&gatewayv1.HTTPCORSFilter{})},
		{name: "type without the field", rule: corsRule(nil), want: "filter type CORS needs the cors field"},
		{name: "origin without scheme", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"www.foo.com"}}),
			want: `cors.allowOrigins[0] "www.foo.com" is not`},
		{name: "origin with a path", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a.example", "https://b.example/x"}}),
			want: `cors.allowOrigins[1] "https://b.example/x"`},
		{name: "wildcard inside a label", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a*.example"}}),
			want: "cors.allowOrigins[0]"},
		{name: "scheme other than http(s)", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"ftp://a.example"}}),
			want: "cors.allowOrigins[0]"},
		{name: "port out of range", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a.example:99999"}}),
			want: `cors.allowOrigins[0] "https://a.example:99999" has port 99999; use 1-65535`},
		{name: "port zero", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a.example:0"}}),
			want: "has port 0"},
		{name: "* with other origins", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a.example", "*"}}),
			want: "cors.allowOrigins cannot contain '*' alongside other origins"},
		{name: "unknown method", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowMethods: []gatewayv1.HTTPMethodWithWildcard{"GET", "get"}}),
			want: `cors.allowMethods[1] "get" is not a method`},
		{name: "* with other methods", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowMethods: []gatewayv1.HTTPMethodWithWildcard{"*", "GET"}}),
			want: "cors.allowMethods cannot contain '*'"},
		{name: "bad allowed header", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowHeaders: []gatewayv1.HTTPHeaderName{"x ok"}}),
			want: `cors.allowHeaders[0] "x ok" is not a header name`},
		{name: "bad exposed header", rule: corsRule(&gatewayv1.HTTPCORSFilter{ExposeHeaders: []gatewayv1.HTTPHeaderName{"a", "b\r\nc"}}),
			want: "cors.exposeHeaders[1]"},
		{name: "* with other allowed headers", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowHeaders: []gatewayv1.HTTPHeaderName{"a", "*"}}),
			want: "cors.allowHeaders cannot contain '*'"},
		{name: "too many headers", rule: corsRule(&gatewayv1.HTTPCORSFilter{AllowHeaders: many(65, "h")}),
			want: "cors.allowHeaders has 65 entries; at most 64"},
		{name: "negative max age", rule: corsRule(&gatewayv1.HTTPCORSFilter{MaxAge: -1}), want: "cors.maxAge -1 is negative"},
		{name: "repeated", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{
			{Type: gatewayv1.HTTPRouteFilterCORS, CORS: &gatewayv1.HTTPCORSFilter{}},
			{Type: gatewayv1.HTTPRouteFilterCORS, CORS: &gatewayv1.HTTPCORSFilter{}}}},
			want: "filter type CORS is repeated"},
		{name: "on a backendRef", rule: gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{{
			BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-v2"}},
			Filters:    []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterCORS, CORS: &gatewayv1.HTTPCORSFilter{}}}}}},
			want: "backendRef web-v2: filter type CORS is supported in a rule's filters, not a backendRef's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := HTTPRuleProblem(tc.rule)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCORSCompiles: a rule's CORS filter reaches the route as the wire message, in
// the filter order written, with maxAge 0 (unset) left for the proxy's default.
func TestCORSCompiles(t *testing.T) {
	s := fixture()
	rule := corsRule(&gatewayv1.HTTPCORSFilter{
		AllowOrigins:     []gatewayv1.CORSOrigin{"https://*.bar.com"},
		AllowMethods:     []gatewayv1.HTTPMethodWithWildcard{"PUT"},
		AllowHeaders:     []gatewayv1.HTTPHeaderName{"X-A"},
		ExposeHeaders:    []gatewayv1.HTTPHeaderName{"X-B"},
		AllowCredentials: ptr.To(true),
		MaxAge:           60,
	})
	rule.Filters = append(rule.Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Remove: []string{"x-c"}}})
	unset := corsRule(&gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"*"}})
	unset.Matches = []gatewayv1.HTTPRouteMatch{{Path: prefix("/unset")}}
	s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "cors", 0, web, rule, unset)}
	got, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 2 {
		t.Fatalf("%d routes, want 2 (no rule dropped)", len(got.Routes))
	}
	want := []*api.Filter{
		{Kind: &api.Filter_Cors{Cors: &api.CORS{AllowOrigins: []string{"https://*.bar.com"}, AllowMethods: []string{"PUT"},
			AllowHeaders: []string{"X-A"}, ExposeHeaders: []string{"X-B"}, AllowCredentials: true, MaxAgeSeconds: 60}}},
		{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Remove: []string{"x-c"}}}},
	}
	// The longer prefix (/unset) sorts first.
	if diff := cmp.Diff(want, got.Routes[1].Filters, protocmp.Transform()); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}
	wantUnset := []*api.Filter{{Kind: &api.Filter_Cors{Cors: &api.CORS{AllowOrigins: []string{"*"}}}}}
	if diff := cmp.Diff(wantUnset, got.Routes[0].Filters, protocmp.Transform()); diff != "" {
		t.Errorf("filters of /unset (-want +got):\n%s", diff)
	}
}

// TestSessionPersistenceRefused: the experimental sessionPersistence field cannot be
// honoured, so the rule is refused with a reason rather than balanced per request.
func TestSessionPersistenceRefused(t *testing.T) {
	sp := &gatewayv1.SessionPersistence{SessionName: ptr.To("s")}
	if p := HTTPRuleProblem(gatewayv1.HTTPRouteRule{SessionPersistence: sp}); !strings.Contains(p, "sessionPersistence is not supported") {
		t.Errorf("HTTPRoute rule: problem %q", p)
	}
	if p := GRPCRuleProblem(gatewayv1.GRPCRouteRule{SessionPersistence: sp}); !strings.Contains(p, "sessionPersistence is not supported") {
		t.Errorf("GRPCRoute rule: problem %q", p)
	}
}
