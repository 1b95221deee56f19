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
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestAffectedEntries is the table of recompile's decision stage: which subscribed
// destinations a change can affect, and whether any of them may gain backends (which
// makes the snapshot carry the endpoints of every Service it names).
func TestAffectedEntries(t *testing.T) {
	compiled := &result{}
	// The subscribed destinations, named by their target key.
	entries := []*entry{
		// web's root is shop/web, its backends shop/web-v1 and shop/web-v2.
		{key: entryKey{target: "web"}, target: target{Namespace: "shop", Name: "web", Port: 80}, root: "shop/web",
			deps: []string{"shop/web-v1", "shop/web-v2"}, cur: compiled},
		// books has one backend, itself.
		{key: entryKey{target: "books"}, target: target{Namespace: "shop", Name: "books", Port: 80}, root: "shop/books",
			deps: []string{"shop/books"}, cur: compiled},
		// ip was subscribed by address and resolved to no Service.
		{key: entryKey{target: "ip"}, target: target{Addr: netip.MustParseAddrPort("10.0.0.9:80")}, cur: compiled},
	}
	fresh := &entry{key: entryKey{target: "new"}, target: target{Namespace: "shop", Name: "new", Port: 80}}
	set := func(keys ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, k := range keys {
			m[k] = struct{}{}
		}
		return m
	}

	cases := []struct {
		name      string
		ch        changes
		withFresh bool
		want      []string
		mayGain   bool
	}{
		{"nothing changed", changes{}, false, nil, false},
		{"the Mesh changed: all, and backends may change", changes{full: true}, false, []string{"books", "ip", "web"}, true},
		{"a new subscription compiles alone", changes{}, true, []string{"new"}, true},
		{"endpoints of a backend: only its users, from the endpoints they use",
			changes{dirty: set("shop/web-v2")}, false, []string{"web"}, false},
		{"endpoints of a Service nobody uses as a backend", changes{dirty: set("shop/other")}, false, nil, false},
		{"a route resource of a root", changes{roots: set("shop/books")}, false, []string{"books"}, true},
		{"a changed backend Service may change the backends",
			changes{changed: set("shop/web-v1"), roots: set("shop/web-v1")}, false, []string{"ip", "web"}, true},
		{"any changed Service retries the unresolved address", changes{changed: set("shop/unrelated"), roots: set("shop/unrelated")},
			false, []string{"ip"}, true},
		{"endpoints for one, a route for another", changes{dirty: set("shop/books"), roots: set("shop/web")},
			false, []string{"books", "web"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(ServerOptions{})
			for _, e := range entries {
				s.entries[e.key] = e
			}
			if tc.withFresh {
				s.entries[fresh.key] = fresh
			}
			b := s.affectedEntries(tc.ch)
			var got []string
			for _, e := range b.entries {
				got = append(got, e.key.target)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) || b.backendsMayChange != tc.mayGain {
				t.Errorf("affected %v (backends may change: %v), want %v (%v)", got, b.backendsMayChange, tc.want, tc.mayGain)
			}
		})
	}
}

// TestTakeChanges checks that the stage hands over the store's change record once and
// that a changed Service counts as a changed root.
func TestTakeChanges(t *testing.T) {
	s := NewServer(ServerOptions{})
	since := time.Now()
	s.st.full, s.st.since = true, since
	s.st.dirty["shop/a"] = struct{}{}
	s.st.changed["shop/b"] = struct{}{}
	ch := s.takeChanges()
	if !ch.full || !ch.since.Equal(since) {
		t.Errorf("full %v since %v, want true %v", ch.full, ch.since, since)
	}
	if _, ok := ch.dirty["shop/a"]; !ok {
		t.Errorf("dirty = %v, want shop/a", ch.dirty)
	}
	if _, ok := ch.roots["shop/b"]; !ok {
		t.Errorf("roots = %v, want the changed Service shop/b among them", ch.roots)
	}
	again := s.takeChanges()
	if again.full || !again.since.IsZero() || len(again.dirty)+len(again.roots)+len(again.changed) != 0 {
		t.Errorf("second take = %+v, want nothing: the record is reset", again)
	}
}

// TestApplyRetryTimeoutAnnotations: a change of a retry.weft.dev/* or
// timeout.weft.dev/* annotation alone (metadata: no generation bump, no spec change)
// recompiles the Service's destinations; other annotation churn does not.
func TestApplyRetryTimeoutAnnotations(t *testing.T) {
	meta := func(ann map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "shop", Name: "web", Generation: 1, Annotations: ann}
	}
	parent := gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "web"}
	httpRoute := func(ann map[string]string) *gatewayv1.HTTPRoute {
		return &gatewayv1.HTTPRoute{ObjectMeta: meta(ann), Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}}}}
	}
	grpcRoute := func(ann map[string]string) *gatewayv1.GRPCRoute {
		return &gatewayv1.GRPCRoute{ObjectMeta: meta(ann), Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}}}}
	}
	service := func(ann map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: meta(ann), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	before := map[string]string{"retry.weft.dev/http": "5xx", "argocd.argoproj.io/tracking-id": "a"}
	retryChanged := map[string]string{"retry.weft.dev/http": "gateway-error", "argocd.argoproj.io/tracking-id": "a"}
	timeoutAdded := map[string]string{"retry.weft.dev/http": "5xx", "timeout.weft.dev/idle": "1m", "argocd.argoproj.io/tracking-id": "a"}
	otherChanged := map[string]string{"retry.weft.dev/http": "5xx", "argocd.argoproj.io/tracking-id": "b"}
	for _, tc := range []struct {
		name     string
		old, obj any
		want     bool
	}{
		{"HTTPRoute retry annotation changed", httpRoute(before), httpRoute(retryChanged), true},
		{"HTTPRoute timeout annotation added", httpRoute(before), httpRoute(timeoutAdded), true},
		{"HTTPRoute other annotation changed", httpRoute(before), httpRoute(otherChanged), false},
		{"GRPCRoute retry annotation removed", grpcRoute(before), grpcRoute(nil), true},
		{"GRPCRoute other annotation changed", grpcRoute(before), grpcRoute(otherChanged), false},
		{"Service retry annotation changed", service(before), service(retryChanged), true},
		{"Service other annotation changed", service(before), service(otherChanged), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore("cluster.local")
			s.apply(nil, tc.old)
			if got := s.apply(tc.old, tc.obj); got != tc.want {
				t.Errorf("apply reported a change: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMirrorServicesAreBackends: a Service named only by a RequestMirror filter is
// read like a backend (its endpoints reach the compilation) and its changes recompile
// the destinations of the route's parents.
func TestMirrorServicesAreBackends(t *testing.T) {
	svcRef := func(name string, port int32) gatewayv1.BackendObjectReference {
		return gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(port)}
	}
	parent := gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "web"}
	s := newStore("cluster.local")
	s.http["shop/r"] = &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "r"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}},
		Rules: []gatewayv1.HTTPRouteRule{{
			Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror,
				RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: svcRef("shadow", 80)}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: svcRef("web", 80)},
				Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror,
					RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: svcRef("tap", 80)}}}}},
		}},
	}}
	s.grpc["shop/g"] = &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "g"}, Spec: gatewayv1.GRPCRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: parent.Group, Kind: parent.Kind, Name: "rpc"}}},
		Rules: []gatewayv1.GRPCRouteRule{{Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror,
			RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: gatewayv1.BackendObjectReference{
				Name: "rpc-shadow", Namespace: ptr.To(gatewayv1.Namespace("other")), Port: ptr.To[int32](9090)}}}}}},
	}}
	ref := map[string]struct{}{}
	s.referenced(ref)
	for _, k := range []string{"shop/shadow", "shop/tap", "other/rpc-shadow"} {
		if _, ok := ref[k]; !ok {
			t.Errorf("referenced = %v, want %s among them", ref, k)
		}
	}
	for changed, want := range map[string]string{"shop/shadow": "shop/web", "shop/tap": "shop/web", "other/rpc-shadow": "shop/rpc"} {
		roots := map[string]struct{}{}
		s.rootsNaming(map[string]struct{}{changed: {}}, roots)
		if _, ok := roots[want]; !ok || len(roots) != 1 {
			t.Errorf("a change of %s marks roots %v, want only %s", changed, roots, want)
		}
	}
}
