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
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/proxy/api"
)

func profile(ns string, spec meshv1alpha1.ServiceProfileSpec) meshv1alpha1.ServiceProfile {
	return meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web.shop.svc.cluster.local"}, Spec: spec}
}

func split(name string, age time.Duration, backends ...splitv1alpha2.TrafficSplitBackend) splitv1alpha2.TrafficSplit {
	return splitv1alpha2.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(age))},
		Spec:       splitv1alpha2.TrafficSplitSpec{Service: "web", Backends: backends},
	}
}

func grpcRoute(ns, name string, parents []gatewayv1.ParentReference, rules ...gatewayv1.GRPCRouteRule) gatewayv1.GRPCRoute {
	return gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch)},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parents},
			Rules:           rules,
		},
	}
}

var web = []gatewayv1.ParentReference{serviceParent("web", nil, nil)}

func TestCompile(t *testing.T) {
	target := Target{Namespace: "shop", Name: "web", Port: 80}
	cases := []struct {
		name   string
		state  func(s *State)
		target func(t *Target)
		want   func(w *api.DestinationConfig)
	}{
		{
			name: "bare Service: fallback to itself, ready endpoints only, identities of meshed pods",
			want: func(w *api.DestinationConfig) {},
		},
		{
			name:  "trust and cluster domains come from the state",
			state: func(s *State) { s.TrustDomain, s.ClusterDomain = "prod.example", "corp.internal" },
			want: func(w *api.DestinationConfig) {
				w.Authorities = []string{"web.shop.svc.corp.internal:80"}
				w.Backends[0].Authority = "web.shop.svc.corp.internal:80"
				for _, e := range w.Backends[0].Endpoints {
					if e.Identity != "" {
						e.Identity = "spiffe://prod.example/ns/shop/sa/web"
					}
				}
			},
		},
		{
			name:   "appProtocol grpc on the Service port and on the EndpointSlice port",
			target: func(t *Target) { t.Port = 9090 },
			want: func(w *api.DestinationConfig) {
				w.Service.Port = 9090
				w.Addresses = []string{"10.96.0.10:9090", "[fd00::10]:9090"}
				w.Authorities = []string{"web.shop.svc.cluster.local:9090"}
				w.Protocol = api.ProtocolHint_PROTOCOL_HINT_GRPC
				w.Fallback.Backends = []*api.WeightedBackend{wb("shop/web:9090", 1)}
				b := w.Backends[0]
				b.Key, b.Service.Port, b.Authority, b.Protocol = "shop/web:9090", 9090, "web.shop.svc.cluster.local:9090", api.ProtocolHint_PROTOCOL_HINT_GRPC
				for _, e := range b.Endpoints {
					e.Port, e.Protocol = 9090, api.ProtocolHint_PROTOCOL_HINT_GRPC
				}
			},
		},
		{
			name: "the Mesh's opaque port: no routes even when a route attaches",
			state: func(s *State) {
				s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "r", 0, web, gatewayv1.HTTPRouteRule{})}
			},
			target: func(t *Target) { t.Port = 3306 },
			want: func(w *api.DestinationConfig) {
				w.Service.Port = 3306
				w.Addresses = []string{"10.96.0.10:3306", "[fd00::10]:3306"}
				w.Authorities = []string{"web.shop.svc.cluster.local:3306"}
				w.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE
				w.Fallback.Backends = []*api.WeightedBackend{wb("shop/web:3306", 1)}
				b := w.Backends[0]
				b.Key, b.Service.Port, b.Authority, b.Protocol = "shop/web:3306", 3306, "web.shop.svc.cluster.local:3306", api.ProtocolHint_PROTOCOL_HINT_OPAQUE
				for _, e := range b.Endpoints {
					e.Port, e.Protocol = 3306, api.ProtocolHint_PROTOCOL_HINT_OPAQUE
				}
			},
		},
		{
			name: "the ServiceProfile's opaque ports make the root port opaque",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					OpaquePorts: []intstr.IntOrString{intstr.FromInt32(80)},
					Routes:      []meshv1alpha1.RouteSpec{{Name: "get", Condition: meshv1alpha1.RequestMatch{Method: "GET"}}},
				})}
			},
			want: func(w *api.DestinationConfig) { w.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE },
		},
		{
			// Linkerd's CRD types opaquePorts as strings; a range covers the port too.
			name: "a ServiceProfile opaque port range, written as Linkerd's string, covers the root port",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					OpaquePorts: []intstr.IntOrString{intstr.FromString("3306"), intstr.FromString("79-81")},
				})}
			},
			want: func(w *api.DestinationConfig) { w.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE },
		},
		{
			name: "a ServiceProfile opaque port string beside the root port leaves it alone",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					OpaquePorts: []intstr.IntOrString{intstr.FromString("81-90")},
				})}
			},
			want: func(w *api.DestinationConfig) {},
		},
		{
			name: "headless Service has no addresses",
			state: func(s *State) {
				s.Services[0].Spec.ClusterIP, s.Services[0].Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
			},
			want: func(w *api.DestinationConfig) { w.Addresses = nil },
		},
		{
			name: "ServiceProfile routes: conditions at every level, response classes, retries, timeouts, budget",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					RetryBudget: &meshv1alpha1.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, TTL: "30s"},
					Routes: []meshv1alpha1.RouteSpec{
						{
							Name:        "get-books",
							Condition:   meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*"},
							IsRetryable: true,
							Timeout:     "300ms",
							ResponseClasses: []meshv1alpha1.ResponseClass{
								{Condition: meshv1alpha1.ResponseMatch{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](500), Max: ptr.To[int32](599)}}, IsFailure: true},
								// One bound alone matches just that status, as Linkerd documents.
								{Condition: meshv1alpha1.ResponseMatch{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](404)}}},
								{Condition: meshv1alpha1.ResponseMatch{Status: &meshv1alpha1.StatusRange{Max: ptr.To[int32](409)}}},
								{Condition: meshv1alpha1.ResponseMatch{
									Any: []meshv1alpha1.ResponseMatch{
										{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](100), Max: ptr.To[int32](199)}},
										{Not: &meshv1alpha1.ResponseMatch{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](200), Max: ptr.To[int32](499)}}},
										{All: []meshv1alpha1.ResponseMatch{{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](429), Max: ptr.To[int32](429)}}}},
									},
								}},
							},
						},
						{
							Name: "writes",
							Condition: meshv1alpha1.RequestMatch{
								Any: []meshv1alpha1.RequestMatch{
									{Method: "POST"},
									{All: []meshv1alpha1.RequestMatch{{Method: "PUT"}, {PathRegex: "/books/.*"}}},
									{Not: &meshv1alpha1.RequestMatch{PathRegex: "/health"}},
									{Any: []meshv1alpha1.RequestMatch{{Method: "delete"}}},
									// Deeper than the old three-level schema allowed.
									{Any: []meshv1alpha1.RequestMatch{{All: []meshv1alpha1.RequestMatch{{Not: &meshv1alpha1.RequestMatch{Method: "PATCH"}}, {PathRegex: "/info.txt"}}}}},
								},
								Not: &meshv1alpha1.RequestMatch{Method: "GET"},
							},
						},
					},
				})}
			},
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE
				w.RetryBudget = &api.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, Ttl: durationpb.New(30 * time.Second)}
				res := &api.ResourceRef{Kind: "ServiceProfile", Namespace: "shop", Name: "web.shop.svc.cluster.local"}
				method := func(m string) *api.RequestCondition {
					return &api.RequestCondition{Kind: &api.RequestCondition_Method{Method: m}}
				}
				pathRe := func(p string) *api.RequestCondition {
					return &api.RequestCondition{Kind: &api.RequestCondition_PathRegex{PathRegex: p}}
				}
				all := func(c ...*api.RequestCondition) *api.RequestCondition {
					return &api.RequestCondition{Kind: &api.RequestCondition_All{All: &api.RequestConditions{Conditions: c}}}
				}
				anyOf := func(c ...*api.RequestCondition) *api.RequestCondition {
					return &api.RequestCondition{Kind: &api.RequestCondition_Any{Any: &api.RequestConditions{Conditions: c}}}
				}
				not := func(c *api.RequestCondition) *api.RequestCondition {
					return &api.RequestCondition{Kind: &api.RequestCondition_Not{Not: c}}
				}
				status := func(lo, hi uint32) *api.ResponseCondition {
					return &api.ResponseCondition{Kind: &api.ResponseCondition_Status{Status: &api.StatusRange{Min: lo, Max: hi}}}
				}
				w.Routes = []*api.Route{
					{
						Name: "get-books", Resource: res,
						Matches:  []*api.RouteMatch{{Condition: all(pathRe("/books/[^/]*"), method("GET"))}},
						Backends: []*api.WeightedBackend{wb("shop/web:80", 1)},
						Timeouts: &api.Timeouts{Request: durationpb.New(300 * time.Millisecond)},
						Retry:    &api.RetryPolicy{},
						ResponseClasses: []*api.ResponseClass{
							{Condition: status(500, 599), IsFailure: true},
							{Condition: status(404, 404)},
							{Condition: status(409, 409)},
							{Condition: &api.ResponseCondition{Kind: &api.ResponseCondition_Any{Any: &api.ResponseConditions{Conditions: []*api.ResponseCondition{
								status(100, 199),
								{Kind: &api.ResponseCondition_Not{Not: status(200, 499)}},
								{Kind: &api.ResponseCondition_All{All: &api.ResponseConditions{Conditions: []*api.ResponseCondition{status(429, 429)}}}},
							}}}}},
						},
					},
					{
						Name: "writes", Resource: res,
						Matches: []*api.RouteMatch{{Condition: all(
							anyOf(method("POST"), all(method("PUT"), pathRe("/books/.*")), not(pathRe("/health")), anyOf(method("DELETE")),
								anyOf(all(not(method("PATCH")), pathRe("/info.txt")))),
							not(method("GET")),
						)}},
						Backends: []*api.WeightedBackend{wb("shop/web:80", 1)},
						Timeouts: &api.Timeouts{Request: durationpb.New(DefaultProfileRouteTimeout)},
					},
				}
			},
		},
		{
			name: "a ServiceProfile in the client's namespace wins over the Service's",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{
					profile("shop", meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{{Name: "producer", Condition: meshv1alpha1.RequestMatch{Method: "GET"}}}}),
					profile("client", meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{{Name: "consumer", Condition: meshv1alpha1.RequestMatch{Method: "GET"}}}}),
				}
			},
			target: func(t *Target) { t.ContextNamespace = "client" },
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE
				w.Routes = []*api.Route{{
					Name:     "consumer",
					Resource: &api.ResourceRef{Kind: "ServiceProfile", Namespace: "client", Name: "web.shop.svc.cluster.local"},
					Matches:  []*api.RouteMatch{{Condition: &api.RequestCondition{Kind: &api.RequestCondition_Method{Method: "GET"}}}},
					Backends: []*api.WeightedBackend{wb("shop/web:80", 1)},
					Timeouts: &api.Timeouts{Request: durationpb.New(DefaultProfileRouteTimeout)},
				}}
			},
		},
		{
			name: "a ServiceProfile that fails validation is ignored",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					Routes: []meshv1alpha1.RouteSpec{{Name: "bad", Condition: meshv1alpha1.RequestMatch{PathRegex: "/(unclosed"}}},
				})}
			},
			want: func(w *api.DestinationConfig) {},
		},
		{
			name: "TrafficSplit weights the fallback; a missing backend keeps its share as invalid",
			state: func(s *State) {
				s.TrafficSplits = []splitv1alpha2.TrafficSplit{split("canary", 0,
					splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 900},
					splitv1alpha2.TrafficSplitBackend{Service: "web-v2", Weight: 90},
					splitv1alpha2.TrafficSplitBackend{Service: "web-gone", Weight: 10})}
			},
			want: func(w *api.DestinationConfig) {
				w.Fallback.Backends = []*api.WeightedBackend{wb("shop/web:80", 900), wb("shop/web-v2:80", 90),
					{Weight: 10, Invalid: "Service shop/web-gone does not exist"}}
				w.Backends = []*api.Backend{webV2Backend(), webBackend()} // sorted by key: '-' < ':'
			},
		},
		{
			name: "the oldest TrafficSplit wins; splits with matches are not honoured; the root need not be a backend",
			state: func(s *State) {
				older := split("b-older", 0, splitv1alpha2.TrafficSplitBackend{Service: "web-v2", Weight: 1})
				newer := split("a-newer", time.Hour, splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 1})
				matched := split("matched", -time.Hour, splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 1})
				matched.Spec.Matches = []splitv1alpha2.TrafficSplitMatch{{Kind: "HTTPRouteGroup", Name: "x"}}
				s.TrafficSplits = []splitv1alpha2.TrafficSplit{newer, matched, older}
			},
			want: func(w *api.DestinationConfig) {
				w.Fallback.Backends = []*api.WeightedBackend{wb("shop/web-v2:80", 1)}
				w.Backends = []*api.Backend{webV2Backend()}
			},
		},
		{
			name: "dstOverrides weight the fallback when no TrafficSplit does",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					DstOverrides: []meshv1alpha1.WeightedDst{
						{Authority: "web.shop.svc.cluster.local:80", Weight: resource.MustParse("500m")},
						{Authority: "web-v2.shop.svc.cluster.local", Weight: resource.MustParse("500m")},
						{Authority: "api.example.com:443", Weight: resource.MustParse("1")},
					},
				})}
			},
			want: func(w *api.DestinationConfig) {
				w.Fallback.Backends = []*api.WeightedBackend{wb("shop/web:80", 500), wb("shop/web-v2:80", 500),
					{Weight: 1000, Invalid: "dstOverride authority api.example.com:443 is not a Service of this cluster"}}
				w.Backends = []*api.Backend{webV2Backend(), webBackend()} // sorted by key: '-' < ':'
			},
		},
		{
			name: "HTTPRoute: every match kind, filter kind, timeouts, retry, weighted and invalid backends",
			state: func(s *State) {
				other := gatewayv1.Namespace("elsewhere")
				badRefs := []gatewayv1.HTTPBackendRef{
					backendRef("web-v2", 80, ptr.To[int32](8)),
					{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
						Group: ptr.To(gatewayv1.Group("example.com")), Kind: ptr.To(gatewayv1.Kind("Bucket")), Name: "b"}}},
					{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
						Name: "web-v2", Namespace: &other, Port: ptr.To[int32](80)}}},
					backendRef("web-gone", 80, nil),
					backendRef("web-v2", 81, ptr.To[int32](0)),
					{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-v2"}}},
				}
				badRefs[0].Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
					RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: "x-canary", Value: "1"}}}}}
				s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "books", 0, web,
					gatewayv1.HTTPRouteRule{
						Name: ptr.To(gatewayv1.SectionName("api")),
						Matches: []gatewayv1.HTTPRouteMatch{{
							Path:   prefix("/api"),
							Method: ptr.To(gatewayv1.HTTPMethodPost),
							Headers: []gatewayv1.HTTPHeaderMatch{
								{Name: "x-user", Value: "alice"},
								{Type: ptr.To(gatewayv1.HeaderMatchRegularExpression), Name: "x-tier", Value: "gold|silver"},
							},
							QueryParams: []gatewayv1.HTTPQueryParamMatch{
								{Name: "v", Value: "2"},
								{Type: ptr.To(gatewayv1.QueryParamMatchRegularExpression), Name: "id", Value: "[0-9]+"},
							},
						}},
						Filters: []gatewayv1.HTTPRouteFilter{
							{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{
								Set: []gatewayv1.HTTPHeader{{Name: "x-a", Value: "1"}}, Add: []gatewayv1.HTTPHeader{{Name: "x-b", Value: "2"}}, Remove: []string{"x-c"}}},
							{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{
								Set: []gatewayv1.HTTPHeader{{Name: "x-served-by", Value: "weft"}}}},
							{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
								Hostname: ptr.To(gatewayv1.PreciseHostname("books.internal")),
								Path:     &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr.To("/v2")}}},
						},
						BackendRefs: badRefs,
						Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("2s")), BackendRequest: ptr.To(gatewayv1.Duration("500ms"))},
						Retry: &gatewayv1.HTTPRouteRetry{Codes: []gatewayv1.HTTPRouteRetryStatusCode{503, 504},
							Attempts: ptr.To(2), Backoff: ptr.To(gatewayv1.Duration("25ms"))},
					},
					gatewayv1.HTTPRouteRule{
						Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchExact), Value: ptr.To("/old")}}},
						Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
							Scheme: ptr.To("https"), Hostname: ptr.To(gatewayv1.PreciseHostname("new.example")),
							Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr.To("/new")},
							Port: ptr.To[int32](8443), StatusCode: ptr.To(301)}}},
					},
					gatewayv1.HTTPRouteRule{
						Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchRegularExpression), Value: ptr.To("/item/[0-9]+")}}},
						// A redirect without a status code is a 302; a rule
						// without backendRefs goes to the default backends.
						Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
							Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr.To("/item")}}}},
						Retry: &gatewayv1.HTTPRouteRetry{},
					},
					gatewayv1.HTTPRouteRule{
						Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/temp")}},
						Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{}}},
						// Zero attempts means no retries.
						Retry:    &gatewayv1.HTTPRouteRetry{Attempts: ptr.To(0)},
						Timeouts: &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("0s"))},
					},
				)}
			},
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
				w.Fallback = nil
				res := func(rule string) *api.ResourceRef {
					return &api.ResourceRef{Kind: "HTTPRoute", Namespace: "shop", Name: "books", Rule: rule}
				}
				w.Routes = []*api.Route{
					{
						Name: "books/rule-1", Resource: res("1"),
						Matches: []*api.RouteMatch{{Path: exactMatch("/old")}},
						Filters: []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{
							Scheme: "https", Hostname: "new.example", Port: 8443, StatusCode: 301,
							Path: &api.PathModifier{Kind: &api.PathModifier_ReplaceFullPath{ReplaceFullPath: "/new"}}}}}},
					},
					{
						Name: "books/rule-2", Resource: res("2"),
						Matches: []*api.RouteMatch{{Path: regexMatch("/item/[0-9]+")}},
						Filters: []*api.Filter{{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{
							Path: &api.PathModifier{Kind: &api.PathModifier_ReplaceFullPath{ReplaceFullPath: "/item"}}}}}},
						Backends: []*api.WeightedBackend{wb("shop/web:80", 1)},
						Retry:    &api.RetryPolicy{},
					},
					{
						Name: "books/rule-3", Resource: res("3"),
						Matches:  []*api.RouteMatch{{Path: prefixMatch("/temp")}},
						Filters:  []*api.Filter{{Kind: &api.Filter_RequestRedirect{RequestRedirect: &api.RequestRedirect{StatusCode: 302}}}},
						Timeouts: &api.Timeouts{Request: durationpb.New(0)},
					},
					{
						Name: "books/api", Resource: res("api"),
						Matches: []*api.RouteMatch{{
							Path:   prefixMatch("/api"),
							Method: "POST",
							Headers: []*api.HeaderMatch{
								{Name: "x-user", Value: exactMatch("alice")},
								{Name: "x-tier", Value: regexMatch("gold|silver")},
							},
							QueryParams: []*api.HeaderMatch{
								{Name: "v", Value: exactMatch("2")},
								{Name: "id", Value: regexMatch("[0-9]+")},
							},
						}},
						Filters: []*api.Filter{
							{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{
								Set: []*api.Header{{Name: "x-a", Value: "1"}}, Add: []*api.Header{{Name: "x-b", Value: "2"}}, Remove: []string{"x-c"}}}},
							{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: &api.HeaderModifier{
								Set: []*api.Header{{Name: "x-served-by", Value: "weft"}}}}},
							{Kind: &api.Filter_UrlRewrite{UrlRewrite: &api.URLRewrite{Hostname: "books.internal",
								Path: &api.PathModifier{Kind: &api.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: "/v2"}}}}},
						},
						Backends: []*api.WeightedBackend{
							{Backend: "shop/web-v2:80", Weight: 8, Filters: []*api.Filter{{Kind: &api.Filter_RequestHeaderModifier{
								RequestHeaderModifier: &api.HeaderModifier{Add: []*api.Header{{Name: "x-canary", Value: "1"}}}}}}},
							{Weight: 1, Invalid: "InvalidKind: backendRef b names a Bucket.example.com; only core Services are supported"},
							{Weight: 1, Invalid: "BackendNotFound: Service elsewhere/web-v2 does not exist"},
							{Weight: 1, Invalid: "BackendNotFound: Service shop/web-gone does not exist"},
							{Weight: 0, Invalid: "BackendNotFound: Service shop/web-v2 has no port 81"},
							{Weight: 1, Invalid: "BackendNotFound: backendRef shop/web-v2 sets no port"},
						},
						Timeouts: &api.Timeouts{Request: durationpb.New(2 * time.Second), BackendRequest: durationpb.New(500 * time.Millisecond)},
						Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 503, Max: 503}, {Min: 504, Max: 504}},
							MaxAttempts: 3, Backoff: durationpb.New(25 * time.Millisecond)},
					},
				}
				w.Backends = []*api.Backend{webV2Backend(), webBackend()}
			},
		},
		{
			name: "Gateway API precedence: exact, regex, longer prefix, method, headers, query, age, name, rule order",
			state: func(s *State) {
				m := func(p *gatewayv1.HTTPPathMatch, method bool, headers, queries int) gatewayv1.HTTPRouteMatch {
					hm := gatewayv1.HTTPRouteMatch{Path: p}
					if method {
						hm.Method = ptr.To(gatewayv1.HTTPMethodGet)
					}
					for range headers {
						hm.Headers = append(hm.Headers, gatewayv1.HTTPHeaderMatch{Name: "h", Value: "v"})
					}
					for range queries {
						hm.QueryParams = append(hm.QueryParams, gatewayv1.HTTPQueryParamMatch{Name: "q", Value: "v"})
					}
					return hm
				}
				rule := func(name string, ms ...gatewayv1.HTTPRouteMatch) gatewayv1.HTTPRouteRule {
					return gatewayv1.HTTPRouteRule{Name: ptr.To(gatewayv1.SectionName(name)), Matches: ms}
				}
				s.HTTPRoutes = []gatewayv1.HTTPRoute{
					httpRoute("shop", "young", time.Hour, web, rule("tie-young", m(prefix("/t"), false, 0, 0))),
					httpRoute("shop", "b-old", 0, web,
						rule("tie-b", m(prefix("/t"), false, 0, 0)),
						rule("catch-all"),
						rule("query", m(prefix("/a"), true, 1, 1)),
						rule("headers", m(prefix("/a"), true, 1, 0)),
						rule("method", m(prefix("/a"), true, 0, 0)),
						rule("long-prefix", m(prefix("/a/b"), false, 0, 0)),
						rule("regex", m(&gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchRegularExpression), Value: ptr.To("/r.*")}, false, 0, 0)),
						rule("exact", m(&gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchExact), Value: ptr.To("/x")}, false, 0, 0)),
					),
					httpRoute("shop", "a-old", 0, web, rule("tie-a", m(prefix("/t"), false, 0, 0))),
					// Not attached: another Service, another port, another port name,
					// a Gateway parent, and another namespace.
					httpRoute("shop", "not-web", 0, []gatewayv1.ParentReference{serviceParent("web-v2", nil, nil)}, rule("x")),
					httpRoute("shop", "port-9090", 0, []gatewayv1.ParentReference{serviceParent("web", ptr.To[int32](9090), nil)}, rule("x")),
					httpRoute("shop", "section-grpc", 0, []gatewayv1.ParentReference{serviceParent("web", nil, ptr.To("grpc"))}, rule("x")),
					httpRoute("shop", "gateway", 0, []gatewayv1.ParentReference{{Name: "web"}}, rule("x")),
					httpRoute("third", "third", 0, []gatewayv1.ParentReference{{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
						Namespace: ptr.To(gatewayv1.Namespace("shop")), Name: "web"}}, rule("x")),
				}
			},
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
				w.Fallback = nil
				names := []string{"b-old/exact", "b-old/regex", "b-old/long-prefix", "b-old/query", "b-old/headers", "b-old/method",
					"a-old/tie-a", "b-old/tie-b", "young/tie-young", "b-old/catch-all"}
				w.Routes = nil
				for _, n := range names {
					w.Routes = append(w.Routes, &api.Route{Name: n})
				}
			},
		},
		{
			name: "consumer routes in the client's namespace replace the producer's; a rule with an unsupported filter is dropped",
			state: func(s *State) {
				consumerParent := []gatewayv1.ParentReference{{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
					Namespace: ptr.To(gatewayv1.Namespace("shop")), Name: "web", Port: ptr.To[int32](80)}}
				s.HTTPRoutes = []gatewayv1.HTTPRoute{
					httpRoute("shop", "producer", 0, web, gatewayv1.HTTPRouteRule{}),
					httpRoute("client", "consumer", 0, consumerParent,
						gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/cors")}},
							Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterCORS}}},
						gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/mine")}},
							// A backend in the Service's namespace, without a
							// ReferenceGrant (GEP-1294).
							BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
								Name: "web-v2", Namespace: ptr.To(gatewayv1.Namespace("shop")), Port: ptr.To[int32](80)}}}}}),
				}
			},
			target: func(t *Target) { t.ContextNamespace = "client" },
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
				w.Fallback = nil
				w.Routes = []*api.Route{{Name: "consumer/rule-1", Backends: []*api.WeightedBackend{wb("shop/web-v2:80", 1)}}}
				w.Backends = []*api.Backend{webV2Backend()}
			},
		},
		{
			name: "HTTPRoute beats ServiceProfile routes, keeps its retry budget; TrafficSplit fills rules without backendRefs",
			state: func(s *State) {
				s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{
					RetryBudget: &meshv1alpha1.RetryBudget{RetryRatio: 0.1, MinRetriesPerSecond: 1, TTL: "5s"},
					Routes:      []meshv1alpha1.RouteSpec{{Name: "sp", Condition: meshv1alpha1.RequestMatch{Method: "GET"}, IsRetryable: true}},
				})}
				s.TrafficSplits = []splitv1alpha2.TrafficSplit{split("canary", 0,
					splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 9}, splitv1alpha2.TrafficSplitBackend{Service: "web-v2", Weight: 1})}
				s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "r", 0, web,
					gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/v3")}},
						BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("web-v3", 80, nil)}},
					gatewayv1.HTTPRouteRule{})}
			},
			want: func(w *api.DestinationConfig) {
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
				w.Fallback = nil
				w.RetryBudget = &api.RetryBudget{RetryRatio: 0.1, MinRetriesPerSecond: 1, Ttl: durationpb.New(5 * time.Second)}
				res := func(rule string) *api.ResourceRef {
					return &api.ResourceRef{Kind: "HTTPRoute", Namespace: "shop", Name: "r", Rule: rule}
				}
				w.Routes = []*api.Route{
					{Name: "r/rule-0", Resource: res("0"), Matches: []*api.RouteMatch{{Path: prefixMatch("/v3")}},
						Backends: []*api.WeightedBackend{wb("shop/web-v3:80", 1)}},
					{Name: "r/rule-1", Resource: res("1"), Matches: []*api.RouteMatch{{Path: prefixMatch("/")}},
						Backends: []*api.WeightedBackend{wb("shop/web:80", 9), wb("shop/web-v2:80", 1)}},
				}
				w.Backends = []*api.Backend{webV2Backend(), webV3Backend(), webBackend()}
			},
		},
		{
			name:   "GRPCRoute: method and header matches, filters, gRPC rules before HTTP rules",
			target: func(t *Target) { t.Port = 9090 },
			state: func(s *State) {
				s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "http", 0, web, gatewayv1.HTTPRouteRule{})}
				s.GRPCRoutes = []gatewayv1.GRPCRoute{grpcRoute("shop", "rpc", web,
					gatewayv1.GRPCRouteRule{
						Name: ptr.To(gatewayv1.SectionName("books")),
						Matches: []gatewayv1.GRPCRouteMatch{
							{Method: &gatewayv1.GRPCMethodMatch{Service: ptr.To("shop.Books"), Method: ptr.To("Get")},
								Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-user", Value: "alice"},
									{Type: ptr.To(gatewayv1.GRPCHeaderMatchRegularExpression), Name: "x-tier", Value: "gold.*"}}},
							{Method: &gatewayv1.GRPCMethodMatch{Type: ptr.To(gatewayv1.GRPCMethodMatchRegularExpression), Service: ptr.To("shop\\..*")}},
						},
						Filters: []gatewayv1.GRPCRouteFilter{
							{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Remove: []string{"x-debug"}}},
							{Type: gatewayv1.GRPCRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: "x-r", Value: "1"}}}},
						},
						BackendRefs: []gatewayv1.GRPCBackendRef{{
							BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To[int32](9090)}, Weight: ptr.To[int32](3)},
							Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier,
								RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-b", Value: "web"}}}}},
						}},
					},
					gatewayv1.GRPCRouteRule{Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterExtensionRef}}},
					gatewayv1.GRPCRouteRule{},
				)}
			},
			want: func(w *api.DestinationConfig) {
				w.Service.Port = 9090
				w.Addresses = []string{"10.96.0.10:9090", "[fd00::10]:9090"}
				w.Authorities = []string{"web.shop.svc.cluster.local:9090"}
				w.Protocol = api.ProtocolHint_PROTOCOL_HINT_GRPC
				w.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
				w.Fallback = nil
				b := w.Backends[0]
				b.Key, b.Service.Port, b.Authority, b.Protocol = "shop/web:9090", 9090, "web.shop.svc.cluster.local:9090", api.ProtocolHint_PROTOCOL_HINT_GRPC
				for _, e := range b.Endpoints {
					e.Port, e.Protocol = 9090, api.ProtocolHint_PROTOCOL_HINT_GRPC
				}
				rpc := func(rule string) *api.ResourceRef {
					return &api.ResourceRef{Kind: "GRPCRoute", Namespace: "shop", Name: "rpc", Rule: rule}
				}
				filters := []*api.Filter{
					{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Remove: []string{"x-debug"}}}},
					{Kind: &api.Filter_ResponseHeaderModifier{ResponseHeaderModifier: &api.HeaderModifier{Add: []*api.Header{{Name: "x-r", Value: "1"}}}}},
				}
				backends := []*api.WeightedBackend{{Backend: "shop/web:9090", Weight: 3, Filters: []*api.Filter{{Kind: &api.Filter_RequestHeaderModifier{
					RequestHeaderModifier: &api.HeaderModifier{Set: []*api.Header{{Name: "x-b", Value: "web"}}}}}}}}
				w.Routes = []*api.Route{
					{Name: "rpc/books", Resource: rpc("books"), Filters: filters, Backends: backends,
						Matches: []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{Service: exactMatch("shop.Books"), Method: exactMatch("Get")},
							Headers: []*api.HeaderMatch{{Name: "x-user", Value: exactMatch("alice")}, {Name: "x-tier", Value: regexMatch("gold.*")}}}}},
					{Name: "rpc/books", Resource: rpc("books"), Filters: filters, Backends: backends,
						Matches: []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{Service: regexMatch("shop\\..*")}}}},
					{Name: "rpc/rule-2", Resource: rpc("2"), Matches: []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{}}},
						Backends: []*api.WeightedBackend{wb("shop/web:9090", 1)}},
					{Name: "http/rule-0", Resource: &api.ResourceRef{Kind: "HTTPRoute", Namespace: "shop", Name: "http", Rule: "0"},
						Matches:  []*api.RouteMatch{{Path: prefixMatch("/")}},
						Backends: []*api.WeightedBackend{wb("shop/web:9090", 1)}},
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture()
			if tc.state != nil {
				tc.state(s)
			}
			tgt := target
			if tc.target != nil {
				tc.target(&tgt)
			}
			want := baseWant()
			tc.want(want)
			got, err := Compile(s, tgt)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Version) != 16 {
				t.Errorf("version %q: want 16 hex digits", got.Version)
			}
			got.Version = ""
			opts := []cmp.Option{protocmp.Transform()}
			// The precedence cases assert on route order by name only.
			if len(want.Routes) > 0 && want.Routes[0].Resource == nil {
				var names []string
				for _, r := range got.Routes {
					names = append(names, r.Name)
				}
				var wantNames []string
				for _, r := range want.Routes {
					wantNames = append(wantNames, r.Name)
				}
				if diff := cmp.Diff(wantNames, names); diff != "" {
					t.Errorf("route order (-want +got):\n%s", diff)
				}
				got.Routes, want.Routes = nil, nil
				got.Backends, want.Backends = nil, nil
			}
			if diff := cmp.Diff(want, got, opts...); diff != "" {
				t.Errorf("destination (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name   string
		target Target
	}{
		{name: "no such Service", target: Target{Namespace: "shop", Name: "nope", Port: 80}},
		{name: "no such port", target: Target{Namespace: "shop", Name: "web", Port: 81}},
		{name: "Service in another namespace", target: Target{Namespace: "other", Name: "web", Port: 80}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(fixture(), tc.target)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("want ErrNotFound, got %v", err)
			}
		})
	}
}

// TestDeterministic compiles the same state with its objects in many orders and
// requires byte-identical output, and requires a different version when the
// configuration changes.
func TestDeterministic(t *testing.T) {
	build := func() *State {
		s := fixture()
		s.TrafficSplits = []splitv1alpha2.TrafficSplit{split("canary", 0,
			splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 9}, splitv1alpha2.TrafficSplitBackend{Service: "web-v2", Weight: 1})}
		s.HTTPRoutes = []gatewayv1.HTTPRoute{
			httpRoute("shop", "a", 0, web, gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/t")}}},
				gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("web-v3", 80, nil), backendRef("web-v2", 80, nil)}}),
			httpRoute("shop", "b", 0, web, gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/t")}}}),
		}
		return s
	}
	marshal := func(s *State) []byte {
		t.Helper()
		out, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reference := marshal(build())
	reverse := func(s *State) {
		slices.Reverse(s.Services)
		slices.Reverse(s.Pods)
		slices.Reverse(s.EndpointSlices)
		slices.Reverse(s.HTTPRoutes)
		for i := range s.EndpointSlices {
			slices.Reverse(s.EndpointSlices[i].Endpoints)
		}
	}
	rotate := func(s *State, n int) {
		rot := func(l int) int { return n % max(l, 1) }
		s.Services = append(s.Services[rot(len(s.Services)):], s.Services[:rot(len(s.Services))]...)
		s.Pods = append(s.Pods[rot(len(s.Pods)):], s.Pods[:rot(len(s.Pods))]...)
		s.EndpointSlices = append(s.EndpointSlices[rot(len(s.EndpointSlices)):], s.EndpointSlices[:rot(len(s.EndpointSlices))]...)
	}
	for i := range 12 {
		s := build()
		rotate(s, i)
		if i%2 == 1 {
			reverse(s)
		}
		for range 3 { // maps inside Compile iterate in random order each run
			if got := marshal(s); string(got) != string(reference) {
				t.Fatalf("permutation %d compiled to different bytes", i)
			}
		}
	}

	changed := build()
	changed.TrafficSplits[0].Spec.Backends[1].Weight = 2
	a, _ := Compile(build(), Target{Namespace: "shop", Name: "web", Port: 80})
	b, _ := Compile(changed, Target{Namespace: "shop", Name: "web", Port: 80})
	if a.Version == b.Version {
		t.Fatalf("a changed weight kept version %s", a.Version)
	}
}

// TestProfileConditionDepthBound: a condition deeper than MaxConditionDepth (built in
// memory, so validation never saw it) stops the conversion at the bound instead of
// recursing through it, and the route is dropped rather than matching everything.
func TestProfileConditionDepthBound(t *testing.T) {
	deepReq := &meshv1alpha1.RequestMatch{Method: "GET"}
	deepResp := &meshv1alpha1.ResponseMatch{Status: &meshv1alpha1.StatusRange{Min: ptr.To[int32](500)}}
	for range 1_000_000 {
		deepReq = &meshv1alpha1.RequestMatch{Not: deepReq}
		deepResp = &meshv1alpha1.ResponseMatch{Not: deepResp}
	}
	if _, err := requestCondition(deepReq, 1); !errors.Is(err, errConditionTooDeep) {
		t.Errorf("request condition: err = %v, want %v", err, errConditionTooDeep)
	}
	if _, err := responseCondition(deepResp, 1); !errors.Is(err, errConditionTooDeep) {
		t.Errorf("response condition: err = %v, want %v", err, errConditionTooDeep)
	}

	// At the bound exactly, the conversion succeeds.
	atBound := &meshv1alpha1.RequestMatch{Method: "GET"}
	for range meshv1alpha1.MaxConditionDepth - 1 {
		atBound = &meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{*atBound}}
	}
	if _, err := requestCondition(atBound, 1); err != nil {
		t.Errorf("a condition %d levels deep: %v", meshv1alpha1.MaxConditionDepth, err)
	}
	tooDeep := meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{*atBound}}
	if _, err := requestCondition(&tooDeep, 1); !errors.Is(err, errConditionTooDeep) {
		t.Errorf("a condition %d levels deep: err = %v, want %v", meshv1alpha1.MaxConditionDepth+1, err, errConditionTooDeep)
	}

	// An empty condition would compile to an empty all, which matches everything.
	if _, err := requestCondition(&meshv1alpha1.RequestMatch{Not: &meshv1alpha1.RequestMatch{}}, 1); !errors.Is(err, errEmptyCondition) {
		t.Errorf("empty nested condition: err = %v, want %v", err, errEmptyCondition)
	}

	// Compiled directly (profileFor would have refused the profile), the deep route is
	// dropped and the others stay.
	c := &compilation{ix: newIndex(&State{}), svc: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}},
		port: corev1.ServicePort{Port: 80}, profile: &meshv1alpha1.ServiceProfile{Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
			{Name: "deep", Condition: *deepReq},
			{Name: "ok", Condition: meshv1alpha1.RequestMatch{Method: "GET"}},
		}}}}
	routes := c.profileRoutes()
	if len(routes) != 1 || routes[0].GetName() != "ok" {
		t.Errorf("routes = %v, want only ok", routes)
	}
}
