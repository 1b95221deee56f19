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

package inbound

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// store holds what inbound policies are compiled from, as the informers deliver it (the
// pointers are the cache's: never modified), and what changed since the last
// compilation. Guarded by Server.mu.
type store struct {
	pods       map[string]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	mesh       *meshv1alpha1.Mesh
	// The namespaced kinds a pod's policy reads from its own namespace, by namespace
	// then name.
	servers  map[string]map[string]*policyv1alpha1.Server
	policies map[string]map[string]*policyv1alpha1.AuthorizationPolicy
	http     map[string]map[string]*gatewayv1.HTTPRoute
	grpc     map[string]map[string]*gatewayv1.GRPCRoute
	limits   map[string]map[string]*policyv1alpha1.HTTPLocalRateLimitPolicy
	// The authentications, which policies reference across namespaces, by
	// namespace/name.
	meshTLS  map[string]*policyv1alpha1.MeshTLSAuthentication
	networks map[string]*policyv1alpha1.NetworkAuthentication

	// What changed: full (the Mesh) affects every pod; a namespace's policy objects
	// (or its annotations) the pods of that namespace; a pod only itself; an
	// authentication the pods of the namespaces whose policies reference it.
	full       bool
	dirtyNS    map[string]struct{}
	dirtyPods  map[string]struct{}
	dirtyAuthn map[authnKey]struct{}
}

// authnKey names an authentication: its kind (MeshTLSAuthentication or
// NetworkAuthentication), namespace and name.
type authnKey struct{ kind, ns, name string }

func newStore() *store {
	return &store{
		pods:       map[string]*corev1.Pod{},
		namespaces: map[string]*corev1.Namespace{},
		servers:    map[string]map[string]*policyv1alpha1.Server{},
		policies:   map[string]map[string]*policyv1alpha1.AuthorizationPolicy{},
		http:       map[string]map[string]*gatewayv1.HTTPRoute{},
		grpc:       map[string]map[string]*gatewayv1.GRPCRoute{},
		limits:     map[string]map[string]*policyv1alpha1.HTTPLocalRateLimitPolicy{},
		meshTLS:    map[string]*policyv1alpha1.MeshTLSAuthentication{},
		networks:   map[string]*policyv1alpha1.NetworkAuthentication{},
		dirtyNS:    map[string]struct{}{},
		dirtyPods:  map[string]struct{}{},
		dirtyAuthn: map[authnKey]struct{}{},
	}
}

func objKey(ns, name string) string { return ns + "/" + name }

// apply records an object's new state (obj nil: deleted) and reports whether anything
// a policy is compiled from changed.
func (s *store) apply(old, obj any) bool {
	cur := obj
	if cur == nil {
		cur = old
	}
	switch o := cur.(type) {
	case *corev1.Pod:
		k := objKey(o.Namespace, o.Name)
		prev := s.pods[k]
		if obj == nil {
			delete(s.pods, k)
		} else {
			s.pods[k] = o
		}
		if prev != nil && obj != nil && podEquivalent(prev, o) {
			return false
		}
		s.dirtyPods[k] = struct{}{}
	case *corev1.Namespace:
		prev := s.namespaces[o.Name]
		if obj == nil {
			delete(s.namespaces, o.Name)
		} else {
			s.namespaces[o.Name] = o
		}
		if prev != nil && obj != nil && defaultAnnotation(prev) == defaultAnnotation(o) {
			return false
		}
		s.dirtyNS[o.Name] = struct{}{}
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
	case *policyv1alpha1.Server:
		return setNamespaced(s, s.servers, old, obj, o.Namespace, o.Name, o)
	case *policyv1alpha1.AuthorizationPolicy:
		return setNamespaced(s, s.policies, old, obj, o.Namespace, o.Name, o)
	case *gatewayv1.HTTPRoute:
		return setNamespaced(s, s.http, old, obj, o.Namespace, o.Name, o)
	case *gatewayv1.GRPCRoute:
		return setNamespaced(s, s.grpc, old, obj, o.Namespace, o.Name, o)
	case *policyv1alpha1.HTTPLocalRateLimitPolicy:
		return setNamespaced(s, s.limits, old, obj, o.Namespace, o.Name, o)
	case *policyv1alpha1.MeshTLSAuthentication:
		if specUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.meshTLS, objKey(o.Namespace, o.Name), o, obj == nil)
		s.dirtyAuthn[authnKey{"MeshTLSAuthentication", o.Namespace, o.Name}] = struct{}{}
	case *policyv1alpha1.NetworkAuthentication:
		if specUnchanged(old, obj) {
			return false
		}
		setOrDelete(s.networks, objKey(o.Namespace, o.Name), o, obj == nil)
		s.dirtyAuthn[authnKey{"NetworkAuthentication", o.Namespace, o.Name}] = struct{}{}
	default:
		return false
	}
	return true
}

func setNamespaced[T any](s *store, m map[string]map[string]*T, old, obj any, ns, name string, o *T) bool {
	if specUnchanged(old, obj) {
		// A status write (the policy status reconciler's) compiles the same.
		return false
	}
	if obj == nil {
		delete(m[ns], name)
		if len(m[ns]) == 0 {
			delete(m, ns)
		}
	} else {
		if m[ns] == nil {
			m[ns] = map[string]*T{}
		}
		m[ns][name] = o
	}
	s.dirtyNS[ns] = struct{}{}
	return true
}

func setOrDelete[T any](m map[string]*T, k string, v *T, deleted bool) {
	if deleted {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// specUnchanged says whether an update left the spec alone: these kinds have a status
// subresource, so their generation moves exactly when the spec does.
func specUnchanged(old, obj any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := obj.(metav1.Object)
	return ok1 && ok2 && old != nil && obj != nil && n.GetGeneration() != 0 && o.GetGeneration() == n.GetGeneration()
}

// podEquivalent says whether two versions of a pod compile the same policy: its labels
// (Server selectors), ServiceAccount (who may watch it), default-policy annotation and
// containers (named ports, probes). The destination cache keeps pods slim, so the
// containers are only those fields.
func podEquivalent(a, b *corev1.Pod) bool {
	return a.Spec.ServiceAccountName == b.Spec.ServiceAccountName &&
		maps.Equal(a.Labels, b.Labels) &&
		a.Annotations[meshdefaults.AnnotationDefaultInboundPolicy] == b.Annotations[meshdefaults.AnnotationDefaultInboundPolicy] &&
		equality.Semantic.DeepEqual(a.Spec.Containers, b.Spec.Containers) &&
		equality.Semantic.DeepEqual(a.Spec.InitContainers, b.Spec.InitContainers)
}

func defaultAnnotation(ns *corev1.Namespace) string {
	return ns.Annotations[meshdefaults.AnnotationDefaultInboundPolicy]
}

// input gathers what one pod's policy is compiled from.
func (s *store) input(pod *corev1.Pod) Input {
	ns := pod.Namespace
	in := Input{Pod: pod, Namespace: s.namespaces[ns], Mesh: s.mesh}
	in.Servers = slices.Collect(maps.Values(s.servers[ns]))
	in.AuthorizationPolicies = slices.Collect(maps.Values(s.policies[ns]))
	in.HTTPRoutes = slices.Collect(maps.Values(s.http[ns]))
	in.GRPCRoutes = slices.Collect(maps.Values(s.grpc[ns]))
	in.RateLimitPolicies = slices.Collect(maps.Values(s.limits[ns]))
	// Only the authentications the namespace's policies name: the rest cannot change
	// the result.
	for _, p := range s.policies[ns] {
		for _, ref := range p.Spec.RequiredAuthenticationRefs {
			k := objKey(ref.Namespace, ref.Name)
			if ref.Namespace == "" {
				k = objKey(p.Namespace, ref.Name)
			}
			if m := s.meshTLS[k]; m != nil && ref.Kind == "MeshTLSAuthentication" && !slices.Contains(in.MeshTLSAuthentications, m) {
				in.MeshTLSAuthentications = append(in.MeshTLSAuthentications, m)
			}
			if n := s.networks[k]; n != nil && ref.Kind == "NetworkAuthentication" && !slices.Contains(in.NetworkAuthentications, n) {
				in.NetworkAuthentications = append(in.NetworkAuthentications, n)
			}
		}
	}
	return in
}

// namespaceNames says whether a namespace's policies reference one of the changed
// authentications.
func (s *store) namespaceNames(ns string, changed map[authnKey]struct{}) bool {
	for _, p := range s.policies[ns] {
		for _, ref := range p.Spec.RequiredAuthenticationRefs {
			refNS := ref.Namespace
			if refNS == "" {
				refNS = p.Namespace
			}
			if _, ok := changed[authnKey{ref.Kind, refNS, ref.Name}]; ok {
				return true
			}
		}
	}
	return false
}

// handler feeds informer events into the server's store.
type handler struct{ s *Server }

func (h handler) OnAdd(obj any, _ bool) { h.s.observe(nil, obj) }
func (h handler) OnUpdate(old, obj any) { h.s.observe(old, obj) }
func (h handler) OnDelete(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	h.s.observe(obj, nil)
}

var _ toolscache.ResourceEventHandler = handler{}
