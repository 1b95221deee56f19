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
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/proxy/api"
)

// podFixture is the fixture with the pods' addresses filled in, a StatefulSet pod
// db-0 (hostname db-0, subdomain db, meshed, outside any Service's slices) and a
// Service other whose slice says web-1's port 8080 speaks h2c (disagreeing with web's
// slices, which declare nothing).
func podFixture() *State {
	s := fixture()
	ips := map[string][]string{"web-1": {"10.0.0.2"}, "web-2": {"10.0.0.10"}, "web-3": {"fd00::2"}, "web-4": {"10.0.0.3"}}
	for i := range s.Pods {
		for _, ip := range ips[s.Pods[i].Name] {
			s.Pods[i].Status.PodIPs = append(s.Pods[i].Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	db := pod("db-0", "db", true, nil)
	db.Spec.Hostname, db.Spec.Subdomain = "db-0", "db"
	db.Status.PodIP = "10.0.5.1"
	s.Pods = append(s.Pods, db)
	return s
}

func podWant(name, addr string, port uint32, id string, proxyPort uint32, hint api.ProtocolHint) *api.DestinationConfig {
	ap := netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port)).String()
	key := fmt.Sprintf("shop/%s:%d", name, port)
	return &api.DestinationConfig{
		Pod:       &api.PodRef{Namespace: "shop", Name: name},
		Addresses: []string{ap},
		Protocol:  hint,
		Fallback: &api.Route{Name: "default", Resource: &api.ResourceRef{Kind: "Pod", Namespace: "shop", Name: name},
			Backends: []*api.WeightedBackend{wb(key, 1)}},
		RetryBudget: defaultBudget(),
		Backends: []*api.Backend{{Key: key, Authority: ap, Protocol: hint, Endpoints: []*api.Endpoint{
			{Address: addr, Port: port, Identity: id, ProxyPort: proxyPort, Protocol: hint, Pod: name, MetricLabels: podLabels(name)}}}},
	}
}

// podLabels are the metric labels of the fixture's pod name as a pod-IP endpoint: no
// Service.
func podLabels(name string) []*api.Label {
	s := podFixture()
	for i := range s.Pods {
		if p := &s.Pods[i]; p.Name == name {
			return endpointMetricLabels(nil, nil, p.Namespace, p.Name, p)
		}
	}
	return nil
}

func TestCompilePod(t *testing.T) {
	const webID = "spiffe://cluster.local/ns/shop/sa/web"
	cases := []struct {
		name   string
		state  func(s *State)
		target Target
		want   func() *api.DestinationConfig
	}{
		{
			name:   "meshed pod: its identity and proxy port, no routes, fallback to the pod",
			target: Target{Pod: "shop/web-1", PodIP: netip.MustParseAddr("10.0.0.2"), Port: 8080},
			want:   func() *api.DestinationConfig { return podWant("web-1", "10.0.0.2", 8080, webID, 4143, 0) },
		},
		{
			name:   "unmeshed pod: no identity, so the proxy may speak plaintext to it",
			target: Target{Pod: "shop/web-2", PodIP: netip.MustParseAddr("10.0.0.10"), Port: 8080},
			want:   func() *api.DestinationConfig { return podWant("web-2", "10.0.0.10", 8080, "", 0, 0) },
		},
		{
			name:   "IPv6 pod with its own proxy port; the port's hint from the Service port it backs",
			target: Target{Pod: "shop/web-3", PodIP: netip.MustParseAddr("fd00::2"), Port: 9090},
			want: func() *api.DestinationConfig {
				return podWant("web-3", "fd00::2", 9090, webID, 4243, api.ProtocolHint_PROTOCOL_HINT_GRPC)
			},
		},
		{
			name:   "the Mesh's opaque port is opaque on a pod too",
			target: Target{Pod: "shop/web-1", PodIP: netip.MustParseAddr("10.0.0.2"), Port: 3306},
			want: func() *api.DestinationConfig {
				return podWant("web-1", "10.0.0.2", 3306, webID, 4143, api.ProtocolHint_PROTOCOL_HINT_OPAQUE)
			},
		},
		{
			name: "Services that disagree on a port's protocol leave it to detection",
			state: func(s *State) {
				s.EndpointSlices = append(s.EndpointSlices, slice("other-a", "other", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{eport("grpc", 9090, ptr.To("kubernetes.io/h2c"))}, ep{addr: "fd00::2", pod: "web-3"}))
			},
			target: Target{Pod: "shop/web-3", PodIP: netip.MustParseAddr("fd00::2"), Port: 9090},
			want:   func() *api.DestinationConfig { return podWant("web-3", "fd00::2", 9090, webID, 4243, 0) },
		},
		{
			name:   "StatefulSet pod: its DNS name is an authority of the destination",
			target: Target{Pod: "shop/db-0", PodIP: netip.MustParseAddr("10.0.5.1"), Port: 5432},
			want: func() *api.DestinationConfig {
				w := podWant("db-0", "10.0.5.1", 5432, "spiffe://cluster.local/ns/shop/sa/db", 4143, 0)
				w.Authorities = []string{"db-0.db.shop.svc.cluster.local:5432"}
				return w
			},
		},
		{
			name:   "an address the pod does not have is not found",
			target: Target{Pod: "shop/web-1", PodIP: netip.MustParseAddr("10.0.0.99"), Port: 8080},
		},
		{
			name:   "a pod that is gone is not found",
			target: Target{Pod: "shop/nope", PodIP: netip.MustParseAddr("10.0.0.2"), Port: 8080},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := podFixture()
			if tc.state != nil {
				tc.state(s)
			}
			got, err := Compile(s, tc.target)
			if tc.want == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Compile = %v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version == "" {
				t.Error("no version")
			}
			if d := cmp.Diff(tc.want(), got, protocmp.Transform(), protocmp.IgnoreFields(&api.DestinationConfig{}, "version")); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestCompileExternalName(t *testing.T) {
	external := func(name, externalName string, ports ...corev1.ServicePort) corev1.Service {
		s := svc(name, nil, ports...)
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, externalName
		return s
	}
	cases := []struct {
		name   string
		svc    corev1.Service
		target Target
		want   *api.DestinationConfig // nil: not found
	}{
		{
			name:   "forwards to the external name, plaintext, no endpoints",
			svc:    external("ext", "API.Example.com.", sport("https", 443, 443, nil), sport("http", 80, 80, ptr.To("http"))),
			target: Target{Namespace: "shop", Name: "ext", Port: 80},
			want: &api.DestinationConfig{
				Service:      &api.ServiceRef{Namespace: "shop", Name: "ext", Port: 80},
				Authorities:  []string{"ext.shop.svc.cluster.local:80"},
				Protocol:     api.ProtocolHint_PROTOCOL_HINT_HTTP1,
				RetryBudget:  defaultBudget(),
				ExternalName: "api.example.com",
			},
		},
		{
			name:   "a port the Service does not declare is not found",
			svc:    external("ext", "api.example.com", sport("https", 443, 443, nil)),
			target: Target{Namespace: "shop", Name: "ext", Port: 80},
		},
		{
			name:   "an alias of an in-cluster Service is that Service, with its identities",
			svc:    external("alias", "web.shop.svc.cluster.local", sport("http", 80, 80, nil)),
			target: Target{Namespace: "shop", Name: "alias", Port: 80},
			want: func() *api.DestinationConfig {
				w := baseWant()
				w.Authorities = append([]string{"alias.shop.svc.cluster.local:80"}, w.Authorities...)
				return w
			}(),
		},
		{
			name:   "an alias of an in-cluster name that is no Service is not found, never plaintext to it",
			svc:    external("alias", "nope.shop.svc.cluster.local", sport("http", 80, 80, nil)),
			target: Target{Namespace: "shop", Name: "alias", Port: 80},
		},
		{
			name:   "an alias of an alias is not followed",
			svc:    external("alias", "ext2.shop.svc.cluster.local", sport("http", 80, 80, nil)),
			target: Target{Namespace: "shop", Name: "alias", Port: 80},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture()
			s.Services = append(s.Services, tc.svc, external("ext2", "example.org", sport("http", 80, 80, nil)))
			got, err := Compile(s, tc.target)
			if tc.want == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Compile = %v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, protocmp.Transform(), protocmp.IgnoreFields(&api.DestinationConfig{}, "version")); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
