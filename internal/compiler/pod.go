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
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/proxy/api"
)

// compilePod compiles a pod-IP target: what a client that dials a pod's own address
// (a headless Service's or a StatefulSet pod's DNS name resolves to one) reaches. It
// has one backend with the pod's one endpoint, carrying the pod's identity when the
// pod is meshed: without it the proxy would have nothing to say the peer is meshed
// and would speak plaintext to it. There are no routes (no route resource attaches
// to a pod) and the fallback forwards to the pod.
//
// The protocol hint is the Mesh's when the port is opaque, else the appProtocol of the
// EndpointSlice ports that target this pod on this port (the Service ports it backs
// with that targetPort), when they agree, else unspecified (detect).
func (ix *index) compilePod(t Target) (*api.DestinationConfig, error) {
	pod := ix.pods[t.Pod]
	if pod == nil || !podHasIP(pod, t.PodIP) {
		return nil, fmt.Errorf("pod %s with address %s: %w", t.Pod, t.PodIP, ErrNotFound)
	}
	addr := netip.AddrPortFrom(t.PodIP, uint16(t.Port)).String()
	hint := ix.podPortProtocol(pod, t.Port)
	ep := &api.Endpoint{Address: t.PodIP.String(), Port: uint32(t.Port), Pod: pod.Name, Protocol: hint}
	ep.Identity, ep.ProxyPort = ix.podIdentity(pod)
	ep.MetricLabels = endpointMetricLabels(nil, nil, pod.Namespace, pod.Name, pod)
	k := backendKey(pod.Namespace, pod.Name, t.Port)
	out := &api.DestinationConfig{
		Pod:       &api.PodRef{Namespace: pod.Namespace, Name: pod.Name},
		Addresses: []string{addr},
		Protocol:  hint,
		Fallback: &api.Route{
			Name:     "default",
			Resource: &api.ResourceRef{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name},
			Backends: []*api.WeightedBackend{{Backend: k, Weight: 1}},
		},
		RetryBudget: retryBudget(nil),
		Backends:    []*api.Backend{{Key: k, Authority: addr, Protocol: hint, Endpoints: []*api.Endpoint{ep}}},
	}
	if a := PodAuthority(pod, ix.clusterDomain, uint16(t.Port)); a != "" {
		out.Authorities = []string{a}
	}
	if err := setVersion(out); err != nil {
		return nil, fmt.Errorf("marshalling destination pod %s:%d: %w", t.Pod, t.Port, err)
	}
	return out, nil
}

// PodAuthority is the DNS name and port of a pod that sets a hostname and a
// subdomain (a StatefulSet's pods, under their headless Service):
// <hostname>.<subdomain>.<namespace>.svc.<cluster domain>:<port>; "" for other pods.
func PodAuthority(pod *corev1.Pod, clusterDomain string, port uint16) string {
	if pod.Spec.Hostname == "" || pod.Spec.Subdomain == "" {
		return ""
	}
	host := pod.Spec.Hostname + "." + svcname.Service{Namespace: pod.Namespace, Name: pod.Spec.Subdomain}.FQDN(clusterDomain)
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// podHasIP says whether ip is one of the pod's addresses.
func podHasIP(pod *corev1.Pod, ip netip.Addr) bool {
	for _, s := range PodIPs(pod) {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == ip {
			return true
		}
	}
	return false
}

// PodIPs are a pod's addresses (status.podIPs, else status.podIP).
func PodIPs(pod *corev1.Pod) []string {
	if len(pod.Status.PodIPs) > 0 {
		out := make([]string, 0, len(pod.Status.PodIPs))
		for _, p := range pod.Status.PodIPs {
			out = append(out, p.IP)
		}
		return out
	}
	if pod.Status.PodIP != "" {
		return []string{pod.Status.PodIP}
	}
	return nil
}

// OwnsIP says whether a pod's addresses are its own: a pod on the host's network
// shares the node's address with every other such pod, and a pod that finished has
// given its address back to be reused. Neither may name a pod-IP destination.
func OwnsIP(pod *corev1.Pod) bool {
	return !pod.Spec.HostNetwork && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// podIdentity is the SPIFFE ID and proxy inbound port of a meshed pod ("" and 0 when
// it is not meshed).
func (ix *index) podIdentity(pod *corev1.Pod) (string, uint32) {
	if !meshed(pod) {
		return "", 0
	}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", ix.trustDomain, pod.Namespace, sa), proxyInboundPort(pod)
}

// podPortProtocol is the protocol hint of a pod's port (see compilePod).
func (ix *index) podPortProtocol(pod *corev1.Pod, port int32) api.ProtocolHint {
	if ix.opaque[port] {
		return api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	}
	hint, seen := api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED, false
	for _, es := range ix.podSlices[key(pod.Namespace, pod.Name)] {
		for _, p := range es.Ports {
			if p.Port == nil || *p.Port != port {
				continue
			}
			h := ix.portProtocol(p.AppProtocol, port)
			if seen && h != hint {
				// Two Services disagree on what the port speaks: detect.
				return api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
			}
			hint, seen = h, true
		}
	}
	return hint
}

// compileExternalName compiles a port of a Service of type ExternalName: the proxy
// forwards to the external name, in plaintext and without identity. A name that is an
// in-cluster Service's (an alias) compiles as that Service, so that an alias never
// turns traffic between meshed pods into plaintext; an alias to a name that is no
// Service here is not found.
func (cc *Compiler) compileExternalName(svc *corev1.Service, port corev1.ServicePort, t Target) (*api.DestinationConfig, error) {
	ix := cc.ix
	name := strings.TrimSuffix(strings.ToLower(svc.Spec.ExternalName), ".")
	if name == "" {
		return nil, fmt.Errorf("service %s/%s is of type ExternalName without an externalName: %w", svc.Namespace, svc.Name, ErrNotFound)
	}
	own := svcname.Service{Namespace: svc.Namespace, Name: svc.Name}.Authority(ix.clusterDomain, uint16(port.Port))
	if ref, ok := svcname.Parse(name, ix.clusterDomain, svcname.FQDNOnly); ok {
		alias := ix.services[key(ref.Namespace, ref.Name)]
		if alias == nil || alias.Spec.Type == corev1.ServiceTypeExternalName {
			// Not followed further: a chain of aliases could loop.
			return nil, fmt.Errorf("service %s/%s is an alias of %s, which is not a Service with endpoints: %w", svc.Namespace, svc.Name, name, ErrNotFound)
		}
		out, err := cc.Compile(Target{Namespace: ref.Namespace, Name: ref.Name, Port: port.Port, ContextNamespace: t.ContextNamespace})
		if err != nil {
			return nil, err
		}
		out.Authorities = append([]string{own}, out.Authorities...)
		if err := setVersion(out); err != nil {
			return nil, fmt.Errorf("marshalling destination %s/%s:%d: %w", svc.Namespace, svc.Name, port.Port, err)
		}
		return out, nil
	}
	out := &api.DestinationConfig{
		Service:      &api.ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: uint32(port.Port)},
		Authorities:  []string{own},
		Protocol:     ix.portProtocol(port.AppProtocol, port.Port),
		RetryBudget:  retryBudget(nil),
		ExternalName: name,
	}
	if err := setVersion(out); err != nil {
		return nil, fmt.Errorf("marshalling destination %s/%s:%d: %w", svc.Namespace, svc.Name, port.Port, err)
	}
	return out, nil
}
