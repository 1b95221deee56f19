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
	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		req     *api.GetDestination
		want    target
		wantErr bool
	}{
		{name: "fully qualified", req: auth("web.shop.svc.cluster.local:8080"), want: target{Namespace: "shop", Name: "web", Port: 8080}},
		{name: "no port means 80", req: auth("web.shop.svc.cluster.local"), want: target{Namespace: "shop", Name: "web", Port: 80}},
		{name: "name.ns", req: auth("web.shop:9090"), want: target{Namespace: "shop", Name: "web", Port: 9090}},
		{name: "name.ns.svc", req: auth("web.shop.svc"), want: target{Namespace: "shop", Name: "web", Port: 80}},
		{name: "case and trailing dot", req: auth("Web.Shop.svc.cluster.local.:80"), want: target{Namespace: "shop", Name: "web", Port: 80}},
		{name: "another cluster domain", req: auth("web.shop.svc.example.org:80"), want: target{External: "web.shop.svc.example.org:80"}},
		{name: "an external name", req: auth("api.example.com"), want: target{External: "api.example.com:80"}},
		{name: "a single label", req: auth("localhost:8080"), want: target{External: "localhost:8080"}},
		{name: "an IPv4 authority", req: auth("10.96.0.1:443"), want: target{Addr: netip.MustParseAddrPort("10.96.0.1:443")}},
		{name: "an IPv6 authority", req: auth("[fd00::1]:443"), want: target{Addr: netip.MustParseAddrPort("[fd00::1]:443")}},
		{name: "an address", req: addr("10.96.0.1:80"), want: target{Addr: netip.MustParseAddrPort("10.96.0.1:80")}},
		{name: "an IPv4-mapped address", req: addr("[::ffff:10.96.0.1]:80"), want: target{Addr: netip.MustParseAddrPort("10.96.0.1:80")}},
		{name: "no target", req: &api.GetDestination{}, wantErr: true},
		{name: "an empty authority", req: auth(""), wantErr: true},
		{name: "a named port", req: auth("web.shop:http"), wantErr: true},
		{name: "port 0", req: auth("web.shop:0"), wantErr: true},
		{name: "an address without port", req: addr("10.96.0.1"), wantErr: true},
		{name: "an address with port 0", req: addr("10.96.0.1:0"), wantErr: true},
		{name: "a name as address", req: addr("web.shop:80"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTarget(tc.req, "cluster.local")
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func auth(a string) *api.GetDestination {
	return &api.GetDestination{Target: &api.GetDestination_Authority{Authority: a}}
}

func addr(a string) *api.GetDestination {
	return &api.GetDestination{Target: &api.GetDestination_Address{Address: a}}
}

// TestUnavailableUntilSyncedAndShutdown drives a Server directly (events fed by hand,
// the TLS objects from a fake client) over a real TLS socket: Unavailable before the
// state synced, a snapshot after, and on shutdown the stream ends with OK.
func TestUnavailableUntilSyncedAndShutdown(t *testing.T) {
	pki, creds := newTestCredentials(t)
	srv := NewServer(ServerOptions{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, creds.serverOption(), 2*time.Second) }()

	cert, err := pki.WorkloadCert("shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := desttest.Dial(lis.Addr().String(), pki.ClientTLS(serverName, &cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := apigrpc.NewDestinationClient(cc)
	req := auth("web.shop.svc.cluster.local:80")
	// The client's context outlives the server's, so the end of the stream is the
	// server's doing.
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()

	st, err := c.Get(cctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("before sync: want Unavailable, got %v", err)
	}

	srv.Handler().OnAdd(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.7", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, true)
	srv.Handler().OnAdd(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-a", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}},
	}, true)
	srv.MarkSynced()

	st, err = c.Get(cctx, req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if eps := m.GetSnapshot().GetBackends(); len(eps) != 1 || len(eps[0].Endpoints) != 1 || eps[0].Endpoints[0].Address != "10.1.0.1" {
		t.Fatalf("after sync: want a snapshot with 10.1.0.1, got %v", m)
	}

	cancel()
	ended := make(chan error, 1)
	go func() {
		_, err := st.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		// The server returned OK: the client sees the end of the stream, not an error.
		if !errors.Is(err, io.EOF) {
			t.Fatalf("on shutdown: want a clean end of stream, got %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the stream did not end within 3s of shutdown")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return within its grace")
	}
}

func TestSlimPod(t *testing.T) {
	proxy := corev1.Container{Name: "weft-proxy", Image: "weft-proxy:dev", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	app := corev1.Container{Name: "app", Image: "app:dev", Env: []corev1.EnvVar{{Name: "BIG", Value: strings.Repeat("x", 4096)}},
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 3},
		LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}
	for _, tc := range []struct {
		name       string
		pod        corev1.Pod
		wantMeshed bool
		wantAnn    map[string]string
	}{{
		name: "meshed by its native sidecar",
		pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("{}", 1000),
				"config.weft.dev/inbound-port":                     "4243",
			}},
			Spec: corev1.PodSpec{ServiceAccountName: "web", InitContainers: []corev1.Container{proxy}, Containers: []corev1.Container{app}},
		},
		wantMeshed: true,
		// The proxy's container says the pod is meshed: no marker.
		wantAnn: map[string]string{"config.weft.dev/inbound-port": "4243"},
	}, {
		name: "meshed by its native sidecar, with the injector's record",
		pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"weft.dev/injected": `{"a":"long record"}`}},
			Spec:       corev1.PodSpec{InitContainers: []corev1.Container{proxy}, Containers: []corev1.Container{app}},
		},
		wantMeshed: true,
		wantAnn:    nil,
	}, {
		name: "meshed by the injector's record",
		pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"weft.dev/injected": `{"a":"long record"}`}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{app}},
		},
		wantMeshed: true,
		wantAnn:    map[string]string{"weft.dev/injected": ""},
	}, {
		name:       "not meshed",
		pod:        corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{app}}},
		wantMeshed: false,
	}, {
		// A container with neither ports nor HTTP probes carries nothing compiled.
		name: "meshed, with a bare container",
		pod: corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{proxy},
			Containers: []corev1.Container{app, {Name: "worker", Image: "worker:dev", LivenessProbe: app.LivenessProbe}}}},
		wantMeshed: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pod.Name, tc.pod.Namespace = "web-1", "shop"
			tc.pod.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.7"}}
			out, err := slimPod(&tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			slim := out.(*corev1.Pod)
			if isMeshed(slim) != tc.wantMeshed || isMeshed(&tc.pod) != tc.wantMeshed {
				t.Fatalf("meshed: slim %v, original %v, want %v", isMeshed(slim), isMeshed(&tc.pod), tc.wantMeshed)
			}
			if slim.Name != "web-1" || slim.Namespace != "shop" || slim.Spec.ServiceAccountName != tc.pod.Spec.ServiceAccountName {
				t.Errorf("identity fields lost: %+v", slim.ObjectMeta)
			}
			if !maps.Equal(slim.Labels, tc.pod.Labels) || len(slim.Status.PodIPs) != 1 {
				t.Errorf("labels or pod IPs lost: %+v", slim)
			}
			// Inbound policy reads the ports and HTTP probes; the rest of a
			// container (image, env, exec probes) goes.
			c := slim.Spec.Containers[0]
			if c.Name != "app" || c.Image != "" || c.Env != nil || len(c.Ports) != 1 || c.LivenessProbe != nil ||
				c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.PeriodSeconds != 0 {
				t.Errorf("container slimmed wrongly: %+v", c)
			}
			if len(slim.Spec.Containers) != 1 {
				t.Errorf("containers %+v, want only app's", slim.Spec.Containers)
			}
			if !maps.Equal(slim.Annotations, tc.wantAnn) || (tc.wantAnn == nil) != (slim.Annotations == nil) {
				t.Errorf("annotations %v, want %v", slim.Annotations, tc.wantAnn)
			}
		})
	}
}

// TestSlimPodKeepsWorkload: of a pod's owners only its controller's kind and name
// are kept (its endpoints' dst_<kind> label), and a pod whose workload labels change
// is not equivalent, so its endpoints are recompiled.
func TestSlimPodKeepsWorkload(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f7c9b4-x", Namespace: "shop",
		Labels: map[string]string{"pod-template-hash": "5d8f7c9b4"},
		OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "u1"},
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7c9b4", UID: "u2", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)},
		}}}
	out, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Pod)
	want := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7c9b4", Controller: ptr.To(true)}}
	if !equality.Semantic.DeepEqual(slim.OwnerReferences, want) {
		t.Fatalf("owner references %+v, want %+v", slim.OwnerReferences, want)
	}
	if !podEquivalent(pod, slim) {
		t.Fatal("a pod and its slim copy are not equivalent")
	}
	moved := slim.DeepCopy()
	moved.OwnerReferences[0].Name = "web-other"
	if podEquivalent(slim, moved) {
		t.Error("a pod whose controller changed is equivalent: its endpoints' labels would go stale")
	}
	rehashed := slim.DeepCopy()
	rehashed.Labels["pod-template-hash"] = "6f"
	if podEquivalent(slim, rehashed) {
		t.Error("a pod whose pod-template-hash changed is equivalent")
	}
}

// TestSlimPodKeepsController: the controller's kind and name (the owner attributes of
// the proxy's trace spans) stay, without its UID; other owners go.
func TestSlimPodKeepsController(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f8c6b5-x2x4z", Namespace: "shop", OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "example.com/v1", Kind: "Holder", Name: "h", UID: "u0"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5", UID: "u1", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)},
	}}}
	out, _ := slimPod(pod)
	got := out.(*corev1.Pod).OwnerReferences
	want := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5", Controller: ptr.To(true)}}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("owner references %+v, want %+v", got, want)
	}
	out, _ = slimPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare", OwnerReferences: pod.OwnerReferences[:1]}})
	if refs := out.(*corev1.Pod).OwnerReferences; refs != nil {
		t.Errorf("a pod without a controller keeps owner references %+v", refs)
	}
}

// TestSlimmedObjectsCompileTheSame: a Service's destination compiles to the same
// configuration from its EndpointSlice and pods as the API server has them (every
// field the EndpointSlice controller and the kubelet write) as from what the cache
// keeps of them (slimEndpointSlice, slimPod), with endpoints whose readiness, zone
// hints, target pod and meshing differ. A field the transforms dropped that the
// compiler reads fails it.
func TestSlimmedObjectsCompileTheSame(t *testing.T) {
	const ns = "shop"
	svc := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Annotations: map[string]string{corev1.AnnotationTopologyMode: "Auto"}},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	proxy := corev1.Container{Name: "weft-proxy", Image: "weft-proxy:dev", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{{Name: "weft-inbound", ContainerPort: 4143}}}
	pod := func(name, ip string, meshed bool) corev1.Pod {
		p := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "u-" + "name", Labels: map[string]string{"app": "web", "pod-template-hash": "abc"},
				Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}", "config.weft.dev/inbound-port": "4243"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", UID: "rs"}}},
			Spec: corev1.PodSpec{ServiceAccountName: "web", NodeName: "node-1",
				Containers: []corev1.Container{{Name: "app", Image: "app:dev", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}, {Name: "logger", Image: "logger:dev"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		if meshed {
			p.Annotations["weft.dev/injected"] = `{"record":"of the injection"}`
			p.Spec.InitContainers = []corev1.Container{{Name: "weft-init", Image: "weft-init:dev"}, proxy}
		}
		return p
	}
	pods := []corev1.Pod{pod("web-1", "10.1.0.1", true), pod("web-2", "10.1.0.2", true), pod("web-3", "10.1.0.3", false)}
	ep := func(ip, pod, zone string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
			Hostname: ptr.To(pod), NodeName: ptr.To("node-1"), Zone: ptr.To(zone),
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod, UID: "u-" + types.UID(pod), ResourceVersion: "7"},
		}
	}
	es := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-x1", GenerateName: "web-",
			Labels:          map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io", "app": "web"},
			Annotations:     map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-05T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: "web", UID: "svc"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), AppProtocol: ptr.To("kubernetes.io/h2c")}},
		Endpoints:   []discoveryv1.Endpoint{ep("10.1.0.1", "web-1", "zone-a", true), ep("10.1.0.2", "web-2", "zone-b", false), ep("10.1.0.3", "web-3", "zone-a", true)},
	}
	compile := func(slim bool) *api.DestinationConfig {
		st := &compiler.State{ClusterDomain: "cluster.local", Services: []corev1.Service{svc}}
		slice := *es.DeepCopy()
		for _, p := range pods {
			p := p.DeepCopy()
			if slim {
				o, err := slimPod(p)
				if err != nil {
					t.Fatal(err)
				}
				p = o.(*corev1.Pod)
			}
			st.Pods = append(st.Pods, *p)
		}
		if slim {
			o, err := slimEndpointSlice(&slice)
			if err != nil {
				t.Fatal(err)
			}
			slice = *o.(*discoveryv1.EndpointSlice)
			if len(slice.Labels) != 1 || slice.Endpoints[0].NodeName != nil || slice.Endpoints[0].TargetRef.UID != "" {
				t.Fatalf("slimEndpointSlice kept what it should drop: %+v", slice)
			}
		}
		st.EndpointSlices = []discoveryv1.EndpointSlice{slice}
		cfg, err := compiler.Compile(st, compiler.Target{Namespace: ns, Name: "web", Port: 80, ContextNamespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	full, slim := compile(false), compile(true)
	if len(full.GetBackends()) == 0 || len(full.GetBackends()[0].GetEndpoints()) != 2 {
		t.Fatalf("the test's destination compiled to %v, want one backend with the two ready endpoints", full)
	}
	if !proto.Equal(full, slim) {
		t.Errorf("compiled from the slimmed objects:\n%v\nfrom the originals:\n%v", slim, full)
	}
}

// TestSlimNamespace: the inbound policy compiler reads a namespace's name, labels and
// Weft's annotations; the rest (kubectl's record, spec, status) is dropped.
func TestSlimNamespace(t *testing.T) {
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", ResourceVersion: "7", Labels: map[string]string{"team": "a"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("{}", 1000),
				"config.weft.dev/default-inbound-policy":           "deny",
			}},
		Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	out, err := slimNamespace(ns)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Namespace)
	if slim.Name != "shop" || slim.ResourceVersion != "7" || !maps.Equal(slim.Labels, ns.Labels) ||
		!maps.Equal(slim.Annotations, map[string]string{"config.weft.dev/default-inbound-policy": "deny"}) ||
		slim.Spec.Finalizers != nil || slim.Status.Phase != "" {
		t.Fatalf("slimmed wrongly: %+v", slim)
	}
}

// newTestCredentials is a test PKI and the server credentials built from its issuer
// Secret and trust roots (read through a fake client: the TLS objects only).
func newTestCredentials(t *testing.T) (*desttest.PKI, *credentialsSource) {
	t.Helper()
	pki, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := pki.IssuerSecret(controlNS)
	if err != nil {
		t.Fatal(err)
	}
	fc := fake.NewClientBuilder().WithScheme(testenv.Scheme).WithObjects(sec, pki.TrustRootsConfigMap(controlNS)).Build()
	opts := Options{Namespace: controlNS}
	opts.defaults()
	creds, err := newCredentials(fc, fc, opts, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return pki, creds
}

// TestDestinationServiceMatchesGenerated: the service the server registers (with
// getHandler) is apigrpc's Destination service, stream for stream, so a change to
// destination_service.proto cannot leave it serving the old API.
func TestDestinationServiceMatchesGenerated(t *testing.T) {
	desttest.SameService(t, apigrpc.Destination_ServiceDesc, destinationService)
	if _, ok := any(&Server{}).(apigrpc.DestinationServer); !ok {
		t.Error("Server does not implement apigrpc.DestinationServer")
	}
}
