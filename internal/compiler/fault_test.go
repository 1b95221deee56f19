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
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/proxy/api"
)

func httpFault(ns, name string, spec meshv1alpha1.HTTPFaultSpec) meshv1alpha1.HTTPFault {
	return meshv1alpha1.HTTPFault{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func faultRef(name string) gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExtensionRef,
		ExtensionRef: &gatewayv1.LocalObjectReference{Group: "mesh.weft.dev", Kind: "HTTPFault", Name: gatewayv1.ObjectName(name)}}
}

// TestCompileFaults: an ExtensionRef to an HTTPFault becomes the rule's fault filter
// (before its other filters); a missing HTTPFault aborts every request with 500 (gRPC
// INTERNAL); an HTTPFault of another namespace is not the route's; a fault filter on a
// backendRef, or an ExtensionRef to another kind, drops the rule; a ServiceProfile
// route's fault field works the same.
func TestCompileFaults(t *testing.T) {
	chaos := httpFault("shop", "chaos", meshv1alpha1.HTTPFaultSpec{
		Abort: &meshv1alpha1.FaultAbort{HTTPStatus: ptr.To[int32](503), Percentage: 10},
		Delay: &meshv1alpha1.FaultDelay{FixedDelay: "250ms", Percentage: 100},
	})
	other := httpFault("other", "elsewhere", meshv1alpha1.HTTPFaultSpec{Abort: &meshv1alpha1.FaultAbort{GRPCStatus: ptr.To[int32](14), Percentage: 1}})
	wantChaos := &api.Filter{Kind: &api.Filter_Fault{Fault: &api.Fault{Namespace: "shop", Name: "chaos",
		Abort: &api.FaultAbort{HttpStatus: 503, PerMillion: 100_000},
		Delay: &api.FaultDelay{FixedDelay: durationpb.New(250 * time.Millisecond), PerMillion: 1_000_000}}}}
	missing := func(name string) *api.Filter {
		return &api.Filter{Kind: &api.Filter_Fault{Fault: &api.Fault{Namespace: "shop", Name: name,
			Abort: &api.FaultAbort{HttpStatus: 500, GrpcStatus: 13, PerMillion: 1_000_000}}}}
	}
	header := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Chaos", Value: "1"}}}}
	wantHeader := &api.Filter{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{
		Set: []*api.Header{{Name: "X-Chaos", Value: "1"}}}}}

	s := fixture()
	s.HTTPFaults = []meshv1alpha1.HTTPFault{chaos, other}
	s.HTTPRoutes = []gatewayv1.HTTPRoute{httpRoute("shop", "r", 0, web,
		gatewayv1.HTTPRouteRule{Name: ptr.To[gatewayv1.SectionName]("faulty"), Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/a")}},
			Filters: []gatewayv1.HTTPRouteFilter{header, faultRef("chaos")}},
		gatewayv1.HTTPRouteRule{Name: ptr.To[gatewayv1.SectionName]("missing"), Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/b")}},
			Filters: []gatewayv1.HTTPRouteFilter{faultRef("gone")}},
		gatewayv1.HTTPRouteRule{Name: ptr.To[gatewayv1.SectionName]("other-namespace"), Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/c")}},
			Filters: []gatewayv1.HTTPRouteFilter{faultRef("elsewhere")}},
		gatewayv1.HTTPRouteRule{Name: ptr.To[gatewayv1.SectionName]("on-backend"), Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/d")}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: backendRef("web", 80, nil).BackendRef,
				Filters: []gatewayv1.HTTPRouteFilter{faultRef("chaos")}}}},
		gatewayv1.HTTPRouteRule{Name: ptr.To[gatewayv1.SectionName]("unknown-kind"), Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/e")}},
			Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef,
				ExtensionRef: &gatewayv1.LocalObjectReference{Group: "example.com", Kind: "Chaos", Name: "x"}}}},
	)}
	out, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]*api.Filter{}
	for _, r := range out.Routes {
		got[r.Name] = r.Filters
	}
	want := map[string][]*api.Filter{
		"r/faulty":          {wantChaos, wantHeader},
		"r/missing":         {missing("gone")},
		"r/other-namespace": {missing("elsewhere")},
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("route filters (-want +got):\n%s", d)
	}
	if p := HTTPRuleProblem(s.HTTPRoutes[0].Spec.Rules[3]); p != "backendRef web: an HTTPFault ExtensionRef filter applies to a rule, not to a backendRef; move it to the rule's filters" {
		t.Errorf("backendRef fault problem %q", p)
	}

	t.Run("ServiceProfile route", func(t *testing.T) {
		s := fixture()
		s.HTTPFaults = []meshv1alpha1.HTTPFault{chaos}
		s.ServiceProfiles = []meshv1alpha1.ServiceProfile{profile("shop", meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
			{Name: "chaotic", Condition: meshv1alpha1.RequestMatch{Method: "GET"}, Fault: "chaos"},
			{Name: "gone", Condition: meshv1alpha1.RequestMatch{Method: "POST"}, Fault: "gone"},
			{Name: "plain", Condition: meshv1alpha1.RequestMatch{Method: "PUT"}},
		}})}
		out, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]*api.Filter{}
		for _, r := range out.Routes {
			got[r.Name] = r.Filters
		}
		want := map[string][]*api.Filter{"chaotic": {wantChaos}, "gone": {missing("gone")}, "plain": nil}
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			t.Errorf("profile route filters (-want +got):\n%s", d)
		}
	})

	t.Run("the version follows the HTTPFault", func(t *testing.T) {
		before := out.Version
		s.HTTPFaults[0].Spec.Abort.Percentage = 20
		after, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		if after.Version == before {
			t.Errorf("version %s did not change with the HTTPFault", before)
		}
	})
}
