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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/proxy/api"
)

func TestUpdate(t *testing.T) {
	withSplit := func(s *State) {
		s.TrafficSplits = []splitv1alpha2.TrafficSplit{split("canary", 0,
			splitv1alpha2.TrafficSplitBackend{Service: "web", Weight: 9}, splitv1alpha2.TrafficSplitBackend{Service: "web-v2", Weight: 1})}
	}
	cases := []struct {
		name string
		// prev and next change the fixture; a nil prev means no previous snapshot.
		prev, next func(s *State)
		noPrev     bool
		// want: "none", "snapshot", or an endpoint delta.
		kind  string
		delta *api.EndpointDelta
	}{
		{name: "first message is a snapshot", noPrev: true, kind: "snapshot"},
		{name: "nothing changed", kind: "none"},
		{name: "an endpoint becomes ready", kind: "delta",
			next: func(s *State) { s.EndpointSlices[0].Endpoints[2].Conditions.Ready = ptr.To(true) },
			delta: &api.EndpointDelta{Backend: "shop/web:80", Add: []*api.Endpoint{
				{Address: "10.0.0.3", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/web", ProxyPort: 4143, Pod: "web-4",
					MetricLabels: mlabels("web", "web-4", "web")}}}},
		{name: "an endpoint goes away", kind: "delta",
			next:  func(s *State) { s.EndpointSlices[1].Endpoints = nil },
			delta: &api.EndpointDelta{Backend: "shop/web:80", Remove: []*api.EndpointAddress{{Address: "fd00::2", Port: 8080}}}},
		{name: "an endpoint changes zone and another goes away", kind: "delta",
			next: func(s *State) {
				s.EndpointSlices[0].Endpoints[0].Zone = ptr.To("z9")
				s.EndpointSlices[1].Endpoints = nil
			},
			delta: &api.EndpointDelta{Backend: "shop/web:80",
				Add:    []*api.Endpoint{{Address: "10.0.0.10", Port: 8080, Zone: "z9", Pod: "web-2", MetricLabels: mlabels("web", "web-2", "web")}},
				Remove: []*api.EndpointAddress{{Address: "fd00::2", Port: 8080}}}},
		{name: "one backend of a split changes", kind: "delta", prev: withSplit,
			next: func(s *State) {
				withSplit(s)
				s.EndpointSlices = append(s.EndpointSlices, slice("web-v2-b", "web-v2", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{eport("http", 8080, nil)}, ep{addr: "10.0.1.9"}))
			},
			delta: &api.EndpointDelta{Backend: "shop/web-v2:80", Add: []*api.Endpoint{{Address: "10.0.1.9", Port: 8080, MetricLabels: mlabels("web-v2", "", "")}}}},
		{name: "two backends change at once", kind: "snapshot", prev: withSplit,
			next: func(s *State) {
				withSplit(s)
				s.EndpointSlices[1].Endpoints = nil
				s.EndpointSlices = append(s.EndpointSlices, slice("web-v2-b", "web-v2", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{eport("http", 8080, nil)}, ep{addr: "10.0.1.9"}))
			}},
		{name: "weights change", kind: "snapshot", prev: withSplit,
			next: func(s *State) { withSplit(s); s.TrafficSplits[0].Spec.Backends[1].Weight = 2 }},
		{name: "a backend appears", kind: "snapshot", next: withSplit},
		{name: "endpoints and routes change together", kind: "snapshot",
			next: func(s *State) {
				s.EndpointSlices[1].Endpoints = nil
				s.OpaquePorts = append(s.OpaquePorts, 80)
			}},
	}
	target := Target{Namespace: "shop", Name: "web", Port: 80}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			compile := func(f func(*State)) *api.DestinationConfig {
				s := fixture()
				if f != nil {
					f(s)
				}
				c, err := Compile(s, target)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			var prev *api.DestinationConfig
			if !tc.noPrev {
				prev = compile(tc.prev)
			}
			next := compile(tc.next)
			u := Update(prev, next)
			switch tc.kind {
			case "none":
				if u != nil {
					t.Fatalf("want no update, got %v", u)
				}
			case "snapshot":
				if !proto.Equal(u.GetSnapshot(), next) {
					t.Fatalf("want the next snapshot, got %v", u)
				}
			case "delta":
				d := u.GetEndpoints()
				if d == nil {
					t.Fatalf("want an endpoint delta, got %v", u)
				}
				tc.delta.Version = next.Version
				if diff := cmp.Diff(tc.delta, d, protocmp.Transform()); diff != "" {
					t.Fatalf("delta (-want +got):\n%s", diff)
				}
				// Applying the delta to prev must give next.
				if got := apply(prev, d); !proto.Equal(got, next) {
					t.Fatalf("prev + delta != next:\n%s", cmp.Diff(next, got, protocmp.Transform()))
				}
			}
		})
	}
}

// apply is what a proxy does with a delta, written independently of Update, so the
// test checks that the delta carries everything.
func apply(prev *api.DestinationConfig, d *api.EndpointDelta) *api.DestinationConfig {
	out := proto.CloneOf(prev)
	out.Version = d.Version
	for _, b := range out.Backends {
		if b.Key != d.Backend {
			continue
		}
		var kept []*api.Endpoint
		for _, e := range b.Endpoints {
			gone := false
			for _, r := range d.Remove {
				gone = gone || (r.Address == e.Address && r.Port == e.Port)
			}
			for _, a := range d.Add {
				gone = gone || (a.Address == e.Address && a.Port == e.Port)
			}
			if !gone {
				kept = append(kept, e)
			}
		}
		b.Endpoints = append(kept, d.Add...)
		// The snapshot's order: by address, then port.
		sortEndpoints(b.Endpoints)
	}
	return out
}
