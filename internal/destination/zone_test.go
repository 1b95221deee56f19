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

package destination

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/proxy/api"
)

// zoneYAML: a node in zone-a; client pods on it (SA default, and SA other); a Service
// web with trafficDistribution PreferClose whose endpoints sit in zone-a (one hinted
// for zone-b as well) and zone-b; a Service plain with endpoints in both zones and no
// preference.
const zoneYAML = `
apiVersion: v1
kind: Node
metadata: {name: %[1]s, labels: {topology.kubernetes.io/zone: zone-a}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: %[2]s, name: client}
spec:
  nodeName: %[1]s
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: %[2]s, name: impostor}
spec:
  nodeName: %[1]s
  serviceAccountName: other
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
---
apiVersion: v1
kind: Service
metadata: {namespace: %[2]s, name: web}
spec:
  trafficDistribution: PreferClose
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %[2]s, name: web-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.9.0.1]
  zone: zone-a
- addresses: [10.9.0.2]
  zone: zone-a
  hints: {forZones: [{name: zone-b}, {name: zone-a}]}
- addresses: [10.9.0.3]
  zone: zone-b
---
apiVersion: v1
kind: Service
metadata: {namespace: %[2]s, name: plain}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %[2]s, name: plain-a, labels: {kubernetes.io/service-name: plain}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.9.1.1]
  zone: zone-a
- addresses: [10.9.1.2]
  zone: zone-b
`

// fromAddr dials from a local address: the connection's source is the address the
// destination service looks the client's pod up by.
func fromAddr(ip string) grpc.DialOption {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
}

// TestClientZone: the client's zone (its pod's node's topology label, the pod found by
// the connection's source address and checked against the client certificate)
// reaches the proxy with the endpoints' zone preferences of a PreferClose Service;
// destinations without a preference stay one configuration for every client.
func TestClientZone(t *testing.T) {
	ns := namespace(t, "zone")
	node := fmt.Sprintf("zone-node-%d", nsCounter.Add(1))
	apply(t, fmt.Sprintf(zoneYAML, node, ns))
	// Loopback addresses stand in for pod IPs: the test's client can send from them.
	clientIP, impostorIP := "127.0.0.77", "127.0.0.78"
	setPodStatus(t, ns, "client", clientIP, "Running")
	setPodStatus(t, ns, "impostor", impostorIP, "Running")

	get := func(t *testing.T, from string, req *api.GetDestination) *api.DestinationConfig {
		t.Helper()
		var opts []grpc.DialOption
		if from != "" {
			opts = append(opts, fromAddr(from))
		}
		s := subscribe(t, conn(t, ns, opts...), req)
		defer s.cancel()
		return s.next(t, 5*time.Second).GetSnapshot()
	}
	// The informers may not have the pods' addresses yet: wait for the zone.
	deadline := time.Now().Add(10 * time.Second)
	var cfg *api.DestinationConfig
	for {
		cfg = get(t, clientIP, authority("web", ns, 80))
		if cfg.GetClientZone() != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := cfg.GetClientZone(); got != "zone-a" {
		t.Fatalf("client_zone %q, want zone-a", got)
	}
	want := map[string][]string{"10.9.0.1": {"zone-a"}, "10.9.0.2": {"zone-a", "zone-b"}, "10.9.0.3": {"zone-b"}}
	for _, e := range backend(t, cfg, ns+"/web:80").GetEndpoints() {
		if got := e.GetForZones(); fmt.Sprint(got) != fmt.Sprint(want[e.Address]) {
			t.Errorf("endpoint %s for_zones %v, want %v", e.Address, got, want[e.Address])
		}
	}

	// Another source (no pod has 127.0.0.1) gets no zone: a version of its own.
	anon := get(t, "", authority("web", ns, 80))
	if anon.GetClientZone() != "" || anon.GetVersion() == cfg.GetVersion() {
		t.Errorf("a client without a pod: client_zone %q, version %s (zoned %s)", anon.GetClientZone(), anon.GetVersion(), cfg.GetVersion())
	}
	// A pod whose ServiceAccount is not the certificate's gets no zone.
	if z := get(t, impostorIP, authority("web", ns, 80)).GetClientZone(); z != "" {
		t.Errorf("the certificate's identity is not the pod's, yet client_zone %q", z)
	}
	// No preference: the same configuration, without a zone, for every client.
	plain := get(t, clientIP, authority("plain", ns, 80))
	plainAnon := get(t, "", authority("plain", ns, 80))
	if plain.GetClientZone() != "" || plain.GetVersion() != plainAnon.GetVersion() {
		t.Errorf("no preference: client_zone %q, versions %s and %s", plain.GetClientZone(), plain.GetVersion(), plainAnon.GetVersion())
	}
	for _, e := range backend(t, plain, ns+"/plain:80").GetEndpoints() {
		if len(e.GetForZones()) != 0 {
			t.Errorf("no preference, yet endpoint %s for_zones %v", e.Address, e.GetForZones())
		}
	}

	// Switched on by the topology-mode annotation (metadata: no generation moves)
	// once the slice has hints, the stream gets the zone; switched off, it loses it.
	s := subscribe(t, conn(t, ns, fromAddr(clientIP)), authority("plain", ns, 80))
	s.next(t, 5*time.Second)
	apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: plain-a, labels: {kubernetes.io/service-name: plain}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.9.1.1]
  zone: zone-a
  hints: {forZones: [{name: zone-a}]}
- addresses: [10.9.1.2]
  zone: zone-b
  hints: {forZones: [{name: zone-b}]}
`, ns))
	// Hints alone change nothing the proxy is told.
	s.none(t, time.Second)
	setMode := func(mode string) {
		apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {namespace: %s, name: plain, annotations: {service.kubernetes.io/topology-mode: %s}}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
`, ns, mode))
	}
	setMode("Auto")
	s.next(t, 5*time.Second)
	if s.cfg.GetClientZone() != "zone-a" || len(backend(t, s.cfg, ns+"/plain:80").GetEndpoints()[0].GetForZones()) != 1 {
		t.Errorf("topology-mode Auto: client_zone %q, endpoints %v", s.cfg.GetClientZone(), backend(t, s.cfg, ns+"/plain:80").GetEndpoints())
	}
	setMode("Disabled")
	s.next(t, 5*time.Second)
	if s.cfg.GetClientZone() != "" {
		t.Errorf("topology-mode Disabled: client_zone %q", s.cfg.GetClientZone())
	}

	// A client whose node gets its zone label after the stream opened: the next
	// change of the destination carries the zone.
	late := node + "-late"
	apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Node
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Pod
metadata: {namespace: %[2]s, name: late}
spec:
  nodeName: %[1]s
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
`, late, ns))
	setPodStatus(t, ns, "late", "127.0.0.79", "Running")
	ls := subscribe(t, conn(t, ns, fromAddr("127.0.0.79")), authority("web", ns, 80))
	if z := ls.next(t, 5*time.Second).GetSnapshot().GetClientZone(); z != "" {
		t.Fatalf("a node without a zone label gave client_zone %q", z)
	}
	apply(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {topology.kubernetes.io/zone: zone-b}}\n", late))
	ls.none(t, time.Second) // a label alone sends nothing
	apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: web-b, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.9.0.4], zone: zone-b}]
`, ns))
	m := ls.next(t, 5*time.Second)
	if m.GetSnapshot() == nil || ls.cfg.GetClientZone() != "zone-b" {
		t.Errorf("after the node's label and an endpoint change: client_zone %q, message %v", ls.cfg.GetClientZone(), m)
	}
}
