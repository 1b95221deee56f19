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

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/proxy/api"
)

// zoneState: Service api (port 80 -> 8080) whose slice has endpoints in zone-a
// (one hinted for zone-a and zone-b, with a duplicate and an empty hint), zone-b
// (hinted for zone-c), and one with neither zone nor hints.
func zoneState(mutate func(*corev1.Service)) *State {
	s := svc("api", []string{"10.96.0.50"}, sport("http", 80, 8080, nil))
	mutate(&s)
	es := slice("api-a", "api", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		ep{addr: "10.2.0.1", zone: "zone-a"}, ep{addr: "10.2.0.2", zone: "zone-a"},
		ep{addr: "10.2.0.3", zone: "zone-b"}, ep{addr: "10.2.0.4"})
	es.Endpoints[1].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-b"}, {Name: ""}, {Name: "zone-a"}, {Name: "zone-b"}}}
	es.Endpoints[2].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-c"}}}
	return &State{Services: []corev1.Service{s}, EndpointSlices: []discoveryv1.EndpointSlice{es}}
}

func TestZonePreference(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Service)
		// want is each endpoint's for_zones, by address.
		want map[string][]string
	}{{
		name:   "no preference",
		mutate: func(*corev1.Service) {},
	}, {
		name: "PreferClose: hints, else the endpoint's own zone",
		mutate: func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
		},
		want: map[string][]string{"10.2.0.1": {"zone-a"}, "10.2.0.2": {"zone-a", "zone-b"}, "10.2.0.3": {"zone-c"}},
	}, {
		name: "PreferSameZone",
		mutate: func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferSameZone)
		},
		want: map[string][]string{"10.2.0.1": {"zone-a"}, "10.2.0.2": {"zone-a", "zone-b"}, "10.2.0.3": {"zone-c"}},
	}, {
		name: "PreferSameNode balances by zone",
		mutate: func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferSameNode)
		},
		want: map[string][]string{"10.2.0.1": {"zone-a"}, "10.2.0.2": {"zone-a", "zone-b"}, "10.2.0.3": {"zone-c"}},
	}, {
		name:   "an unknown trafficDistribution prefers nothing",
		mutate: func(s *corev1.Service) { s.Spec.TrafficDistribution = ptr.To("PreferMars") },
	}, {
		name: "topology-mode Auto: hints only",
		mutate: func(s *corev1.Service) {
			s.Annotations = map[string]string{corev1.AnnotationTopologyMode: "Auto"}
		},
		want: map[string][]string{"10.2.0.2": {"zone-a", "zone-b"}, "10.2.0.3": {"zone-c"}},
	}, {
		name: "the deprecated topology-aware-hints annotation, lower case",
		mutate: func(s *corev1.Service) {
			s.Annotations = map[string]string{corev1.DeprecatedAnnotationTopologyAwareHints: "auto"}
		},
		want: map[string][]string{"10.2.0.2": {"zone-a", "zone-b"}, "10.2.0.3": {"zone-c"}},
	}, {
		name: "topology-mode Disabled",
		mutate: func(s *corev1.Service) {
			s.Annotations = map[string]string{corev1.AnnotationTopologyMode: "Disabled"}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Compile(zoneState(tc.mutate), Target{Namespace: "shop", Name: "api", Port: 80})
			if err != nil {
				t.Fatal(err)
			}
			eps := cfg.GetBackends()[0].GetEndpoints()
			if len(eps) != 4 {
				t.Fatalf("%d endpoints, want 4", len(eps))
			}
			for _, e := range eps {
				if got, want := fmt.Sprint(e.GetForZones()), fmt.Sprint(tc.want[e.Address]); got != want {
					t.Errorf("%s: for_zones %s, want %s", e.Address, got, want)
				}
			}
			if got, want := PrefersZone(cfg), tc.want != nil; got != want {
				t.Errorf("PrefersZone() = %v, want %v", got, want)
			}
		})
	}
}

func TestWithClientZone(t *testing.T) {
	prefer := func(s *corev1.Service) {
		s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
	}
	cfg, err := Compile(zoneState(prefer), Target{Namespace: "shop", Name: "api", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	zoned, err := WithClientZone(cfg, "zone-a")
	if err != nil {
		t.Fatal(err)
	}
	if zoned == cfg || zoned.ClientZone != "zone-a" || cfg.ClientZone != "" {
		t.Fatalf("WithClientZone modified its input or did not copy: in %q, out %q", cfg.ClientZone, zoned.ClientZone)
	}
	if zoned.Version == cfg.Version {
		t.Error("the zoned copy kept the version of the unzoned configuration")
	}
	// An endpoint delta between two zoned versions is still a delta.
	next, _ := Compile(zoneState(prefer), Target{Namespace: "shop", Name: "api", Port: 80})
	next.Backends[0].Endpoints = next.Backends[0].Endpoints[1:]
	if err := setVersion(next); err != nil {
		t.Fatal(err)
	}
	nextZoned, _ := WithClientZone(next, "zone-a")
	if m := Update(zoned, nextZoned); m.GetEndpoints() == nil {
		t.Errorf("want an endpoint delta between zoned versions, got %v", m)
	}

	for name, in := range map[string]struct {
		cfg  *api.DestinationConfig
		zone string
	}{
		"no zone":       {cfg, ""},
		"no preference": {mustCompile(t, zoneState(func(*corev1.Service) {})), "zone-a"},
	} {
		out, err := WithClientZone(in.cfg, in.zone)
		if err != nil || out != in.cfg {
			t.Errorf("%s: WithClientZone returned a copy (%v), want its input", name, err)
		}
	}
}

func mustCompile(t *testing.T, s *State) *api.DestinationConfig {
	t.Helper()
	cfg, err := Compile(s, Target{Namespace: "shop", Name: "api", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
