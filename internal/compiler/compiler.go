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

// Package compiler turns the cluster's routing state into the configuration of one
// destination (a Service port), as the proxy receives it over the destination API
// (proxy/api DestinationConfig).
//
// Compile is a pure, deterministic function: it reads only its arguments, and the same
// state gives byte-identical output whatever the order of the objects in it. The
// precedence between ServiceProfile, HTTPRoute/GRPCRoute and TrafficSplit is described
// in docs/routing.md and summarised on Compile.
package compiler

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/internal/validation"
	"github.com/weftmesh/weft/proxy/api"
)

// Defaults applied when the state leaves them unset.
const (
	DefaultTrustDomain   = meshdefaults.TrustDomain
	DefaultClusterDomain = meshdefaults.ClusterDomain
	// DefaultProxyInboundPort is where a meshed endpoint's proxy accepts mTLS.
	DefaultProxyInboundPort = meshdefaults.InboundPort
	// DefaultProfileRouteTimeout is a ServiceProfile route's timeout when it sets none.
	DefaultProfileRouteTimeout = 10 * time.Second
)

// DefaultRetryBudget is the budget when no ServiceProfile sets one: Linkerd's.
var DefaultRetryBudget = meshv1alpha1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"}

// ErrNotFound is returned (wrapped) when the target is not a port of an existing
// Service.
var ErrNotFound = errors.New("destination not found")

// State is the part of the cluster's state that destinations are compiled from. The
// order of the objects in the slices does not matter.
type State struct {
	// TrustDomain is the Mesh's SPIFFE trust domain. Default cluster.local.
	TrustDomain string
	// ClusterDomain is the DNS suffix of Service names. Default cluster.local.
	ClusterDomain string
	// OpaquePorts are the Mesh's opaque ports (spec.proxy.opaquePorts).
	OpaquePorts []int32

	Services        []corev1.Service
	EndpointSlices  []discoveryv1.EndpointSlice
	Pods            []corev1.Pod
	ServiceProfiles []meshv1alpha1.ServiceProfile
	HTTPRoutes      []gatewayv1.HTTPRoute
	GRPCRoutes      []gatewayv1.GRPCRoute
	TrafficSplits   []splitv1alpha2.TrafficSplit
	// HTTPFaults are the faults routes name (ExtensionRef filters, ServiceProfile
	// routes' fault).
	HTTPFaults []meshv1alpha1.HTTPFault
}

// SetMesh fills the state's Mesh-derived fields from the Mesh, defaulted as the
// injector defaults it (nil: no Mesh yet, every default): an empty trust domain and a
// nil opaque-port list take meshdefaults' values, an empty list stays empty.
func (s *State) SetMesh(m *meshv1alpha1.Mesh) {
	var spec meshv1alpha1.MeshSpec
	if m != nil {
		spec = m.Spec
	}
	s.TrustDomain = cmp.Or(spec.TrustDomain, meshdefaults.TrustDomain)
	s.OpaquePorts = s.OpaquePorts[:0]
	if spec.Proxy.OpaquePorts == nil {
		s.OpaquePorts = append(s.OpaquePorts, meshdefaults.OpaquePorts()...)
		return
	}
	for _, p := range spec.Proxy.OpaquePorts {
		s.OpaquePorts = append(s.OpaquePorts, int32(p))
	}
}

// Target names the destination to compile.
type Target struct {
	// Namespace and Name of the Service.
	Namespace, Name string
	// Port is the Service port number.
	Port int32
	// ContextNamespace is the client's namespace: consumer routes and a
	// ServiceProfile in it take precedence for that client. Empty means none.
	ContextNamespace string
	// Pod, when set, makes the target a pod's own address instead of a Service port:
	// the pod named namespace/name, at PodIP and Port (see compilePod). Namespace,
	// Name and ContextNamespace are then unused.
	Pod   string
	PodIP netip.Addr
}

// Compile returns the configuration of one Service port as seen by a client in
// t.ContextNamespace. The precedence, in short (docs/routing.md has the details):
//
//  1. When any HTTPRoute or GRPCRoute attaches to the Service port, its rules are the
//     routes (consumer routes in the client's namespace replace the producer's), and
//     a request matching none is refused with 404. A ServiceProfile then contributes
//     only its retry budget; its routes, response classes, timeouts and retry flags
//     are ignored.
//  2. Otherwise the routes of the ServiceProfile (the client namespace's, else the
//     Service namespace's), in order, then a fallback route for everything else.
//  3. Backends: a rule's own backendRefs; else (for rules without backendRefs,
//     ServiceProfile routes and the fallback) the oldest TrafficSplit whose root is
//     the Service; else the ServiceProfile's dstOverrides; else the Service itself.
//
// An opaque port (the Mesh's or the ServiceProfile's opaquePorts, or the Service
// port's appProtocol) gets no routes, only the fallback's backends.
func Compile(s *State, t Target) (*api.DestinationConfig, error) {
	return New(s).Compile(t)
}

// Compiler compiles destinations from one State, which it indexes once: use it to
// compile many destinations of the same state. The State must not change while the
// Compiler is in use.
type Compiler struct {
	ix *index
}

// New indexes the state.
func New(s *State) *Compiler {
	return &Compiler{ix: newIndex(s)}
}

// Compile is the package's Compile, on the indexed state.
func (cc *Compiler) Compile(t Target) (*api.DestinationConfig, error) {
	ix := cc.ix
	if t.Pod != "" {
		return ix.compilePod(t)
	}
	svc := ix.services[key(t.Namespace, t.Name)]
	if svc == nil {
		return nil, fmt.Errorf("service %s/%s: %w", t.Namespace, t.Name, ErrNotFound)
	}
	var port corev1.ServicePort
	found := false
	for _, p := range svc.Spec.Ports {
		if p.Port == t.Port {
			port, found = p, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("service %s/%s has no port %d: %w", t.Namespace, t.Name, t.Port, ErrNotFound)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return cc.compileExternalName(svc, port, t)
	}
	c := &compilation{ix: ix, svc: svc, port: port, target: t, backends: map[string]*api.Backend{}}
	return c.run()
}

// compilation holds one Compile call's working state.
type compilation struct {
	ix       *index
	svc      *corev1.Service
	port     corev1.ServicePort
	target   Target
	profile  *meshv1alpha1.ServiceProfile
	backends map[string]*api.Backend
}

func (c *compilation) run() (*api.DestinationConfig, error) {
	c.profile = c.ix.profileFor(c.svc, c.target.ContextNamespace)
	root := c.backend(c.svc, c.port)
	out := &api.DestinationConfig{
		Service:     root.Service,
		Addresses:   serviceAddresses(c.svc, c.port.Port),
		Authorities: []string{root.Authority},
		Protocol:    c.rootProtocol(),
		RetryBudget: retryBudget(c.profile),
	}

	if out.Protocol != api.ProtocolHint_PROTOCOL_HINT_OPAQUE {
		if routes := c.gatewayRoutes(); len(routes) > 0 {
			out.RouteSource = api.RouteSource_ROUTE_SOURCE_GATEWAY_API
			out.Routes = routes
		} else if c.profile != nil && len(c.profile.Spec.Routes) > 0 {
			out.RouteSource = api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE
			out.Routes = c.profileRoutes()
		}
	}
	if out.RouteSource != api.RouteSource_ROUTE_SOURCE_GATEWAY_API {
		out.Fallback = &api.Route{
			Name:     "default",
			Resource: &api.ResourceRef{Kind: "Service", Namespace: c.svc.Namespace, Name: c.svc.Name},
			Backends: c.defaultBackends(),
		}
		if c.profile == nil {
			// No routes and no ServiceProfile: the Service's annotations
			// configure the fallback (a profile's configuration replaces them,
			// as in Linkerd).
			ra := c.routeAnnotations(validation.KindService, nil)
			out.Fallback.Timeouts = ra.timeouts(nil)
			out.Fallback.Retry = ra.retryPolicy(validation.KindService, nil)
		}
	}

	keys := make([]string, 0, len(c.backends))
	for k := range c.backends {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// Only backends that some route uses are sent: the root Service itself is not
	// one when a TrafficSplit sends everything elsewhere.
	used := map[string]bool{}
	for _, r := range append(slices.Clone(out.Routes), out.Fallback) {
		for _, b := range r.GetBackends() {
			used[b.Backend] = true
		}
		markMirrorBackends(r, used)
	}
	for _, k := range keys {
		if used[k] {
			out.Backends = append(out.Backends, c.backends[k])
		}
	}

	if err := setVersion(out); err != nil {
		return nil, fmt.Errorf("marshalling destination %s/%s:%d: %w", c.svc.Namespace, c.svc.Name, c.port.Port, err)
	}
	return out, nil
}

// setVersion sets a configuration's version: a hash of its content.
func setVersion(out *api.DestinationConfig) error {
	out.Version = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	out.Version = hex.EncodeToString(sum[:8])
	return nil
}

// backend returns (creating once) the Backend of a Service port, with its endpoints.
func (c *compilation) backend(svc *corev1.Service, port corev1.ServicePort) *api.Backend {
	k := backendKey(svc.Namespace, svc.Name, port.Port)
	if b, ok := c.backends[k]; ok {
		return b
	}
	b := &api.Backend{
		Key:       k,
		Service:   &api.ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: uint32(port.Port)},
		Authority: svcname.Service{Namespace: svc.Namespace, Name: svc.Name}.Authority(c.ix.clusterDomain, uint16(port.Port)),
		Protocol:  c.ix.portProtocol(port.AppProtocol, port.Port, targetPortNumber(port)),
		Endpoints: c.ix.endpoints(svc, port),
	}
	c.backends[k] = b
	return b
}

// rootProtocol is the target port's hint; the ServiceProfile's opaquePorts count too.
func (c *compilation) rootProtocol() api.ProtocolHint {
	if c.profile != nil {
		// The profile passed validation, so every entry is a port or a range.
		ranges, _ := validation.ProfileOpaquePorts(nil, c.profile.Spec.OpaquePorts)
		for _, r := range ranges {
			if c.port.Port >= int32(r.From) && c.port.Port <= int32(r.To) {
				return api.ProtocolHint_PROTOCOL_HINT_OPAQUE
			}
		}
	}
	return c.ix.portProtocol(c.port.AppProtocol, c.port.Port, targetPortNumber(c.port))
}

// defaultBackends are the backends of requests that no route sends elsewhere: the
// oldest TrafficSplit rooted at the Service, else the ServiceProfile's dstOverrides,
// else the Service itself.
func (c *compilation) defaultBackends() []*api.WeightedBackend {
	if ts := c.ix.splitFor(c.svc); ts != nil {
		out := make([]*api.WeightedBackend, 0, len(ts.Spec.Backends))
		for _, b := range ts.Spec.Backends {
			out = append(out, c.splitBackend(ts.Namespace, b.Service, c.port.Port, uint32(b.Weight)))
		}
		return out
	}
	if c.profile != nil && len(c.profile.Spec.DstOverrides) > 0 {
		out := make([]*api.WeightedBackend, 0, len(c.profile.Spec.DstOverrides))
		for _, d := range c.profile.Spec.DstOverrides {
			w := uint32(max(d.Weight.MilliValue(), 0))
			ref, ok := c.ix.authorityService(d.Authority, c.port.Port)
			if !ok {
				out = append(out, &api.WeightedBackend{Weight: w, Invalid: fmt.Sprintf("dstOverride authority %s is not a Service of this cluster", d.Authority)})
				continue
			}
			out = append(out, c.splitBackend(ref.Namespace, ref.Name, int32(ref.Port), w))
		}
		return out
	}
	return []*api.WeightedBackend{{Backend: backendKey(c.svc.Namespace, c.svc.Name, c.port.Port), Weight: 1}}
}

// splitBackend resolves a TrafficSplit or dstOverride backend: a Service port by number.
func (c *compilation) splitBackend(ns, name string, port int32, weight uint32) *api.WeightedBackend {
	svc := c.ix.services[key(ns, name)]
	if svc == nil {
		return &api.WeightedBackend{Weight: weight, Invalid: fmt.Sprintf("Service %s/%s does not exist", ns, name)}
	}
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return &api.WeightedBackend{Backend: c.backend(svc, p).Key, Weight: weight}
		}
	}
	return &api.WeightedBackend{Weight: weight, Invalid: fmt.Sprintf("Service %s/%s has no port %d", ns, name, port)}
}

func retryBudget(sp *meshv1alpha1.ServiceProfile) *api.RetryBudget {
	b := DefaultRetryBudget
	if sp != nil && sp.Spec.RetryBudget != nil {
		b = *sp.Spec.RetryBudget
	}
	ttl, err := time.ParseDuration(b.TTL)
	if err != nil || ttl <= 0 {
		ttl, _ = time.ParseDuration(DefaultRetryBudget.TTL)
	}
	return &api.RetryBudget{
		RetryRatio:          b.RetryRatio,
		MinRetriesPerSecond: uint32(max(b.MinRetriesPerSecond, 0)),
		Ttl:                 durationpb.New(ttl),
	}
}

func serviceAddresses(svc *corev1.Service, port int32) []string {
	var out []string
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		out = append(out, net.JoinHostPort(ip, strconv.Itoa(int(port))))
	}
	return out
}

func targetPortNumber(p corev1.ServicePort) int32 {
	if p.TargetPort.IntVal != 0 && p.TargetPort.StrVal == "" {
		return p.TargetPort.IntVal
	}
	return 0
}

func key(ns, name string) string { return ns + "/" + name }

func backendKey(ns, name string, port int32) string {
	return fmt.Sprintf("%s/%s:%d", ns, name, port)
}

// index is the state arranged for lookups, built once per Compiler.
type index struct {
	trustDomain   string
	clusterDomain string
	opaque        map[int32]bool
	services      map[string]*corev1.Service
	pods          map[string]*corev1.Pod
	slices        map[string][]*discoveryv1.EndpointSlice // by namespace/service
	// podSlices are the EndpointSlices with an endpoint of each pod, by
	// namespace/name (pod targets' protocol hints).
	podSlices map[string][]*discoveryv1.EndpointSlice
	// The routing resources by namespace.
	profiles   map[string][]*meshv1alpha1.ServiceProfile
	splits     map[string][]*splitv1alpha2.TrafficSplit
	httpRoutes map[string][]*gatewayv1.HTTPRoute
	grpcRoutes map[string][]*gatewayv1.GRPCRoute
	// faults are the HTTPFaults by namespace/name.
	faults map[string]*meshv1alpha1.HTTPFault
	// profileValid memoizes validation.ServiceProfile per profile (*ServiceProfile ->
	// bool): each target compiled from this index asks again, and a profile at its
	// bounds costs tens of milliseconds to validate.
	profileValid sync.Map
}

func newIndex(s *State) *index {
	ix := &index{
		trustDomain:   cmp.Or(s.TrustDomain, DefaultTrustDomain),
		clusterDomain: cmp.Or(s.ClusterDomain, DefaultClusterDomain),
		opaque:        map[int32]bool{},
		services:      make(map[string]*corev1.Service, len(s.Services)),
		pods:          make(map[string]*corev1.Pod, len(s.Pods)),
		slices:        map[string][]*discoveryv1.EndpointSlice{},
		podSlices:     map[string][]*discoveryv1.EndpointSlice{},
		profiles:      map[string][]*meshv1alpha1.ServiceProfile{},
		splits:        map[string][]*splitv1alpha2.TrafficSplit{},
		httpRoutes:    map[string][]*gatewayv1.HTTPRoute{},
		grpcRoutes:    map[string][]*gatewayv1.GRPCRoute{},
		faults:        make(map[string]*meshv1alpha1.HTTPFault, len(s.HTTPFaults)),
	}
	for i := range s.HTTPFaults {
		f := &s.HTTPFaults[i]
		ix.faults[key(f.Namespace, f.Name)] = f
	}
	for i := range s.ServiceProfiles {
		sp := &s.ServiceProfiles[i]
		ix.profiles[sp.Namespace] = append(ix.profiles[sp.Namespace], sp)
	}
	for i := range s.TrafficSplits {
		ts := &s.TrafficSplits[i]
		ix.splits[ts.Namespace] = append(ix.splits[ts.Namespace], ts)
	}
	for i := range s.HTTPRoutes {
		r := &s.HTTPRoutes[i]
		ix.httpRoutes[r.Namespace] = append(ix.httpRoutes[r.Namespace], r)
	}
	for i := range s.GRPCRoutes {
		r := &s.GRPCRoutes[i]
		ix.grpcRoutes[r.Namespace] = append(ix.grpcRoutes[r.Namespace], r)
	}
	for _, p := range s.OpaquePorts {
		ix.opaque[p] = true
	}
	for i := range s.Services {
		ix.services[key(s.Services[i].Namespace, s.Services[i].Name)] = &s.Services[i]
	}
	for i := range s.Pods {
		ix.pods[key(s.Pods[i].Namespace, s.Pods[i].Name)] = &s.Pods[i]
	}
	for i := range s.EndpointSlices {
		es := &s.EndpointSlices[i]
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := key(es.Namespace, name)
			ix.slices[k] = append(ix.slices[k], es)
		}
		var last string
		for _, ep := range es.Endpoints {
			if r := ep.TargetRef; r != nil && r.Kind == "Pod" && cmp.Or(r.Namespace, es.Namespace) == es.Namespace {
				if pk := key(es.Namespace, r.Name); pk != last {
					ix.podSlices[pk] = append(ix.podSlices[pk], es)
					last = pk
				}
			}
		}
	}
	// Slices are visited by name so that the first of duplicate endpoints wins
	// deterministically.
	for _, l := range ix.slices {
		slices.SortFunc(l, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	}
	return ix
}

func (ix *index) getService(ns, name string) (*corev1.Service, error) {
	return ix.services[key(ns, name)], nil
}

// portProtocol maps a port's appProtocol (and the Mesh's opaque ports) to a hint. The
// port is opaque when either the Service port or the port it targets is.
func (ix *index) portProtocol(appProtocol *string, ports ...int32) api.ProtocolHint {
	for _, p := range ports {
		if ix.opaque[p] {
			return api.ProtocolHint_PROTOCOL_HINT_OPAQUE
		}
	}
	if appProtocol == nil {
		return api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
	}
	switch strings.ToLower(*appProtocol) {
	case "http", "kubernetes.io/http":
		return api.ProtocolHint_PROTOCOL_HINT_HTTP1
	case "kubernetes.io/h2c", "h2c", "http2":
		return api.ProtocolHint_PROTOCOL_HINT_H2C
	case "grpc", "kubernetes.io/grpc":
		return api.ProtocolHint_PROTOCOL_HINT_GRPC
	case "tcp", "kubernetes.io/tcp", "opaque":
		return api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	}
	return api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
}

// endpoints returns the ready endpoints of a Service port, from the EndpointSlices
// of the Service, sorted by address and port, duplicates dropped.
func (ix *index) endpoints(svc *corev1.Service, port corev1.ServicePort) []*api.Endpoint {
	var out []*api.Endpoint
	seen := map[string]bool{}
	labels := sharedLabels{}
	// The endpoints of a Service mostly have one identity: one copy of it, not one
	// per endpoint in every cached destination.
	identities := map[string]string{}
	pref := zonePreferenceOf(svc)
	for _, es := range ix.slices[key(svc.Namespace, svc.Name)] {
		if es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		var esPort *discoveryv1.EndpointPort
		for i, p := range es.Ports {
			if p.Port != nil && ptrString(p.Name) == port.Name {
				esPort = &es.Ports[i]
				break
			}
		}
		if esPort == nil {
			continue
		}
		for _, ep := range es.Endpoints {
			// A nil ready condition means ready (the EndpointSlice API's rule);
			// terminating endpoints are never ready.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				id := net.JoinHostPort(addr, strconv.Itoa(int(*esPort.Port)))
				if seen[id] {
					continue
				}
				seen[id] = true
				e := &api.Endpoint{
					Address:  addr,
					Port:     uint32(*esPort.Port),
					Zone:     ptrString(ep.Zone),
					Protocol: ix.portProtocol(esPort.AppProtocol, *esPort.Port),
					ForZones: pref.forZones(ep),
				}
				if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
					e.Pod = ref.Name
					ns := cmp.Or(ref.Namespace, es.Namespace)
					pod := ix.pods[key(ns, ref.Name)]
					if pod != nil {
						e.Identity, e.ProxyPort = ix.podIdentity(pod)
						if id, ok := identities[e.Identity]; ok {
							e.Identity = id
						} else {
							identities[e.Identity] = e.Identity
						}
					}
					e.MetricLabels = endpointMetricLabels(labels, svc, ns, ref.Name, pod)
				} else {
					e.MetricLabels = endpointMetricLabels(labels, svc, "", "", nil)
				}
				out = append(out, e)
			}
		}
	}
	sortEndpoints(out)
	return out
}

// zonePreference is how a Service asks clients to prefer endpoints close to them.
type zonePreference int

const (
	// preferNone: every client treats every endpoint alike.
	preferNone zonePreference = iota
	// preferSameZone: spec.trafficDistribution PreferClose, PreferSameZone or
	// PreferSameNode (Weft balances by zone, not node: a node is one zone's part).
	// An endpoint serves the zones of its hints, or else its own zone.
	preferSameZone
	// preferHinted: topology-mode Auto (Topology Aware Routing): the EndpointSlice
	// controller allocates endpoints to zones by their CPU share, and removes the
	// hints when it cannot do so safely; an endpoint without hints serves no zone in
	// particular, as kube-proxy reads them.
	preferHinted
)

// zonePreferenceOf reads a Service's zone preference: trafficDistribution first (the
// field supersedes the annotation when both are set, as in kube-proxy), then the
// topology-mode annotation (or its deprecated name).
func zonePreferenceOf(svc *corev1.Service) zonePreference {
	if td := svc.Spec.TrafficDistribution; td != nil {
		switch *td {
		case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone,
			corev1.ServiceTrafficDistributionPreferSameNode:
			return preferSameZone
		}
	}
	mode := svc.Annotations[corev1.AnnotationTopologyMode]
	if mode == "" {
		mode = svc.Annotations[corev1.DeprecatedAnnotationTopologyAwareHints]
	}
	if strings.EqualFold(mode, "auto") {
		return preferHinted
	}
	return preferNone
}

// ZoneAnnotationsEqual says whether two Services' annotations ask for the same zone
// preference (an annotation change moves no generation, so the destination service
// compares it to decide whether to recompile).
func ZoneAnnotationsEqual(a, b map[string]string) bool {
	return a[corev1.AnnotationTopologyMode] == b[corev1.AnnotationTopologyMode] &&
		a[corev1.DeprecatedAnnotationTopologyAwareHints] == b[corev1.DeprecatedAnnotationTopologyAwareHints]
}

// PrefersZone reports whether any endpoint of cfg prefers clients of some zone, so
// that the client's zone changes what its balancer does.
func PrefersZone(cfg *api.DestinationConfig) bool {
	for _, b := range cfg.GetBackends() {
		for _, e := range b.GetEndpoints() {
			if len(e.GetForZones()) > 0 {
				return true
			}
		}
	}
	return false
}

// WithClientZone returns cfg as seen by a client in zone: a copy with client_zone
// set and its version recomputed. cfg itself when zone is empty or no endpoint
// prefers a zone, so that destinations without a preference stay compiled once for
// every client whatever its zone.
func WithClientZone(cfg *api.DestinationConfig, zone string) (*api.DestinationConfig, error) {
	if zone == "" || cfg.GetClientZone() == zone || !PrefersZone(cfg) {
		return cfg, nil
	}
	out := proto.CloneOf(cfg)
	out.ClientZone = zone
	if err := setVersion(out); err != nil {
		return nil, fmt.Errorf("marshalling destination for zone %q: %w", zone, err)
	}
	return out, nil
}

// forZones is an endpoint's Endpoint.for_zones under the preference: its hints'
// zones, sorted and without duplicates or empty names (so snapshots are stable), or
// under preferSameZone its own zone when it has no hints. Nil: no preference.
func (p zonePreference) forZones(ep discoveryv1.Endpoint) []string {
	if p == preferNone {
		return nil
	}
	var out []string
	if ep.Hints != nil {
		for _, z := range ep.Hints.ForZones {
			if z.Name != "" {
				out = append(out, z.Name)
			}
		}
	}
	if len(out) == 0 && p == preferSameZone && ptrString(ep.Zone) != "" {
		out = append(out, *ep.Zone)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sortEndpoints orders endpoints by address (numerically, IPv4 before IPv6), then
// port: the order of every snapshot.
func sortEndpoints(out []*api.Endpoint) {
	slices.SortFunc(out, func(a, b *api.Endpoint) int {
		aa, errA := netip.ParseAddr(a.Address)
		ba, errB := netip.ParseAddr(b.Address)
		if errA == nil && errB == nil {
			if c := aa.Compare(ba); c != 0 {
				return c
			}
		} else if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
}

// meshed says whether a pod runs the weft-proxy sidecar, as the injector recognises it.
func meshed(pod *corev1.Pod) bool {
	return meshdefaults.Injected(pod.Annotations, containerNames(&pod.Spec))
}

func proxyInboundPort(pod *corev1.Pod) uint32 {
	if v, ok := pod.Annotations[meshdefaults.AnnotationInboundPort]; ok {
		if n, err := strconv.ParseUint(v, 10, 16); err == nil && n > 0 {
			return uint32(n)
		}
	}
	return DefaultProxyInboundPort
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// profileFor returns the accepted ServiceProfile for a Service: the one in the client's
// namespace, else the one in the Service's namespace. Profiles that fail validation are
// ignored, as their status says.
func (ix *index) profileFor(svc *corev1.Service, contextNS string) *meshv1alpha1.ServiceProfile {
	name := svcname.Service{Namespace: svc.Namespace, Name: svc.Name}.FQDN(ix.clusterDomain)
	find := func(ns string) *meshv1alpha1.ServiceProfile {
		for _, sp := range ix.profiles[ns] {
			if sp.Name == name && ix.validProfile(sp) {
				return sp
			}
		}
		return nil
	}
	if contextNS != "" && contextNS != svc.Namespace {
		if sp := find(contextNS); sp != nil {
			return sp
		}
	}
	return find(svc.Namespace)
}

func (ix *index) validProfile(sp *meshv1alpha1.ServiceProfile) bool {
	if v, ok := ix.profileValid.Load(sp); ok {
		return v.(bool)
	}
	valid := len(validation.ServiceProfile(sp)) == 0
	ix.profileValid.Store(sp, valid)
	return valid
}

// splitFor returns the TrafficSplit rooted at the Service that Weft honours: among the
// valid ones without matches (which Weft does not accept), the oldest, then by name.
func (ix *index) splitFor(svc *corev1.Service) *splitv1alpha2.TrafficSplit {
	var best *splitv1alpha2.TrafficSplit
	for _, ts := range ix.splits[svc.Namespace] {
		if ts.Spec.Service != svc.Name || len(ts.Spec.Matches) > 0 ||
			len(validation.TrafficSplit(ts)) > 0 {
			continue
		}
		if best == nil || older(ts.CreationTimestamp.Time, ts.Name, best.CreationTimestamp.Time, best.Name) {
			best = ts
		}
	}
	return best
}

func older(at time.Time, aName string, bt time.Time, bName string) bool {
	if !at.Equal(bt) {
		return at.Before(bt)
	}
	return aName < bName
}

// authorityService parses an in-cluster authority <name>.<ns>.svc.<domain>[:port]; a
// missing port means defPort.
func (ix *index) authorityService(authority string, defPort int32) (*api.ServiceRef, bool) {
	svc, port, ok := svcname.ParseAuthority(authority, ix.clusterDomain, svcname.FQDNOnly, uint16(defPort))
	if !ok {
		return nil, false
	}
	return &api.ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: uint32(port)}, true
}

// containerNames yields the names of a pod's init containers and containers.
func containerNames(spec *corev1.PodSpec) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for i := range cs {
				if !yield(cs[i].Name) {
					return
				}
			}
		}
	}
}
