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
	"fmt"
	"testing"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/latest"
	"github.com/weftmesh/weft/proxy/api/apigrpc"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
)

// The recompile scope, without gRPC: which watched pods a change compiles and offers.

func scopePod(ns, name, sa string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: sa}}
}

func scopeServer(ns, name string, gen int64, port int, access policyv1alpha1.AccessPolicy) *policyv1alpha1.Server {
	return &policyv1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: gen},
		Spec: policyv1alpha1.ServerSpec{Port: intstr.FromInt(port), AccessPolicy: access}}
}

func TestRecompileScope(t *testing.T) {
	s := NewServer(ServerOptions{})
	h := s.Handler()
	a := scopePod("a", "web-0", "web", map[string]string{"app": "web"})
	b := scopePod("b", "web-0", "web", nil)
	h.OnAdd(a, true)
	h.OnAdd(b, true)
	subA, subB := latest.New[state](), latest.New[state]()
	idA, idB := "spiffe://cluster.local/ns/a/sa/web", "spiffe://cluster.local/ns/b/sa/web"
	for _, c := range []struct {
		key, id string
		sub     *subscriber
	}{{"a/web-0", idA, subA}, {"b/web-0", idB, subB}} {
		if err := s.subscribe(c.key, c.id, c.sub); err != nil {
			t.Fatal(err)
		}
	}

	// step applies a change, recompiles and reports what was compiled and offered.
	step := func(t *testing.T, change func(), compiled float64, offerA, offerB bool) (*state, *state) {
		t.Helper()
		before := testutil.ToFloat64(CompilationsTotal)
		change()
		s.recompile()
		if n := testutil.ToFloat64(CompilationsTotal) - before; n != compiled {
			t.Errorf("compiled %v policies, want %v", n, compiled)
		}
		gotA, gotB := subA.Take(), subB.Take()
		if (gotA != nil) != offerA || (gotB != nil) != offerB {
			t.Errorf("offered a: %v, b: %v; want %v, %v", gotA != nil, gotB != nil, offerA, offerB)
		}
		return gotA, gotB
	}

	t.Run("first compilation", func(t *testing.T) {
		stA, stB := step(t, func() {}, 2, true, true)
		if stA.owner != idA || stB.owner != idB || stA.policy.GetVersion() == "" {
			t.Fatalf("states %+v %+v", stA, stB)
		}
	})
	srv := scopeServer("a", "web", 1, 8080, policyv1alpha1.AccessDeny)
	t.Run("a Server of a's namespace", func(t *testing.T) {
		step(t, func() { h.OnAdd(srv, false) }, 1, true, false)
	})
	t.Run("its status write", func(t *testing.T) {
		written := srv.DeepCopy()
		written.Status.ObservedGeneration = 1
		step(t, func() { h.OnUpdate(srv, written) }, 0, false, false)
	})
	t.Run("a spec change that compiles the same is not sent", func(t *testing.T) {
		// The Server selects no pod (an empty selector would; this one names a label
		// nobody has), so its port change leaves a's policy as it was.
		other := scopeServer("a", "db", 1, 5432, policyv1alpha1.AccessDeny)
		other.Spec.PodSelector.MatchLabels = map[string]string{"app": "db"}
		step(t, func() { h.OnAdd(other, false) }, 1, false, false)
	})
	mtls := &policyv1alpha1.MeshTLSAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "callers", Generation: 1},
		Spec: policyv1alpha1.MeshTLSAuthenticationSpec{Identities: []policyv1alpha1.Identity{"*"}}}
	t.Run("an authentication nothing references", func(t *testing.T) {
		step(t, func() { h.OnAdd(mtls, false) }, 0, false, false)
	})
	t.Run("b's policy referencing it, across namespaces", func(t *testing.T) {
		step(t, func() {
			h.OnAdd(&policyv1alpha1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "p", Generation: 1},
				Spec: policyv1alpha1.AuthorizationPolicySpec{
					TargetRef:                  policyv1alpha1.TargetReference{Kind: "Namespace", Name: "b"},
					RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{{Group: PolicyGroup, Kind: "MeshTLSAuthentication", Name: "callers", Namespace: "c"}},
				}}, false)
		}, 1, false, false)
	})
	t.Run("the referenced authentication changes", func(t *testing.T) {
		changed := mtls.DeepCopy()
		changed.Generation = 2
		changed.Spec.Identities = []policyv1alpha1.Identity{"spiffe://cluster.local/ns/c/sa/api"}
		// b has no Server, so its namespace policy changes nothing it sends.
		step(t, func() { h.OnUpdate(mtls, changed) }, 1, false, false)
	})
	t.Run("the namespace's default policy", func(t *testing.T) {
		step(t, func() {
			h.OnAdd(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b",
				Annotations: map[string]string{"config.weft.dev/default-inbound-policy": "deny"}}}, false)
		}, 1, false, true)
	})
	t.Run("the Mesh: every pod", func(t *testing.T) {
		step(t, func() {
			h.OnAdd(&meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName, Generation: 1},
				Spec: meshv1alpha1.MeshSpec{Proxy: meshv1alpha1.ProxySpec{DefaultInboundPolicy: meshv1alpha1.InboundAllAuthenticated}}}, false)
		}, 2, true, false) // b's namespace annotation still says deny
	})
	t.Run("a pod's label: only that pod", func(t *testing.T) {
		relabelled := a.DeepCopy()
		relabelled.Labels = map[string]string{"app": "web", "tier": "front"}
		step(t, func() { h.OnUpdate(a, relabelled) }, 1, false, false)
		a = relabelled
	})
	t.Run("a pod recreated under another ServiceAccount is not the caller's", func(t *testing.T) {
		h.OnDelete(a)
		stA, _ := step(t, func() {}, 0, true, false)
		if !stA.gone {
			t.Fatalf("after the delete: %+v, want gone", stA)
		}
		stA, _ = step(t, func() { h.OnAdd(scopePod("a", "web-0", "admin", nil), false) }, 1, true, false)
		if stA.owner == idA {
			t.Fatalf("owner still %s", stA.owner)
		}
	})
}

func TestSubscribeRefusals(t *testing.T) {
	s := NewServer(ServerOptions{})
	s.Handler().OnAdd(scopePod("shop", "web-0", "web", nil), true)
	for _, tc := range []struct {
		name, key, id string
		want          codes.Code
	}{
		{"the pod's ServiceAccount", "shop/web-0", "spiffe://cluster.local/ns/shop/sa/web", codes.OK},
		{"another trust domain", "shop/web-0", "spiffe://other.org/ns/shop/sa/web", codes.PermissionDenied},
		{"another ServiceAccount", "shop/web-0", "spiffe://cluster.local/ns/shop/sa/api", codes.PermissionDenied},
		{"another namespace", "shop/web-0", "spiffe://cluster.local/ns/dev/sa/web", codes.PermissionDenied},
		{"another namespace, unknown pod", "shop/nope", "spiffe://cluster.local/ns/dev/sa/web", codes.PermissionDenied},
		{"a namespace that is a prefix", "shop/web-0", "spiffe://cluster.local/ns/sho/sa/web", codes.PermissionDenied},
		{"an unknown pod", "shop/web-9", "spiffe://cluster.local/ns/shop/sa/web", codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.subscribe(tc.key, tc.id, latest.New[state]())
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReplicasCompileOnce: the replicas of a workload (same namespace, labels,
// ServiceAccount, containers) compile one policy, shared; a pod that differs compiles
// its own.
func TestReplicasCompileOnce(t *testing.T) {
	s := NewServer(ServerOptions{})
	h := s.Handler()
	var subs []*subscriber
	for i := range 10 {
		name := fmt.Sprintf("web-%d", i)
		h.OnAdd(scopePod("shop", name, "web", map[string]string{"app": "web"}), true)
		sub := latest.New[state]()
		if err := s.subscribe("shop/"+name, "spiffe://cluster.local/ns/shop/sa/web", sub); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	h.OnAdd(scopePod("shop", "db-0", "web", map[string]string{"app": "db"}), true)
	dbSub := latest.New[state]()
	if err := s.subscribe("shop/db-0", "spiffe://cluster.local/ns/shop/sa/web", dbSub); err != nil {
		t.Fatal(err)
	}
	h.OnAdd(&policyv1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Generation: 1},
		Spec: policyv1alpha1.ServerSpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: intstr.FromInt(8080)}}, false)
	before := testutil.ToFloat64(CompilationsTotal)
	s.recompile()
	if n := testutil.ToFloat64(CompilationsTotal) - before; n != 2 {
		t.Fatalf("11 pods of 2 shapes compiled %v times, want 2", n)
	}
	first := subs[0].Take()
	for i, sub := range subs[1:] {
		if st := sub.Take(); st != first {
			t.Fatalf("replica %d got a policy of its own", i+1)
		}
	}
	db := dbSub.Take()
	if db == nil || db.policy.GetVersion() == first.policy.GetVersion() || len(first.policy.GetServers()) != 1 || len(db.policy.GetServers()) != 0 {
		t.Fatalf("web %v, db %v", first.policy, db)
	}
}

// TestInboundServiceMatchesGenerated holds the registered service (Watch served by
// watchHandler, off the stream's goroutine) to apigrpc's generated one.
func TestInboundServiceMatchesGenerated(t *testing.T) {
	desttest.SameService(t, apigrpc.InboundPolicies_ServiceDesc, inboundService)
	if _, ok := any(&Server{}).(apigrpc.InboundPoliciesServer); !ok {
		t.Error("Server does not implement apigrpc.InboundPoliciesServer")
	}
}
