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
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/latest"
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
		{"endpoints of two backends and a new subscription", changes{dirty: set("shop/web-v1", "shop/web-v2", "shop/books")},
			true, []string{"books", "new", "web"}, true},
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
			add := func(e *entry) {
				c := &entry{key: e.key, target: e.target, cur: e.cur}
				s.entries[c.key] = c
				if c.cur == nil {
					s.uncompiled[c] = struct{}{}
				}
				s.setRoot(c, e.root)
			}
			for _, e := range entries {
				add(e)
				s.setDeps(s.entries[e.key], e.deps)
			}
			if tc.withFresh {
				add(fresh)
			}
			names := func(b *batch) []string {
				var got []string
				for _, e := range b.entries {
					got = append(got, e.key.target)
				}
				slices.Sort(got)
				return got
			}
			b := s.affectedEntries(tc.ch)
			if got := names(b); !slices.Equal(got, tc.want) || b.backendsMayChange != tc.mayGain {
				t.Errorf("affected %v (backends may change: %v), want %v (%v)", got, b.backendsMayChange, tc.want, tc.mayGain)
			}
			// The indexed answer (endpoints-only changes) is the scan's.
			scan := s.scanAffected(tc.ch)
			if got, want := names(b), names(scan); !slices.Equal(got, want) || b.backendsMayChange != scan.backendsMayChange {
				t.Errorf("indexed %v (%v), scan %v (%v)", got, b.backendsMayChange, want, scan.backendsMayChange)
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

// TestEntryIndexesFollowEntries: the indexes affectedEntries reads (byDep, byRoot,
// uncompiled) follow an entry from its subscription through compilations that change
// its backends to its last unsubscription, and hold nothing of it afterwards.
func TestEntryIndexesFollowEntries(t *testing.T) {
	s := NewServer(ServerOptions{})
	key := entryKey{target: "web"}
	sub := latest.New[result]()
	s.subscribe(key, target{Namespace: "shop", Name: "web", Port: 80}, sub)
	e := s.entries[key]
	if _, ok := s.uncompiled[e]; !ok {
		t.Fatal("a new entry is not in uncompiled")
	}
	compile := func(deps ...string) {
		s.publish(&batch{entries: []*entry{e}, results: []*result{{notFound: strings.Join(deps, ",")}},
			deps: [][]string{deps}, targets: []compiler.Target{{Namespace: "shop", Name: "web"}}})
	}
	in := func(dep string) bool { _, ok := s.byDep[dep][e]; return ok }
	compile("shop/web-v1", "shop/web-v2")
	if _, ok := s.uncompiled[e]; ok || !in("shop/web-v1") || !in("shop/web-v2") {
		t.Fatalf("after a compilation: uncompiled %v, byDep %v", s.uncompiled, s.byDep)
	}
	if _, ok := s.byRoot["shop/web"][e]; !ok || len(s.byRoot) != 1 {
		t.Fatalf("after a compilation: byRoot %v", s.byRoot)
	}
	if b := s.affectedEntries(changes{roots: map[string]struct{}{"shop/web": {}}}); len(b.entries) != 1 || !b.backendsMayChange {
		t.Fatalf("a route resource of the root affects %v (backends may change: %v), want the entry", b.entries, b.backendsMayChange)
	}
	compile("shop/web-v2", "shop/web-v3")
	if in("shop/web-v1") || !in("shop/web-v2") || !in("shop/web-v3") || len(s.byDep) != 2 {
		t.Fatalf("after the backends changed: byDep %v", s.byDep)
	}
	if b := s.affectedEntries(changes{dirty: map[string]struct{}{"shop/web-v3": {}}}); len(b.entries) != 1 || b.entries[0] != e {
		t.Fatalf("a change of a backend's endpoints affects %v, want the entry", b.entries)
	}
	s.unsubscribe(key, sub)
	if len(s.byDep) != 0 || len(s.byRoot) != 0 || len(s.uncompiled) != 0 || len(s.entries) != 0 {
		t.Fatalf("after the last unsubscription: byDep %v, byRoot %v, uncompiled %v", s.byDep, s.byRoot, s.uncompiled)
	}
}
