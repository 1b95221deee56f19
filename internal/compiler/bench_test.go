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
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// bigState is the scale issue 5 benchmarks the destination service at: 1,000
// Services with 10 meshed endpoints each, every tenth Service with an HTTPRoute.
func bigState() (*State, []Target) {
	s := &State{}
	var targets []Target
	for i := range 1000 {
		name := fmt.Sprintf("svc-%04d", i)
		s.Services = append(s.Services, svc(name, []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250)}, sport("http", 80, 8080, nil)))
		var eps []ep
		for j := range 10 {
			podName := fmt.Sprintf("%s-%d", name, j)
			eps = append(eps, ep{addr: fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, j), pod: podName, zone: "z1"})
			s.Pods = append(s.Pods, pod(podName, name, true, nil))
		}
		s.EndpointSlices = append(s.EndpointSlices, slice(name+"-a", name, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{eport("http", 8080, nil)}, eps...))
		if i%10 == 0 {
			s.HTTPRoutes = append(s.HTTPRoutes, httpRoute("shop", name, 0, []gatewayv1.ParentReference{serviceParent(name, nil, nil)},
				gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: prefix("/api"), Method: ptr.To(gatewayv1.HTTPMethodGet)}}},
				gatewayv1.HTTPRouteRule{}))
		}
		targets = append(targets, Target{Namespace: "shop", Name: name, Port: 80})
	}
	return s, targets
}

// BenchmarkCompileAll indexes the state once and compiles every destination: the cost
// of recomputing the whole mesh after a change.
func BenchmarkCompileAll(b *testing.B) {
	s, targets := bigState()
	b.ReportAllocs()
	for b.Loop() {
		c := New(s)
		for _, t := range targets {
			if _, err := c.Compile(t); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompileOne compiles one destination on an indexed state: the cost of
// recomputing one Service after its EndpointSlice changed.
func BenchmarkCompileOne(b *testing.B) {
	s, targets := bigState()
	c := New(s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Compile(targets[500]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCompilerMatchesCompile: a Compiler reused across targets gives what Compile
// gives target by target.
func TestCompilerMatchesCompile(t *testing.T) {
	s, targets := bigState()
	c := New(s)
	for _, tgt := range targets[:50] {
		a, err := c.Compile(tgt)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Compile(s, tgt)
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != b.Version || len(a.Backends) != 1 || len(a.Backends[0].Endpoints) != 10 {
			t.Fatalf("%s: versions %s and %s, backends %v", tgt.Name, a.Version, b.Version, a.Backends)
		}
	}
}
