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
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/proxy/api"
)

var podNetCounter atomic.Int32

// podNet returns a /24 prefix ("10.3.N.") no other test of the suite uses for pod IPs.
func podNet() string { return fmt.Sprintf("10.3.%d.", podNetCounter.Add(1)) }

// statefulYAML: a headless Service db with a StatefulSet-like meshed pod db-0
// (hostname db-0, subdomain db, controlled by StatefulSet db) behind it, an unmeshed
// pod plain-0, and an
// ExternalName Service ext.
const statefulYAML = `
apiVersion: v1
kind: Service
metadata: {namespace: %[1]s, name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 7070, targetPort: 7070, appProtocol: kubernetes.io/h2c}]
---
apiVersion: v1
kind: Pod
metadata:
  namespace: %[1]s
  name: db-0
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: 6b0b7c1e-0000-4000-8000-000000000001, controller: true}]
spec:
  serviceAccountName: db
  hostname: db-0
  subdomain: db
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: %[1]s, name: plain-0}
spec:
  containers: [{name: app, image: app:dev}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  namespace: %[1]s
  name: db-a
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 7070, appProtocol: kubernetes.io/h2c}]
endpoints:
- addresses: [%[2]s1]
  targetRef: {kind: Pod, namespace: %[1]s, name: db-0}
---
apiVersion: v1
kind: Service
metadata: {namespace: %[1]s, name: ext}
spec:
  type: ExternalName
  externalName: api.example.com
  ports: [{name: http, port: 80, appProtocol: http}]
`

// setPodStatus writes a pod's IP and phase, as the kubelet would.
func setPodStatus(t *testing.T, ns, name, ip string, phase corev1.PodPhase) {
	t.Helper()
	p := &corev1.Pod{}
	if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = phase
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if err := suite.client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func addrTarget(a string) *api.GetDestination {
	return &api.GetDestination{Target: &api.GetDestination_Address{Address: a}}
}

// TestPodTargets: a pod's own address (what a headless Service's or a StatefulSet
// pod's DNS name resolves to) is a destination with that pod's identity, by address
// and by the pod's DNS name, pushed when the pod gets its address and withdrawn when
// it finishes; an unmeshed pod's has no identity.
func TestPodTargets(t *testing.T) {
	ns := namespace(t, "pods")
	net := podNet()
	apply(t, fmt.Sprintf(statefulYAML, ns, net))
	c := conn(t, ns)

	// Subscribed before the pod has an address: not found, then pushed.
	byAddr := subscribe(t, c, addrTarget(net+"1:7070"))
	if m := byAddr.next(t, 5*time.Second); m.GetNotFound() == nil {
		t.Fatalf("want not_found before the pod has its IP, got %v", m)
	}
	setPodStatus(t, ns, "db-0", net+"1", corev1.PodRunning)
	snap := byAddr.next(t, within).GetSnapshot()
	if snap == nil {
		t.Fatalf("want a snapshot once the pod has its IP, got %v", byAddr.cfg)
	}
	wantEp := &api.Endpoint{Address: net + "1", Port: 7070, Identity: "spiffe://cluster.local/ns/" + ns + "/sa/db", ProxyPort: 4143,
		Protocol: api.ProtocolHint_PROTOCOL_HINT_H2C, Pod: "db-0",
		// The pod's controller survives the informer's slimming (slimPod).
		MetricLabels: []*api.Label{{Name: "dst_namespace", Value: ns}, {Name: "dst_pod", Value: "db-0"},
			{Name: "dst_serviceaccount", Value: "db"}, {Name: "dst_statefulset", Value: "db"}}}
	check := func(t *testing.T, cfg *api.DestinationConfig) {
		t.Helper()
		if cfg.GetPod().GetName() != "db-0" || cfg.GetPod().GetNamespace() != ns || cfg.GetService() != nil {
			t.Errorf("pod %v service %v, want pod %s/db-0 and no Service", cfg.GetPod(), cfg.GetService(), ns)
		}
		if cfg.GetProtocol() != api.ProtocolHint_PROTOCOL_HINT_H2C {
			t.Errorf("protocol %v, want h2c from the headless Service's port", cfg.GetProtocol())
		}
		if len(cfg.GetRoutes()) != 0 || len(cfg.GetFallback().GetBackends()) != 1 || len(cfg.GetBackends()) != 1 {
			t.Fatalf("want no routes and a fallback to one backend, got %v", cfg)
		}
		if eps := cfg.Backends[0].Endpoints; len(eps) != 1 || !proto.Equal(eps[0], wantEp) {
			t.Errorf("endpoints %v, want [%v]", eps, wantEp)
		}
	}
	check(t, byAddr.cfg)

	t.Run("by the StatefulSet pod's DNS name", func(t *testing.T) {
		for _, a := range []string{"db-0.db." + ns + ".svc.cluster.local:7070", "db-0.db." + ns + ".svc:7070"} {
			s := subscribe(t, c, &api.GetDestination{Target: &api.GetDestination_Authority{Authority: a}})
			if s.next(t, 5*time.Second).GetSnapshot() == nil {
				t.Fatalf("%s: want a snapshot, got %v", a, s.cfg)
			}
			check(t, s.cfg)
			s.cancel()
		}
	})

	t.Run("a pod DNS name no pod has is not found, until one has it", func(t *testing.T) {
		s := subscribe(t, c, &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "db-1.db." + ns + ".svc.cluster.local:7070"}})
		if m := s.next(t, 5*time.Second); m.GetNotFound() == nil {
			t.Fatalf("want not_found, got %v", m)
		}
		apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {namespace: %s, name: db-1}
spec:
  hostname: db-1
  subdomain: db
  containers: [{name: app, image: app:dev}]
`, ns))
		setPodStatus(t, ns, "db-1", net+"3", corev1.PodRunning)
		if s.next(t, within).GetSnapshot() == nil || s.cfg.GetPod().GetName() != "db-1" {
			t.Fatalf("want a snapshot of db-1 once it exists, got %v", s.cfg)
		}
		s.cancel()
	})

	t.Run("unmeshed pod: no identity", func(t *testing.T) {
		setPodStatus(t, ns, "plain-0", net+"2", corev1.PodRunning)
		s := subscribe(t, c, addrTarget(net+"2:8080"))
		deadline := time.Now().Add(5 * time.Second)
		for s.cfg == nil {
			s.next(t, time.Until(deadline))
		}
		ep := s.cfg.GetBackends()[0].GetEndpoints()[0]
		if ep.Identity != "" || ep.ProxyPort != 0 || ep.Address != net+"2" || ep.Port != 8080 {
			t.Errorf("endpoint %v, want %s2:8080 without identity", ep, net)
		}
	})

	// A finished pod gives its IP back (it may be reused): the destination goes.
	setPodStatus(t, ns, "db-0", net+"1", corev1.PodSucceeded)
	if m := byAddr.next(t, within); m.GetNotFound() == nil {
		t.Fatalf("want not_found once the pod finished, got %v", m)
	}
	// Another pod with that IP now is that pod.
	setPodStatus(t, ns, "plain-0", net+"1", corev1.PodRunning)
	if byAddr.next(t, within).GetSnapshot() == nil || byAddr.cfg.GetPod().GetName() != "plain-0" {
		t.Fatalf("want a snapshot of plain-0, got %v", byAddr.cfg)
	}
	if id := byAddr.cfg.Backends[0].Endpoints[0].Identity; id != "" {
		t.Errorf("identity %q of the IP's new, unmeshed owner, want none", id)
	}
	remove(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain-0"}})
	if m := byAddr.next(t, within); m.GetNotFound() == nil {
		t.Fatalf("want not_found once the pod is deleted, got %v", m)
	}
}

// TestExternalName: a port of an ExternalName Service forwards to the external name
// (it had no endpoints, and requests to it were answered 503).
func TestExternalName(t *testing.T) {
	ns := namespace(t, "extname")
	apply(t, fmt.Sprintf(statefulYAML, ns, podNet()))
	s := subscribe(t, conn(t, ns), authority("ext", ns, 80))
	snap := s.next(t, 5*time.Second).GetSnapshot()
	if snap == nil {
		t.Fatalf("want a snapshot, got %v", s.cfg)
	}
	if snap.ExternalName != "api.example.com" || snap.Protocol != api.ProtocolHint_PROTOCOL_HINT_HTTP1 || len(snap.Backends) != 0 {
		t.Errorf("got %v, want external_name api.example.com, protocol http1, no backends", snap)
	}
	s2 := subscribe(t, conn(t, ns), authority("ext", ns, 81))
	if m := s2.next(t, 5*time.Second); m.GetNotFound() == nil {
		t.Errorf("want not_found for a port the Service does not declare, got %v", m)
	}
}
