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
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/proxy/api"
)

func mirrorTo(name string, port int32) *gatewayv1.HTTPRequestMirrorFilter {
	return &gatewayv1.HTTPRequestMirrorFilter{BackendRef: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(port)}}
}

func httpMirror(m *gatewayv1.HTTPRequestMirrorFilter) gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: m}
}

func apiMirror(backend string, num, den uint32) *api.Filter {
	return &api.Filter{Kind: &api.Filter_RequestMirror{RequestMirror: &api.RequestMirror{Backend: backend, Numerator: num, Denominator: den}}}
}

func invalidMirror(why string, num, den uint32) *api.Filter {
	return &api.Filter{Kind: &api.Filter_RequestMirror{RequestMirror: &api.RequestMirror{Invalid: why, Numerator: num, Denominator: den}}}
}

// TestCompileRequestMirror: each case is one rule of an HTTPRoute (or GRPCRoute) on
// shop/web; it says what the compiled route's filters, its backends' filters and the
// destination's backend keys must be.
func TestCompileRequestMirror(t *testing.T) {
	withFraction := mirrorTo("web-v2", 80)
	withFraction.Fraction = &gatewayv1.Fraction{Numerator: 1, Denominator: ptr.To[int32](3)}
	withPercent := mirrorTo("web-v2", 80)
	withPercent.Percent = ptr.To[int32](50)
	otherNS := mirrorTo("api", 80)
	otherNS.BackendRef.Namespace = ptr.To(gatewayv1.Namespace("other"))
	wrongKind := mirrorTo("bucket", 80)
	wrongKind.BackendRef.Kind = ptr.To(gatewayv1.Kind("Bucket"))
	wrongKind.BackendRef.Group = ptr.To(gatewayv1.Group("example.com"))

	cases := []struct {
		name         string
		http         *gatewayv1.HTTPRouteRule
		grpc         *gatewayv1.GRPCRouteRule
		wantFilters  []*api.Filter
		wantBFilters []*api.Filter // of the rule's first backend
		wantBackends []string
	}{
		{
			name:         "no share: every request",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(mirrorTo("web-v2", 80))}},
			wantFilters:  []*api.Filter{apiMirror("shop/web-v2:80", 0, 0)},
			wantBackends: []string{"shop/web-v2:80", "shop/web:80"},
		},
		{
			name:         "percent 50",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(withPercent)}},
			wantFilters:  []*api.Filter{apiMirror("shop/web-v2:80", 50, 100)},
			wantBackends: []string{"shop/web-v2:80", "shop/web:80"},
		},
		{
			name:         "fraction 1/3",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(withFraction)}},
			wantFilters:  []*api.Filter{apiMirror("shop/web-v2:80", 1, 3)},
			wantBackends: []string{"shop/web-v2:80", "shop/web:80"},
		},
		{
			name: "after the other request filters, in order, two mirrors",
			http: &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{
				httpMirror(mirrorTo("web-v3", 80)),
				{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Remove: []string{"x-a"}}},
				httpMirror(withPercent),
			}},
			wantFilters: []*api.Filter{
				{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Remove: []string{"x-a"}}}},
				apiMirror("shop/web-v3:80", 0, 0), apiMirror("shop/web-v2:80", 50, 100),
			},
			wantBackends: []string{"shop/web-v2:80", "shop/web-v3:80", "shop/web:80"},
		},
		{
			name: "backendRef-level",
			http: &gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{{
				BackendRef: backendRef("web", 80, nil).BackendRef,
				Filters:    []gatewayv1.HTTPRouteFilter{httpMirror(withFraction)},
			}}},
			wantBFilters: []*api.Filter{apiMirror("shop/web-v2:80", 1, 3)},
			wantBackends: []string{"shop/web-v2:80", "shop/web:80"},
		},
		{
			name:         "missing Service: the mirror says why and adds no backend",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(mirrorTo("gone", 80))}},
			wantFilters:  []*api.Filter{invalidMirror("BackendNotFound: Service shop/gone does not exist", 0, 0)},
			wantBackends: []string{"shop/web:80"},
		},
		{
			name:         "missing port",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(mirrorTo("web-v2", 81))}},
			wantFilters:  []*api.Filter{invalidMirror("BackendNotFound: Service shop/web-v2 has no port 81", 0, 0)},
			wantBackends: []string{"shop/web:80"},
		},
		{
			name:         "not a Service",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(wrongKind)}},
			wantFilters:  []*api.Filter{invalidMirror("InvalidKind: backendRef bucket names a Bucket.example.com; only core Services are supported", 0, 0)},
			wantBackends: []string{"shop/web:80"},
		},
		{
			name:         "a Service in another namespace needs no ReferenceGrant (GEP-1294)",
			http:         &gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{httpMirror(otherNS)}},
			wantFilters:  []*api.Filter{apiMirror("other/api:80", 0, 0)},
			wantBackends: []string{"other/api:80", "shop/web:80"},
		},
		{
			name: "GRPCRoute rule and backendRef",
			grpc: &gatewayv1.GRPCRouteRule{
				Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: withPercent}},
				BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: backendRef("web", 80, nil).BackendRef,
					Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: mirrorTo("gone", 80)}}}},
			},
			wantFilters:  []*api.Filter{apiMirror("shop/web-v2:80", 50, 100)},
			wantBFilters: []*api.Filter{invalidMirror("BackendNotFound: Service shop/gone does not exist", 0, 0)},
			wantBackends: []string{"shop/web-v2:80", "shop/web:80"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture()
			other := svc("api", []string{"10.96.0.20"}, sport("http", 80, 8080, nil))
			other.Namespace = "other"
			s.Services = append(s.Services, other)
			if tc.http != nil {
				rule := *tc.http
				if len(rule.BackendRefs) == 0 {
					rule.BackendRefs = []gatewayv1.HTTPBackendRef{backendRef("web", 80, nil)}
				}
				if p := HTTPRuleProblem(rule); p != "" {
					t.Fatalf("rule refused: %s", p)
				}
				s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "r", 0, web, rule)}
			} else {
				if p := GRPCRuleProblem(*tc.grpc); p != "" {
					t.Fatalf("rule refused: %s", p)
				}
				s.GRPCRoutes = []gatewayv1.GRPCRoute{grpcRoute("shop", "g", web, *tc.grpc)}
			}
			got, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Routes) != 1 {
				t.Fatalf("got %d routes, want 1", len(got.Routes))
			}
			rt := got.Routes[0]
			if diff := cmp.Diff(tc.wantFilters, rt.Filters, protocmp.Transform()); diff != "" {
				t.Errorf("route filters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantBFilters, rt.Backends[0].Filters, protocmp.Transform()); diff != "" {
				t.Errorf("backend filters (-want +got):\n%s", diff)
			}
			var keys []string
			for _, b := range got.Backends {
				keys = append(keys, b.Key)
				if b.Key == "shop/web-v2:80" && len(b.Endpoints) != 1 {
					t.Errorf("mirror backend has %d endpoints, want the fixture's 1", len(b.Endpoints))
				}
			}
			if diff := cmp.Diff(tc.wantBackends, keys); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
			// The primary share is untouched by any mirror.
			if rt.Backends[0].Backend != "shop/web:80" || rt.Backends[0].Weight != 1 || rt.Backends[0].Invalid != "" {
				t.Errorf("primary backend changed: %v", rt.Backends[0])
			}
		})
	}
}

func TestMirrorShare(t *testing.T) {
	frac := func(n int32, d *int32) *gatewayv1.HTTPRequestMirrorFilter {
		return &gatewayv1.HTTPRequestMirrorFilter{Fraction: &gatewayv1.Fraction{Numerator: n, Denominator: d}}
	}
	pct := func(p int32) *gatewayv1.HTTPRequestMirrorFilter {
		return &gatewayv1.HTTPRequestMirrorFilter{Percent: ptr.To(p)}
	}
	for _, tc := range []struct {
		name     string
		m        *gatewayv1.HTTPRequestMirrorFilter
		num, den uint32
	}{
		{"neither: all", &gatewayv1.HTTPRequestMirrorFilter{}, 0, 0},
		{"percent 0: none", pct(0), 0, 100},
		{"percent 37", pct(37), 37, 100},
		{"percent 100: all", pct(100), 0, 0},
		{"percent above 100 (not admitted): all", pct(250), 0, 0},
		{"percent negative (not admitted): none", pct(-5), 0, 100},
		{"fraction 1/3", frac(1, ptr.To[int32](3)), 1, 3},
		{"fraction without denominator: /100", frac(7, nil), 7, 100},
		{"fraction n == d: all", frac(4, ptr.To[int32](4)), 0, 0},
		{"fraction 0/5: none", frac(0, ptr.To[int32](5)), 0, 5},
		{"fraction /0 (not admitted): none", frac(1, ptr.To[int32](0)), 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, d := MirrorShare(tc.m)
			if n != tc.num || d != tc.den {
				t.Errorf("got %d/%d, want %d/%d", n, d, tc.num, tc.den)
			}
		})
	}
}

func TestRuleMirrorRefs(t *testing.T) {
	rule := gatewayv1.HTTPRouteRule{
		Filters: []gatewayv1.HTTPRouteFilter{httpMirror(mirrorTo("a", 80)), {Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier}},
		BackendRefs: []gatewayv1.HTTPBackendRef{
			{BackendRef: backendRef("web", 80, nil).BackendRef, Filters: []gatewayv1.HTTPRouteFilter{httpMirror(mirrorTo("b", 81))}},
		},
	}
	var names []string
	for _, r := range HTTPRuleMirrorRefs(rule) {
		names = append(names, string(r.Name))
	}
	if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
		t.Errorf("HTTP (-want +got):\n%s", diff)
	}
	grule := gatewayv1.GRPCRouteRule{
		Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: mirrorTo("c", 80)}},
		BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: backendRef("web", 80, nil).BackendRef,
			Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: mirrorTo("d", 80)}}}},
	}
	names = nil
	for _, r := range GRPCRuleMirrorRefs(grule) {
		names = append(names, string(r.Name))
	}
	if diff := cmp.Diff([]string{"c", "d"}, names); diff != "" {
		t.Errorf("gRPC (-want +got):\n%s", diff)
	}
}
