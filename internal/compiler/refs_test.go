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
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

func TestCheckParent(t *testing.T) {
	get := newIndex(fixture()).getService
	cases := []struct {
		name     string
		ns       string
		ref      gatewayv1.ParentReference
		accepted bool
		reason   string
		message  string
	}{
		{name: "whole Service", ns: "shop", ref: serviceParent("web", nil, nil), accepted: true, reason: "Accepted", message: "Attached to Service shop/web"},
		{name: "existing port", ns: "shop", ref: serviceParent("web", ptr.To[int32](9090), nil), accepted: true, reason: "Accepted"},
		{name: "existing port name", ns: "shop", ref: serviceParent("web", nil, ptr.To("grpc")), accepted: true, reason: "Accepted"},
		{name: "consumer route names the Service's namespace", ns: "client",
			ref: func() gatewayv1.ParentReference {
				r := serviceParent("web", nil, nil)
				r.Namespace = ptr.To(gatewayv1.Namespace("shop"))
				return r
			}(), accepted: true, reason: "Accepted"},
		{name: "missing Service", ns: "shop", ref: serviceParent("nope", nil, nil), reason: "NoMatchingParent", message: "Service shop/nope does not exist"},
		{name: "missing Service in the route's namespace", ns: "client", ref: serviceParent("web", nil, nil), reason: "NoMatchingParent", message: "Service client/web does not exist"},
		{name: "wrong port", ns: "shop", ref: serviceParent("web", ptr.To[int32](81), nil), reason: "NoMatchingParent", message: "Service shop/web has no port 81"},
		{name: "wrong port name", ns: "shop", ref: serviceParent("web", nil, ptr.To("admin")), reason: "NoMatchingParent", message: `has no port named "admin"`},
		{name: "port and name that do not agree", ns: "shop", ref: serviceParent("web", ptr.To[int32](80), ptr.To("grpc")), reason: "NoMatchingParent", message: `has no port 80 named "grpc"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !IsServiceParent(tc.ref) {
				t.Fatal("fixture parentRef is not a Service parent")
			}
			ok, reason, msg, err := CheckParent(tc.ns, tc.ref, get)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.accepted || reason != tc.reason || !strings.Contains(msg, tc.message) {
				t.Errorf("got %v %s %q, want %v %s containing %q", ok, reason, msg, tc.accepted, tc.reason, tc.message)
			}
		})
	}

	t.Run("lookup errors propagate", func(t *testing.T) {
		boom := errors.New("boom")
		_, _, _, err := CheckParent("shop", serviceParent("web", nil, nil), func(string, string) (*corev1.Service, error) { return nil, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("want the lookup error, got %v", err)
		}
	})
}

func TestIsServiceParent(t *testing.T) {
	cases := []struct {
		name string
		ref  gatewayv1.ParentReference
		want bool
	}{
		{name: "core Service", ref: serviceParent("web", nil, nil), want: true},
		{name: "defaults name a Gateway", ref: gatewayv1.ParentReference{Name: "web"}},
		{name: "kind without group", ref: gatewayv1.ParentReference{Kind: ptr.To(gatewayv1.Kind("Service")), Name: "web"}},
		{name: "Service of another group", ref: gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("multicluster.x-k8s.io")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "web"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsServiceParent(tc.ref); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func redirectFilter(code int) gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect,
		RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(code)}}
}

func TestRuleProblems(t *testing.T) {
	regex := ptr.To(gatewayv1.PathMatchRegularExpression)
	httpCases := []struct {
		name string
		rule gatewayv1.HTTPRouteRule
		want string
	}{
		{name: "empty rule", rule: gatewayv1.HTTPRouteRule{}},
		{name: "supported filters", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{
			{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier}, {Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier},
			{Type: gatewayv1.HTTPRouteFilterURLRewrite}, {Type: gatewayv1.HTTPRouteFilterRequestRedirect}}}},
		{name: "every redirect code Gateway API defines", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{
			redirectFilter(301), redirectFilter(302), redirectFilter(303), redirectFilter(307), redirectFilter(308)}}},
		{name: "a redirect code the API may add later", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{redirectFilter(305)}},
			want: "redirect statusCode 305 is not supported; use 301, 302, 303, 307 or 308"},
		{name: "mirror", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror}}}},
		{name: "extensionRef", rule: gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef}}},
			want: "filter type ExtensionRef is not supported"},
		{name: "extensionRef on a backend", rule: gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{{
			BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "b"}},
			Filters:    []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef}}}}},
			want: "backendRef b: filter type ExtensionRef is not supported"},
		{name: "bad path regex", rule: gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: regex, Value: ptr.To("(")}}}},
			want: `path regular expression "(" does not compile`},
		{name: "bad header regex", rule: gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{
			{Type: ptr.To(gatewayv1.HeaderMatchRegularExpression), Name: "h", Value: "["}}}}},
			want: `header h regular expression "[" does not compile`},
		{name: "bad query regex", rule: gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{QueryParams: []gatewayv1.HTTPQueryParamMatch{
			{Type: ptr.To(gatewayv1.QueryParamMatchRegularExpression), Name: "q", Value: "*"}}}}},
			want: `query parameter q regular expression "*" does not compile`},
		{name: "bad timeout", rule: gatewayv1.HTTPRouteRule{Timeouts: &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("soon"))}},
			want: `timeout "soon" is not a duration`},
		{name: "bad backoff", rule: gatewayv1.HTTPRouteRule{Retry: &gatewayv1.HTTPRouteRetry{Backoff: ptr.To(gatewayv1.Duration("1 s"))}},
			want: `retry backoff "1 s" is not a duration`},
	}
	for _, tc := range httpCases {
		t.Run("HTTP/"+tc.name, func(t *testing.T) {
			got := HTTPRuleProblem(tc.rule)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	grpcCases := []struct {
		name string
		rule gatewayv1.GRPCRouteRule
		want string
	}{
		{name: "empty rule", rule: gatewayv1.GRPCRouteRule{}},
		{name: "header modifiers", rule: gatewayv1.GRPCRouteRule{Filters: []gatewayv1.GRPCRouteFilter{
			{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier}, {Type: gatewayv1.GRPCRouteFilterResponseHeaderModifier}}}},
		{name: "mirror", rule: gatewayv1.GRPCRouteRule{Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror}}}},
		{name: "extensionRef", rule: gatewayv1.GRPCRouteRule{Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterExtensionRef}}},
			want: "filter type ExtensionRef is not supported"},
		{name: "backend filter", rule: gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{{
			BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "b"}},
			Filters:    []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterExtensionRef}}}}},
			want: "backendRef b: filter type ExtensionRef is not supported"},
		{name: "bad method regex", rule: gatewayv1.GRPCRouteRule{Matches: []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{
			Type: ptr.To(gatewayv1.GRPCMethodMatchRegularExpression), Method: ptr.To("(")}}}},
			want: `method regular expression "(" does not compile`},
		{name: "bad header regex", rule: gatewayv1.GRPCRouteRule{Matches: []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{
			{Type: ptr.To(gatewayv1.GRPCHeaderMatchRegularExpression), Name: "h", Value: "["}}}}},
			want: `header h regular expression "[" does not compile`},
	}
	for _, tc := range grpcCases {
		t.Run("gRPC/"+tc.name, func(t *testing.T) {
			got := GRPCRuleProblem(tc.rule)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProtocolHints(t *testing.T) {
	cases := []struct {
		name        string
		appProtocol *string
		port        int32
		targetPort  int32
		want        string
	}{
		{name: "no appProtocol", port: 80, targetPort: 8080, want: "PROTOCOL_HINT_UNSPECIFIED"},
		{name: "http", appProtocol: ptr.To("http"), port: 80, want: "PROTOCOL_HINT_HTTP1"},
		{name: "kubernetes.io/h2c", appProtocol: ptr.To("kubernetes.io/h2c"), port: 80, want: "PROTOCOL_HINT_H2C"},
		{name: "grpc, any case", appProtocol: ptr.To("GRPC"), port: 80, want: "PROTOCOL_HINT_GRPC"},
		{name: "tcp", appProtocol: ptr.To("tcp"), port: 80, want: "PROTOCOL_HINT_OPAQUE"},
		{name: "unknown appProtocol means detect", appProtocol: ptr.To("example.com/custom"), port: 80, want: "PROTOCOL_HINT_UNSPECIFIED"},
		{name: "opaque Service port beats appProtocol", appProtocol: ptr.To("http"), port: 5432, want: "PROTOCOL_HINT_OPAQUE"},
		{name: "opaque target port", port: 15432, targetPort: 5432, want: "PROTOCOL_HINT_OPAQUE"},
	}
	ix := newIndex(&State{OpaquePorts: []int32{5432}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ix.portProtocol(tc.appProtocol, tc.port, tc.targetPort).String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSetMesh(t *testing.T) {
	cases := []struct {
		name        string
		mesh        *meshv1alpha1.Mesh
		trustDomain string
		opaque      []int32
	}{
		{name: "no Mesh: defaults", trustDomain: "cluster.local", opaque: []int32{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}},
		{name: "Mesh with its own values", mesh: &meshv1alpha1.Mesh{Spec: meshv1alpha1.MeshSpec{TrustDomain: "prod.example",
			Proxy: meshv1alpha1.ProxySpec{OpaquePorts: []meshv1alpha1.Port{7000}}}}, trustDomain: "prod.example", opaque: []int32{7000}},
		{name: "explicitly no opaque ports", mesh: &meshv1alpha1.Mesh{Spec: meshv1alpha1.MeshSpec{
			Proxy: meshv1alpha1.ProxySpec{OpaquePorts: []meshv1alpha1.Port{}}}}, trustDomain: "cluster.local", opaque: []int32{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &State{OpaquePorts: []int32{1}}
			s.SetMesh(tc.mesh)
			if s.TrustDomain != tc.trustDomain || !slices.Equal(s.OpaquePorts, tc.opaque) {
				t.Errorf("got %q %v, want %q %v", s.TrustDomain, s.OpaquePorts, tc.trustDomain, tc.opaque)
			}
		})
	}
}
