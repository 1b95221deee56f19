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
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/internal/validation"
)

// store holds the objects the compiler reads, as the informers deliver them (the
// pointers are the cache's: never modified), plus the indexes that tell which
// destinations a change can affect. It is guarded by Server.storeMu.
type store struct {
	services map[string]*corev1.Service
	// byIP maps a cluster IP to its Service's key, to resolve address targets.
	byIP           map[string]string
	endpointSlices map[string]*discoveryv1.EndpointSlice
	// slicesBySvc maps a Service key to the keys of its EndpointSlices.
	slicesBySvc map[string]map[string]struct{}
	pods        map[string]*corev1.Pod
	// podSlices maps a Pod key to the keys of the EndpointSlices that target it.
	// The sets of podSlices and podIndex are slices (keySet): they almost always hold
	// one key, and an inner map per pod cost about 300 bytes more each, 60 MB at
	// 100,000 pods.
	podSlices map[string]keySet
	// podIndex maps a pod IP (podIPKey) and a pod DNS name (podDNSKey) to the keys of
	// the pods that have it, to resolve pod targets. Only pods that own their IP
	// (compiler.OwnsIP) are indexed by IP.
	podIndex map[string]keySet
	// nodeZones maps a Node's name to its topology.kubernetes.io/zone label, for the
	// zone of a client (Server.clientZone). Nothing compiled depends on it.
	nodeZones map[string]string

	profiles map[string]*meshv1alpha1.ServiceProfile
	http     map[string]*gatewayv1.HTTPRoute
	grpc     map[string]*gatewayv1.GRPCRoute
	splits   map[string]*splitv1alpha2.TrafficSplit
	faults   map[string]*meshv1alpha1.HTTPFault
	mesh     *meshv1alpha1.Mesh

	// What changed since the last compilation: full means anything may have (the
	// Mesh); dirty are Services whose endpoints (or endpoints' pods) changed, which
	// only affects destinations with those Services as backends; roots are Services
	// whose route resources (ServiceProfile, HTTPRoute, GRPCRoute, TrafficSplit)
	// changed, which only affects destinations with that Service as their root (the
	// compiler reads route resources only for the Service compiled); changed are
	// Services whose spec changed, which affects the destinations they are the root or
	// a backend of, those whose route resources name them, and address targets.
	full    bool
	since   time.Time // of the first change not compiled yet
	dirty   map[string]struct{}
	roots   map[string]struct{}
	changed map[string]struct{}
	// podTargets are the podIndex keys of pods that changed in a way a pod target
	// compiles differently (added, gone, meshed, identity, addresses, phase).
	podTargets map[string]struct{}

	clusterDomain string
}

func newStore(clusterDomain string) *store {
	return &store{
		clusterDomain:  clusterDomain,
		roots:          map[string]struct{}{},
		changed:        map[string]struct{}{},
		services:       map[string]*corev1.Service{},
		byIP:           map[string]string{},
		endpointSlices: map[string]*discoveryv1.EndpointSlice{},
		slicesBySvc:    map[string]map[string]struct{}{},
		pods:           map[string]*corev1.Pod{},
		podSlices:      map[string]keySet{},
		podIndex:       map[string]keySet{},
		nodeZones:      map[string]string{},
		podTargets:     map[string]struct{}{},
		profiles:       map[string]*meshv1alpha1.ServiceProfile{},
		http:           map[string]*gatewayv1.HTTPRoute{},
		grpc:           map[string]*gatewayv1.GRPCRoute{},
		splits:         map[string]*splitv1alpha2.TrafficSplit{},
		faults:         map[string]*meshv1alpha1.HTTPFault{},
		dirty:          map[string]struct{}{},
	}
}

func objKey(ns, name string) string { return ns + "/" + name }

// keySet is a small set of object keys, in no order.
type keySet []string

// add returns the set with k in it.
func (ks keySet) add(k string) keySet {
	if slices.Contains(ks, k) {
		return ks
	}
	return append(ks, k)
}

// removeKey takes k out of the set m[key], and the set out of m once empty.
func removeKey(m map[string]keySet, key, k string) {
	ks := m[key]
	i := slices.Index(ks, k)
	if i < 0 {
		return
	}
	if len(ks) == 1 {
		delete(m, key)
		return
	}
	// A copy, not slices.Delete: the old backing array may be shared with a caller
	// ranging over it.
	m[key] = slices.Concat(ks[:i], ks[i+1:])
}

// apply records an object's new state (obj nil: deleted) and what it may affect. It
// reports whether anything the compiler reads changed.
func (s *store) apply(old, obj any) bool {
	cur := obj
	if cur == nil {
		cur = old
	}
	switch o := cur.(type) {
	case *corev1.Node:
		// A client's zone is read when its stream opens; changing it recompiles
		// nothing.
		if z := o.Labels[corev1.LabelTopologyZone]; obj != nil && z != "" {
			s.nodeZones[o.Name] = z
		} else {
			delete(s.nodeZones, o.Name)
		}
		return false
	case *corev1.Service:
		if prev, ok := old.(*corev1.Service); ok && obj != nil && equality.Semantic.DeepEqual(prev.Spec, o.Spec) &&
			validation.RetryTimeoutAnnotationsEqual(prev.Annotations, o.Annotations) &&
			compiler.ZoneAnnotationsEqual(prev.Annotations, o.Annotations) {
			// Status and other metadata changes compile the same.
			return false
		}
		k := objKey(o.Namespace, o.Name)
		if prev := s.services[k]; prev != nil {
			for _, ip := range clusterIPs(prev) {
				if s.byIP[ip] == k {
					delete(s.byIP, ip)
				}
			}
		}
		if obj == nil {
			delete(s.services, k)
		} else {
			s.services[k] = o
			for _, ip := range clusterIPs(o) {
				s.byIP[ip] = k
			}
		}
		s.changed[k] = struct{}{}
	case *discoveryv1.EndpointSlice:
		s.applySlice(o, obj == nil)
	case *corev1.Pod:
		k := objKey(o.Namespace, o.Name)
		prev := s.pods[k]
		var prevKeys, keys []string
		if prev != nil {
			prevKeys = podIndexKeys(prev)
		}
		if obj == nil {
			delete(s.pods, k)
		} else {
			s.pods[k] = o
			keys = podIndexKeys(o)
		}
		if !slices.Equal(prevKeys, keys) {
			s.indexPod(k, prevKeys, false)
			s.indexPod(k, keys, true)
		}
		// Only what the compiler reads of a pod matters: whether it is meshed, its
		// ServiceAccount, its proxy's inbound port, and for pod targets its
		// addresses, names and phase. Other status churn changes none.
		if prev != nil && obj != nil && slices.Equal(prevKeys, keys) && podEquivalent(prev, o) {
			return false
		}
		for _, ik := range append(prevKeys, keys...) {
			s.podTargets[ik] = struct{}{}
		}
		for _, sk := range s.podSlices[k] {
			if es := s.endpointSlices[sk]; es != nil {
				s.markSvc(es.Namespace, es.Labels[discoveryv1.LabelServiceName])
			}
		}
	case *meshv1alpha1.ServiceProfile:
		if specUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.profiles, objKey(o.Namespace, o.Name), o, obj == nil)
		s.markRoots(old, obj, s.profileRoots)
	case *gatewayv1.HTTPRoute:
		if specUnchanged(old, obj) && annotationsUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.http, objKey(o.Namespace, o.Name), o, obj == nil)
		s.markRoots(old, obj, func(o any) []string {
			r := o.(*gatewayv1.HTTPRoute)
			return parentRoots(r.Namespace, r.Spec.ParentRefs)
		})
	case *gatewayv1.GRPCRoute:
		if specUnchanged(old, obj) && annotationsUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.grpc, objKey(o.Namespace, o.Name), o, obj == nil)
		s.markRoots(old, obj, func(o any) []string {
			r := o.(*gatewayv1.GRPCRoute)
			return parentRoots(r.Namespace, r.Spec.ParentRefs)
		})
	case *splitv1alpha2.TrafficSplit:
		if specUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.splits, objKey(o.Namespace, o.Name), o, obj == nil)
		s.markRoots(old, obj, func(o any) []string {
			ts := o.(*splitv1alpha2.TrafficSplit)
			return []string{objKey(ts.Namespace, ts.Spec.Service)}
		})
	case *meshv1alpha1.HTTPFault:
		if specUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.faults, objKey(o.Namespace, o.Name), o, obj == nil)
		s.markFaultRoots(o.Namespace, o.Name)
	case *meshv1alpha1.Mesh:
		if o.Name != meshv1alpha1.MeshName || specUnchanged(old, obj) {
			return false
		}
		if obj == nil {
			s.mesh = nil
		} else {
			s.mesh = o
		}
		s.full = true
	default:
		return false
	}
	return true
}

// indexPod adds a pod to (or removes it from) the index of pod targets under keys.
func (s *store) indexPod(k string, keys []string, add bool) {
	for _, ik := range keys {
		if add {
			s.podIndex[ik] = s.podIndex[ik].add(k)
		} else {
			removeKey(s.podIndex, ik, k)
		}
	}
}

// podIndexKeys are the keys a pod target can find the pod under: its IPs when it owns
// them, and its DNS name when it has a hostname and a subdomain.
func podIndexKeys(p *corev1.Pod) []string {
	var out []string
	if compiler.OwnsIP(p) {
		for _, ip := range compiler.PodIPs(p) {
			if a, err := netip.ParseAddr(ip); err == nil {
				out = append(out, podIPKey(a.Unmap().String()))
			}
		}
	}
	if p.Spec.Hostname != "" && p.Spec.Subdomain != "" {
		out = append(out, podDNSKey(p.Namespace, p.Spec.Subdomain, p.Spec.Hostname))
	}
	return out
}

// podByIndex returns the one pod under a pod-index key, or why there is none.
func (s *store) podByIndex(ik string) (*corev1.Pod, string) {
	keys := s.podIndex[ik]
	switch len(keys) {
	case 0:
		return nil, "no pod has it"
	case 1:
		return s.pods[keys[0]], ""
	}
	// Two live pods with one address (or DNS name) is a transient state (a pod IP
	// reused before the old pod's deletion was seen): naming either could give the
	// other's identity, so neither is named until it resolves.
	return nil, fmt.Sprintf("%d pods claim it", len(keys))
}

func (s *store) applySlice(es *discoveryv1.EndpointSlice, deleted bool) {
	k := objKey(es.Namespace, es.Name)
	if prev := s.endpointSlices[k]; prev != nil {
		s.unindexSlice(k, prev)
		// The Service it belonged to loses endpoints (its label may have changed).
		s.markSvc(prev.Namespace, prev.Labels[discoveryv1.LabelServiceName])
	}
	if deleted {
		delete(s.endpointSlices, k)
		return
	}
	s.endpointSlices[k] = es
	svc := es.Labels[discoveryv1.LabelServiceName]
	if svc != "" {
		sk := objKey(es.Namespace, svc)
		if s.slicesBySvc[sk] == nil {
			s.slicesBySvc[sk] = map[string]struct{}{}
		}
		s.slicesBySvc[sk][k] = struct{}{}
	}
	for _, ep := range es.Endpoints {
		if pk, ok := podRef(es, ep); ok {
			s.podSlices[pk] = s.podSlices[pk].add(k)
			// The pod's ports' protocol hints may have changed with the slice.
			if p := s.pods[pk]; p != nil {
				for _, ik := range podIndexKeys(p) {
					s.podTargets[ik] = struct{}{}
				}
			}
		}
	}
	s.markSvc(es.Namespace, svc)
}

func (s *store) unindexSlice(k string, es *discoveryv1.EndpointSlice) {
	if svc := es.Labels[discoveryv1.LabelServiceName]; svc != "" {
		sk := objKey(es.Namespace, svc)
		delete(s.slicesBySvc[sk], k)
		if len(s.slicesBySvc[sk]) == 0 {
			delete(s.slicesBySvc, sk)
		}
	}
	for _, ep := range es.Endpoints {
		if pk, ok := podRef(es, ep); ok {
			removeKey(s.podSlices, pk, k)
		}
	}
}

func podRef(es *discoveryv1.EndpointSlice, ep discoveryv1.Endpoint) (string, bool) {
	if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
		return "", false
	}
	return objKey(cmp.Or(ep.TargetRef.Namespace, es.Namespace), ep.TargetRef.Name), true
}

// markRoots marks the root Services of both versions of a route resource.
func (s *store) markRoots(old, obj any, roots func(any) []string) {
	for _, o := range []any{old, obj} {
		if o == nil {
			continue
		}
		for _, r := range roots(o) {
			s.roots[r] = struct{}{}
		}
	}
}

// profileRoots is the Service a ServiceProfile is for: its name is the Service's
// fully qualified name, <name>.<namespace>.svc.<cluster domain>.
func (s *store) profileRoots(o any) []string {
	sp := o.(*meshv1alpha1.ServiceProfile)
	svc, ok := svcname.Parse(sp.Name, s.clusterDomain, svcname.FQDNOnly)
	if !ok {
		return nil
	}
	return []string{objKey(svc.Namespace, svc.Name)}
}

// markFaultRoots marks the roots of the routes that name the HTTPFault ns/name: the
// HTTPRoutes and GRPCRoutes of its namespace whose rules' ExtensionRef filters name it,
// and the ServiceProfiles of its namespace whose routes do.
func (s *store) markFaultRoots(ns, name string) {
	for _, r := range s.http {
		if r.Namespace == ns && slices.Contains(compiler.HTTPFaultRefs(r.Spec.Rules), name) {
			s.markRoots(nil, r, func(o any) []string { return parentRoots(ns, o.(*gatewayv1.HTTPRoute).Spec.ParentRefs) })
		}
	}
	for _, r := range s.grpc {
		if r.Namespace == ns && slices.Contains(compiler.GRPCFaultRefs(r.Spec.Rules), name) {
			s.markRoots(nil, r, func(o any) []string { return parentRoots(ns, o.(*gatewayv1.GRPCRoute).Spec.ParentRefs) })
		}
	}
	for _, sp := range s.profiles {
		if sp.Namespace != ns {
			continue
		}
		for _, rt := range sp.Spec.Routes {
			if rt.Fault == name {
				s.markRoots(nil, sp, s.profileRoots)
				break
			}
		}
	}
}

// parentRoots are the Services a route's parentRefs name.
func parentRoots(routeNS string, refs []gatewayv1.ParentReference) []string {
	var out []string
	for _, pr := range refs {
		if compiler.IsServiceParent(pr) {
			out = append(out, objKey(compiler.ParentNamespace(routeNS, pr), string(pr.Name)))
		}
	}
	return out
}

// specUnchanged says whether an update left the spec alone: these kinds have a status
// subresource, so their generation moves exactly when the spec does, and the
// compiler reads only their spec (and name and creation time, which never change).
func specUnchanged(old, obj any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := obj.(metav1.Object)
	return ok1 && ok2 && old != nil && obj != nil && n.GetGeneration() != 0 && o.GetGeneration() == n.GetGeneration()
}

// annotationsUnchanged says whether an update left a route's retry and timeout
// annotations alone: they are metadata, so the generation does not move with them.
func annotationsUnchanged(old, obj any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := obj.(metav1.Object)
	return ok1 && ok2 && old != nil && obj != nil && validation.RetryTimeoutAnnotationsEqual(o.GetAnnotations(), n.GetAnnotations())
}

func (s *store) markSvc(ns, name string) {
	if name != "" {
		s.dirty[objKey(ns, name)] = struct{}{}
	}
}

func setOrDelete[T any](m map[string]*T, k string, v *T, deleted bool) {
	if deleted {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// referenced adds to set every Service that a route resource names as a backend: with
// the destinations' roots, these are all the Services whose endpoints a compilation
// can read.
func (s *store) referenced(set map[string]struct{}) {
	add := func(ns, name string) { set[objKey(ns, name)] = struct{}{} }
	ref := func(routeNS string, r gatewayv1.BackendObjectReference) {
		ns := routeNS
		if r.Namespace != nil && *r.Namespace != "" {
			ns = string(*r.Namespace)
		}
		add(ns, string(r.Name))
	}
	for _, r := range s.http {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				ref(r.Namespace, b.BackendObjectReference)
			}
			for _, m := range compiler.HTTPRuleMirrorRefs(rule) {
				ref(r.Namespace, m)
			}
		}
	}
	for _, r := range s.grpc {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				ref(r.Namespace, b.BackendObjectReference)
			}
			for _, m := range compiler.GRPCRuleMirrorRefs(rule) {
				ref(r.Namespace, m)
			}
		}
	}
	for _, ts := range s.splits {
		for _, b := range ts.Spec.Backends {
			add(ts.Namespace, b.Service)
		}
	}
	for _, sp := range s.profiles {
		for _, d := range sp.Spec.DstOverrides {
			if t, err := parseAuthority(d.Authority, s.clusterDomain); err == nil && t.Name != "" {
				add(t.Namespace, t.Name)
			}
		}
	}
}

// routeNamespaces are the namespaces with a ServiceProfile, HTTPRoute or GRPCRoute.
func (s *store) routeNamespaces() map[string]bool {
	out := map[string]bool{}
	for _, o := range s.profiles {
		out[o.Namespace] = true
	}
	for _, o := range s.http {
		out[o.Namespace] = true
	}
	for _, o := range s.grpc {
		out[o.Namespace] = true
	}
	return out
}

// rootsNaming adds to roots the root Services of every route resource that names one
// of the Services in changed as a backend.
func (s *store) rootsNaming(changed, roots map[string]struct{}) {
	names := func(routeNS string, refs []gatewayv1.BackendObjectReference) bool {
		for _, r := range refs {
			ns := routeNS
			if r.Namespace != nil && *r.Namespace != "" {
				ns = string(*r.Namespace)
			}
			if _, ok := changed[objKey(ns, string(r.Name))]; ok {
				return true
			}
		}
		return false
	}
	mark := func(keys []string) {
		for _, k := range keys {
			roots[k] = struct{}{}
		}
	}
	for _, r := range s.http {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendObjectReference)
			}
			refs = append(refs, compiler.HTTPRuleMirrorRefs(rule)...)
		}
		if names(r.Namespace, refs) {
			mark(parentRoots(r.Namespace, r.Spec.ParentRefs))
		}
	}
	for _, r := range s.grpc {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendObjectReference)
			}
			refs = append(refs, compiler.GRPCRuleMirrorRefs(rule)...)
		}
		if names(r.Namespace, refs) {
			mark(parentRoots(r.Namespace, r.Spec.ParentRefs))
		}
	}
	for _, ts := range s.splits {
		for _, b := range ts.Spec.Backends {
			if _, ok := changed[objKey(ts.Namespace, b.Service)]; ok {
				mark([]string{objKey(ts.Namespace, ts.Spec.Service)})
			}
		}
	}
	for _, sp := range s.profiles {
		for _, d := range sp.Spec.DstOverrides {
			if t, err := parseAuthority(d.Authority, s.clusterDomain); err == nil && t.Name != "" {
				if _, ok := changed[objKey(t.Namespace, t.Name)]; ok {
					mark(s.profileRoots(sp))
				}
			}
		}
	}
}

// state builds the compiler's input from the Services in services, the endpoints
// (and their pods) of the Services in endpoints, and every route resource.
func (s *store) state(clusterDomain string, services, endpoints, pods map[string]struct{}) *compiler.State {
	st := &compiler.State{ClusterDomain: clusterDomain}
	st.SetMesh(s.mesh)
	st.Services = make([]corev1.Service, 0, len(services))
	for k := range services {
		if o := s.services[k]; o != nil {
			st.Services = append(st.Services, *o)
		}
	}
	seenPods := map[string]bool{}
	for svc := range endpoints {
		for sk := range s.slicesBySvc[svc] {
			es := s.endpointSlices[sk]
			st.EndpointSlices = append(st.EndpointSlices, *es)
			for _, ep := range es.Endpoints {
				if pk, ok := podRef(es, ep); ok && !seenPods[pk] {
					seenPods[pk] = true
					if p := s.pods[pk]; p != nil {
						st.Pods = append(st.Pods, *p)
					}
				}
			}
		}
	}
	for pk := range pods {
		if p := s.pods[pk]; p != nil && !seenPods[pk] {
			seenPods[pk] = true
			st.Pods = append(st.Pods, *p)
		}
	}
	for _, o := range s.profiles {
		st.ServiceProfiles = append(st.ServiceProfiles, *o)
	}
	for _, o := range s.http {
		st.HTTPRoutes = append(st.HTTPRoutes, *o)
	}
	for _, o := range s.grpc {
		st.GRPCRoutes = append(st.GRPCRoutes, *o)
	}
	for _, o := range s.splits {
		st.TrafficSplits = append(st.TrafficSplits, *o)
	}
	for _, o := range s.faults {
		st.HTTPFaults = append(st.HTTPFaults, *o)
	}
	return st
}

func clusterIPs(svc *corev1.Service) []string {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if ip != "" && ip != corev1.ClusterIPNone {
			out = append(out, ip)
		}
	}
	return out
}

// podEquivalent says whether two versions of a pod with the same podIndexKeys compile
// the same.
func podEquivalent(a, b *corev1.Pod) bool {
	return a.Spec.ServiceAccountName == b.Spec.ServiceAccountName &&
		isMeshed(a) == isMeshed(b) &&
		sameWorkload(a, b) &&
		a.Annotations[meshdefaults.AnnotationInboundPort] == b.Annotations[meshdefaults.AnnotationInboundPort]
}

func isMeshed(p *corev1.Pod) bool {
	return meshdefaults.Injected(p.Annotations, func(yield func(string) bool) {
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range cs {
				if !yield(cs[i].Name) {
					return
				}
			}
		}
	})
}

// sameWorkload says whether two versions of a pod have the same metric labels of
// their workload (compiler.WorkloadOf and the pod-template-hash), which endpoints
// carry.
func sameWorkload(a, b *corev1.Pod) bool {
	ak, an := compiler.WorkloadOf(a)
	bk, bn := compiler.WorkloadOf(b)
	return ak == bk && an == bn &&
		a.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == b.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
}

// stripManagedFields drops metadata.managedFields, which the compiler never reads and
// which is often the largest part of an object.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// slimPod keeps only what the compilers read of a pod: its name and namespace, labels
// (Server podSelectors), ServiceAccount, Weft's annotations, its IPs, phase, host
// network, hostname and subdomain (pod-IP and pod-DNS-name destinations), its
// controller's kind and name (its endpoints' workload metric label, the owner
// attributes of its proxy's trace spans), its containers' names, ports and HTTP probes
// (Server ports by name, the probe paths inbound policy always admits), its node (a
// client's zone), and whether it is meshed.
// At 100,000 pods this is most of the cache's memory, so it keeps no container that
// carries none of that, shares what the pods of one workload have in common (see
// intern.go), and records a pod as meshed by the injector's annotation only
// when its proxy container does not already say so: a map for one marker costs more
// than 250 bytes a pod.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	ann := slimAnnotations(p.Annotations)
	init, ctrs := slimContainers(p.Spec.InitContainers, true), slimContainers(p.Spec.Containers, false)
	switch {
	case slices.ContainsFunc(slices.Concat(init, ctrs), func(c corev1.Container) bool { return c.Name == meshdefaults.ProxyContainerName }):
		// The proxy's container says it (meshdefaults.Injected).
		delete(ann, meshdefaults.AnnotationInjected)
		if len(ann) == 0 {
			ann = nil
		}
	case isMeshed(p):
		if ann == nil {
			ann = map[string]string{}
		}
		ann[meshdefaults.AnnotationInjected] = ""
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: internString(p.Namespace),
			// No UID: nothing compiled reads it, and it is 48 bytes a pod.
			ResourceVersion:   p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp,
			DeletionTimestamp: p.DeletionTimestamp,
			Labels:            internMap(p.Labels),
			Annotations:       internMap(ann),
			OwnerReferences:   internOwners(slimOwner(p)),
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: internString(p.Spec.ServiceAccountName),
			NodeName:           internString(p.Spec.NodeName),
			Hostname:           p.Spec.Hostname,
			Subdomain:          p.Spec.Subdomain,
			HostNetwork:        p.Spec.HostNetwork,
			InitContainers:     internContainers(init, true),
			Containers:         internContainers(ctrs, false),
		},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(internString(string(p.Status.Phase))), PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

// slimOwner keeps the pod's controller reference, its kind and name only.
func slimOwner(p *corev1.Pod) []metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, Controller: ref.Controller}}
}

// slimEndpointSlice drops from an EndpointSlice, in place, what nothing compiled
// reads: its labels but the Service's name (the EndpointSlice controller copies the
// Service's labels onto every slice), annotations, owner references, and of each
// endpoint its node, hostname and the target's UID, version and field path. What stays
// is what internal/compiler reads (address type, ports, and of each endpoint its
// addresses, conditions, zone, hints and target pod) and the store's index (the
// Service label, the target pod). Zones, conditions and the target's kind and
// namespace are shared between endpoints (intern.go).
func slimEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	es.ManagedFields, es.Annotations, es.OwnerReferences, es.GenerateName = nil, nil, nil, ""
	if len(es.Labels) > 1 {
		svc, ok := es.Labels[discoveryv1.LabelServiceName]
		es.Labels = nil
		if ok {
			es.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
		}
	}
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		ep.NodeName, ep.Hostname, ep.DeprecatedTopology = nil, nil, nil
		ep.Zone = internZone(ep.Zone)
		c := &ep.Conditions
		c.Ready, c.Serving, c.Terminating = internBool(c.Ready), internBool(c.Serving), internBool(c.Terminating)
		if r := ep.TargetRef; r != nil {
			ep.TargetRef = &corev1.ObjectReference{Kind: internString(r.Kind), Namespace: internString(r.Namespace), Name: r.Name}
		}
	}
	return es, nil
}

// slimNode keeps a Node's name and its zone label: the zone of the clients on it
// (Server.clientZone). A Node object is large (images, conditions) and clusters have
// thousands.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	var labels map[string]string
	if z, ok := n.Labels[corev1.LabelTopologyZone]; ok {
		labels = map[string]string{corev1.LabelTopologyZone: z}
	}
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              n.Name,
			UID:               n.UID,
			ResourceVersion:   n.ResourceVersion,
			CreationTimestamp: n.CreationTimestamp,
			DeletionTimestamp: n.DeletionTimestamp,
			Labels:            labels,
		},
	}, nil
}

// slimNamespace keeps what the inbound policy compiler reads of a namespace: its name,
// labels and Weft's annotations (config.weft.dev/default-inbound-policy).
func slimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{
		TypeMeta: ns.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              ns.Name,
			UID:               ns.UID,
			ResourceVersion:   ns.ResourceVersion,
			CreationTimestamp: ns.CreationTimestamp,
			DeletionTimestamp: ns.DeletionTimestamp,
			Labels:            ns.Labels,
			Annotations:       slimAnnotations(ns.Annotations),
		},
	}, nil
}

// slimContainers keeps each container's name, ports and HTTP probes; of init
// containers only the sidecars (restartPolicy Always), which serve like containers.
// A container with neither ports nor HTTP probes is dropped (nothing compiled reads
// its name), except the proxy's, whose name says the pod is meshed.
func slimContainers(cs []corev1.Container, init bool) []corev1.Container {
	var out []corev1.Container
	for i := range cs {
		c := &cs[i]
		if init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			continue
		}
		lp, rp, sp := slimProbe(c.LivenessProbe), slimProbe(c.ReadinessProbe), slimProbe(c.StartupProbe)
		if len(c.Ports) == 0 && lp == nil && rp == nil && sp == nil && c.Name != meshdefaults.ProxyContainerName {
			continue
		}
		if out == nil {
			// Most pods keep one or two: no room for more.
			out = make([]corev1.Container, 0, len(cs)-i)
		}
		out = append(out, corev1.Container{
			Name:           c.Name,
			Ports:          c.Ports,
			RestartPolicy:  c.RestartPolicy,
			LivenessProbe:  lp,
			ReadinessProbe: rp,
			StartupProbe:   sp,
		})
	}
	return out
}

func slimProbe(p *corev1.Probe) *corev1.Probe {
	if p == nil || p.HTTPGet == nil {
		return nil
	}
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: p.HTTPGet.Path, Port: p.HTTPGet.Port, Scheme: p.HTTPGet.Scheme}}}
}

// slimAnnotations keeps Weft's annotations: kubectl's last-applied-configuration can
// be kilobytes per pod.
func slimAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if k == meshdefaults.AnnotationInjected {
			// Only its presence matters, not the JSON record of what was injected.
			v = ""
		} else if k != meshdefaults.AnnotationInject && !strings.HasPrefix(k, meshdefaults.ConfigPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// handler feeds informer events into the store.
type handler struct{ s *Server }

func (h handler) OnAdd(obj any, _ bool) { h.s.observe(nil, obj) }
func (h handler) OnUpdate(old, obj any) { h.s.observe(old, obj) }
func (h handler) OnDelete(obj any)      { h.s.observe(unwrapTombstone(obj), nil) }
func unwrapTombstone(obj any) any {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

var _ toolscache.ResourceEventHandler = handler{}

// sortedKeys returns a set's keys in order, for deterministic iteration in logs and tests.
func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
