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
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/proxy/api"
)

// The fixture: namespace shop holds Service web (dual-stack, ports http 80 -> 8080,
// grpc 9090 with appProtocol grpc, mysql 3306) with meshed and unmeshed, ready and
// unready endpoints across three EndpointSlices, and Services web-v2 and web-v3 with
// one meshed endpoint each.

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func svc(name string, ips []string, ports ...corev1.ServicePort) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports, ClusterIPs: ips},
	}
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
	}
	return s
}

func sport(name string, port, target int32, appProtocol *string) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), AppProtocol: appProtocol}
}

type ep struct {
	addr  string
	pod   string
	zone  string
	ready *bool
}

func slice(name, service string, family discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...ep) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: family,
		Ports:       ports,
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.zone != "" {
			d.Zone = ptr.To(e.zone)
		}
		if e.pod != "" {
			d.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: e.pod}
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return es
}

func eport(name string, port int32, appProtocol *string) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), AppProtocol: appProtocol}
}

// pod returns a pod; meshed pods carry the proxy as a native sidecar, as injected.
func pod(name, sa string, meshedPod bool, annotations map[string]string) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app"}}},
	}
	if meshedPod {
		p.Spec.InitContainers = []corev1.Container{{Name: inject.ProxyContainerName, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
	}
	return p
}

// deploymentPod is p as a Deployment's ReplicaSet makes it: controlled by the
// ReplicaSet <deployment>-<hash>, labelled with the pod-template-hash.
func deploymentPod(p corev1.Pod, deployment, hash string) corev1.Pod {
	p.Labels = map[string]string{"app": deployment, "pod-template-hash": hash}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deployment + "-" + hash, Controller: ptr.To(true)}}
	return p
}

// mlabels are the metric labels of an endpoint of Service service in shop that is
// pod (none when ""), run under ServiceAccount sa, with extra name, value pairs.
func mlabels(service, pod, sa string, extra ...string) []*api.Label {
	var out []*api.Label
	add := func(n, v string) { out = append(out, &api.Label{Name: n, Value: v}) }
	add("dst_namespace", "shop")
	if pod != "" {
		add("dst_pod", pod)
		add("dst_serviceaccount", sa)
	}
	if service != "" {
		add("dst_service", service)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		add(extra[i], extra[i+1])
	}
	slices.SortFunc(out, func(a, b *api.Label) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func fixture() *State {
	webPorts := []discoveryv1.EndpointPort{eport("http", 8080, nil), eport("grpc", 9090, ptr.To("grpc")), eport("mysql", 3306, nil)}
	return &State{
		OpaquePorts: []int32{3306},
		Services: []corev1.Service{
			svc("web", []string{"10.96.0.10", "fd00::10"},
				sport("http", 80, 8080, nil), sport("grpc", 9090, 9090, ptr.To("grpc")), sport("mysql", 3306, 3306, nil)),
			svc("web-v2", []string{"10.96.0.11"}, sport("http", 80, 8080, nil)),
			svc("web-v3", []string{"10.96.0.12"}, sport("http", 80, 8080, ptr.To("kubernetes.io/h2c"))),
		},
		EndpointSlices: []discoveryv1.EndpointSlice{
			slice("web-a", "web", discoveryv1.AddressTypeIPv4, webPorts,
				ep{addr: "10.0.0.10", pod: "web-2", zone: "z2"},
				ep{addr: "10.0.0.2", pod: "web-1", zone: "z1", ready: ptr.To(true)},
				ep{addr: "10.0.0.3", pod: "web-4", ready: ptr.To(false)}),
			slice("web-b", "web", discoveryv1.AddressTypeIPv6, webPorts, ep{addr: "fd00::2", pod: "web-3"}),
			// A duplicate of 10.0.0.2 (slices overlap while they are rebalanced).
			slice("web-c", "web", discoveryv1.AddressTypeIPv4, webPorts, ep{addr: "10.0.0.2", pod: "web-1", zone: "z1"}),
			// FQDN slices name no address the proxy can dial.
			slice("web-d", "web", discoveryv1.AddressTypeFQDN, webPorts, ep{addr: "web.example.com"}),
			slice("web-v2-a", "web-v2", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080, nil)},
				ep{addr: "10.0.1.1", pod: "web-v2-1"}),
			slice("web-v3-a", "web-v3", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080, ptr.To("kubernetes.io/h2c"))},
				ep{addr: "10.0.2.1", pod: "web-v3-1"}),
		},
		Pods: []corev1.Pod{
			deploymentPod(pod("web-1", "web", true, nil), "web", "5d8f7c9b4"),
			pod("web-2", "web", false, nil),
			pod("web-3", "web", true, map[string]string{inject.AnnotationInboundPort: "4243"}),
			pod("web-4", "web", true, nil),
			pod("web-v2-1", "", true, nil),
			pod("web-v3-1", "v3", true, nil),
		},
	}
}

// The compiled pieces of the fixture, as the proxy should receive them.

func webBackend() *api.Backend {
	return &api.Backend{
		Key:       "shop/web:80",
		Service:   &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
		Authority: "web.shop.svc.cluster.local:80",
		Endpoints: []*api.Endpoint{
			{Address: "10.0.0.2", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/web", ProxyPort: 4143, Zone: "z1", Pod: "web-1",
				MetricLabels: mlabels("web", "web-1", "web", "dst_deployment", "web", "dst_pod_template_hash", "5d8f7c9b4")},
			{Address: "10.0.0.10", Port: 8080, Zone: "z2", Pod: "web-2", MetricLabels: mlabels("web", "web-2", "web")},
			{Address: "fd00::2", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/web", ProxyPort: 4243, Pod: "web-3",
				MetricLabels: mlabels("web", "web-3", "web")},
		},
	}
}

func webV2Backend() *api.Backend {
	return &api.Backend{
		Key:       "shop/web-v2:80",
		Service:   &api.ServiceRef{Namespace: "shop", Name: "web-v2", Port: 80},
		Authority: "web-v2.shop.svc.cluster.local:80",
		Endpoints: []*api.Endpoint{
			{Address: "10.0.1.1", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/default", ProxyPort: 4143, Pod: "web-v2-1",
				MetricLabels: mlabels("web-v2", "web-v2-1", "default")},
		},
	}
}

func webV3Backend() *api.Backend {
	return &api.Backend{
		Key:       "shop/web-v3:80",
		Service:   &api.ServiceRef{Namespace: "shop", Name: "web-v3", Port: 80},
		Authority: "web-v3.shop.svc.cluster.local:80",
		Protocol:  api.ProtocolHint_PROTOCOL_HINT_H2C,
		Endpoints: []*api.Endpoint{
			{Address: "10.0.2.1", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/v3", ProxyPort: 4143,
				Protocol: api.ProtocolHint_PROTOCOL_HINT_H2C, Pod: "web-v3-1", MetricLabels: mlabels("web-v3", "web-v3-1", "v3")},
		},
	}
}

func defaultBudget() *api.RetryBudget {
	return &api.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)}
}

func fallback(backends ...*api.WeightedBackend) *api.Route {
	return &api.Route{Name: "default", Resource: &api.ResourceRef{Kind: "Service", Namespace: "shop", Name: "web"}, Backends: backends}
}

func wb(key string, weight uint32) *api.WeightedBackend {
	return &api.WeightedBackend{Backend: key, Weight: weight}
}

// baseWant is what the bare fixture compiles to for shop/web:80.
func baseWant() *api.DestinationConfig {
	return &api.DestinationConfig{
		Service:     &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
		Addresses:   []string{"10.96.0.10:80", "[fd00::10]:80"},
		Authorities: []string{"web.shop.svc.cluster.local:80"},
		Fallback:    fallback(wb("shop/web:80", 1)),
		RetryBudget: defaultBudget(),
		Backends:    []*api.Backend{webBackend()},
	}
}

func serviceParent(name string, port *int32, section *string) gatewayv1.ParentReference {
	pr := gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
	if port != nil {
		pr.Port = port
	}
	if section != nil {
		pr.SectionName = ptr.To(gatewayv1.SectionName(*section))
	}
	return pr
}

func backendRef(name string, port int32, weight *int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(port)},
		Weight:                 weight,
	}}
}

func httpRoute(ns, name string, age time.Duration, parents []gatewayv1.ParentReference, rules ...gatewayv1.HTTPRouteRule) gatewayv1.HTTPRoute {
	return gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(age))},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parents},
			Rules:           rules,
		},
	}
}

func prefix(p string) *gatewayv1.HTTPPathMatch {
	return &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(p)}
}

func prefixMatch(p string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: p}}
}

func exactMatch(p string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: p}}
}

func regexMatch(p string) *api.StringMatch {
	return &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: p}}
}
