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

package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/controllers"
)

// policyCondition checks one condition of a policy object's status: its status, reason,
// generation and a part of its message.
func policyCondition(c client.Client, obj client.Object, conds func() []metav1.Condition, condType string,
	status metav1.ConditionStatus, reason, message string) func() error {
	return func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(conds(), condType)
		if cond == nil || cond.Status != status || cond.Reason != reason || cond.ObservedGeneration != obj.GetGeneration() ||
			!strings.Contains(cond.Message, message) {
			return fmt.Errorf("%s %s: want %s=%s reason %s (generation %d) message containing %q; got %+v",
				obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), condType, status, reason, obj.GetGeneration(), message, cond)
		}
		return nil
	}
}

func server(ns, name string, app string, port intstr.IntOrString) *policyv1alpha1.Server {
	return &policyv1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: policyv1alpha1.ServerSpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Port:        port,
		},
	}
}

func policyPod(ns, name, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example.com/app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

// TestPolicyStatus drives the four policy kinds' reconcilers through a real API server:
// unresolved references reported with a message that says what follows, resolved when
// the objects appear (the watches requeue the referrers), and Servers that conflict.
func TestPolicyStatus(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	const ns = "shop"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	const wait = 20 * time.Second

	t.Run("Server selects no pods, then a pod, then conflicts", func(t *testing.T) {
		older := server(ns, "books-http", "books", intstr.FromString("http"))
		if err := c.Create(ctx, older); err != nil {
			t.Fatal(err)
		}
		oc := func() []metav1.Condition { return older.Status.Conditions }
		// Selecting nothing yet is not an error: a Server applied before its workload
		// must not fail GitOps health checks.
		eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue,
			controllers.ReasonNoPodsSelected, "matches no pod in namespace shop yet"))
		eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ""))

		if err := c.Create(ctx, policyPod(ns, "books-1", "books")); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue,
			meshv1alpha1.ReasonResolved, "selects port http of 1 pod(s)"))

		// Creation timestamps have a resolution of one second: make the second Server
		// unambiguously younger rather than rely on the name order.
		time.Sleep(1100 * time.Millisecond)
		newer := server(ns, "books-8080", "books", intstr.FromInt32(8080))
		if err := c.Create(ctx, newer); err != nil {
			t.Fatal(err)
		}
		nc := func() []metav1.Condition { return newer.Status.Conditions }
		eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionAccepted, metav1.ConditionFalse,
			controllers.ReasonConflicted, "Server books-http is older and selects port 8080 of pod books-1"))
		eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonConflicted, ""))
		eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))
		eventually(t, wait, func() error {
			if ok, err := hasEvent(ctx, c, ns, newer.Name, controllers.ReasonConflicted); err != nil || !ok {
				return fmt.Errorf("no Conflicted Event for %s (err %v)", newer.Name, err)
			}
			return nil
		})

		// The older Server goes: the conflict ends without touching the newer one.
		if err := c.Delete(ctx, older); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))

		// A named port no selected pod has.
		named := server(ns, "books-grpc", "books", intstr.FromString("grpc"))
		if err := c.Create(ctx, named); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, named, func() []metav1.Condition { return named.Status.Conditions },
			meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, controllers.ReasonNoPodsSelected, `none has a container port named "grpc"`))
	})

	t.Run("AuthorizationPolicy resolves when its references appear", func(t *testing.T) {
		ap := &policyv1alpha1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-to-orders"},
			Spec: policyv1alpha1.AuthorizationPolicySpec{
				TargetRef: policyv1alpha1.TargetReference{Group: policyv1alpha1.LinkerdGroup, Kind: "Server", Name: "orders-http"},
				RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{
					{Group: "policy.weft.dev", Kind: "MeshTLSAuthentication", Name: "web"},
					{Group: "policy.weft.dev", Kind: "NetworkAuthentication", Name: "office", Namespace: "other"},
					{Kind: "ServiceAccount", Name: "not-needed-to-exist"},
				},
			},
		}
		if err := c.Create(ctx, ap); err != nil {
			t.Fatal(err)
		}
		conds := func() []metav1.Condition { return ap.Status.Conditions }
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
			"Server shop/orders-http, MeshTLSAuthentication shop/web, NetworkAuthentication other/office not found; "+
				"create it or fix the reference; the policy authorizes nothing until it does"))
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))

		if err := c.Create(ctx, server(ns, "orders-http", "orders", intstr.FromInt32(8080))); err != nil {
			t.Fatal(err)
		}
		mtls := &policyv1alpha1.MeshTLSAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: policyv1alpha1.MeshTLSAuthenticationSpec{Identities: []policyv1alpha1.Identity{"spiffe://cluster.local/ns/shop/sa/web"}}}
		if err := c.Create(ctx, mtls); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
			"NetworkAuthentication other/office not found"))
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}); err != nil {
			t.Fatal(err)
		}
		netw := &policyv1alpha1.NetworkAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "office"},
			Spec: policyv1alpha1.NetworkAuthenticationSpec{Networks: []policyv1alpha1.Network{{Cidr: "192.0.2.0/24", Except: []policyv1alpha1.NetworkAddress{"192.0.2.7"}}}}}
		if err := c.Create(ctx, netw); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, meshv1alpha1.ReasonResolved, ""))
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ""))
		eventually(t, wait, policyCondition(c, netw, func() []metav1.Condition { return netw.Status.Conditions },
			meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ""))
		eventually(t, wait, policyCondition(c, mtls, func() []metav1.Condition { return mtls.Status.Conditions },
			meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, controllers.ReasonNoReferences, ""))

		// The authentication goes again: the policy says so.
		if err := c.Delete(ctx, mtls); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
			"MeshTLSAuthentication shop/web not found"))
	})

	t.Run("AuthorizationPolicy on a route without a Server parent", func(t *testing.T) {
		route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-admin"},
			Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{
				{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "orders"}}}}}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		ap := &policyv1alpha1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin-route"},
			Spec: policyv1alpha1.AuthorizationPolicySpec{
				TargetRef:                  policyv1alpha1.TargetReference{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "orders-admin"},
				RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{},
			},
		}
		if err := c.Create(ctx, ap); err != nil {
			t.Fatal(err)
		}
		conds := func() []metav1.Condition { return ap.Status.Conditions }
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, controllers.ReasonRouteNotAttached,
			"HTTPRoute orders-admin has no parentRef to a Server"))
		// Attaching the route to a Server resolves the policy (the route watch requeues it).
		// (The route reconciler writes its status meanwhile: retry on conflict.)
		eventually(t, wait, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(route), route); err != nil {
				return err
			}
			route.Spec.ParentRefs = append(route.Spec.ParentRefs[:1], gatewayv1.ParentReference{
				Group: ptr.To(gatewayv1.Group("policy.weft.dev")), Kind: ptr.To(gatewayv1.Kind("Server")), Name: "orders-http"})
			return c.Update(ctx, route)
		})
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, meshv1alpha1.ReasonResolved, ""))
	})

	t.Run("AuthorizationPolicy on another namespace is not accepted", func(t *testing.T) {
		ap := &policyv1alpha1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-namespace"},
			Spec: policyv1alpha1.AuthorizationPolicySpec{
				TargetRef:                  policyv1alpha1.TargetReference{Kind: "Namespace", Name: "other"},
				RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{},
			},
		}
		if err := c.Create(ctx, ap); err != nil {
			t.Fatal(err)
		}
		conds := func() []metav1.Condition { return ap.Status.Conditions }
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionAccepted, metav1.ConditionFalse, meshv1alpha1.ReasonInvalid,
			"a Namespace target must be the policy's own namespace shop"))
		eventually(t, wait, policyCondition(c, ap, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonInvalid,
			"authorizes nothing"))
	})

	t.Run("an identity the compiler cannot name", func(t *testing.T) {
		// "web.shop" passes the schema's pattern (a DNS-like name) but is not Linkerd's
		// <sa>.<ns>.serviceaccount.identity.<...>: the compiler cannot match it, so the
		// authentication is not accepted and a policy that requires it authorizes nothing.
		m := &policyv1alpha1.MeshTLSAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-id"},
			Spec: policyv1alpha1.MeshTLSAuthenticationSpec{Identities: []policyv1alpha1.Identity{"web.shop"}}}
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, m, func() []metav1.Condition { return m.Status.Conditions },
			meshv1alpha1.ConditionAccepted, metav1.ConditionFalse, meshv1alpha1.ReasonInvalid, `identity "web.shop" is not a SPIFFE ID`))
		ap := &policyv1alpha1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "needs-bad-id"},
			Spec: policyv1alpha1.AuthorizationPolicySpec{
				TargetRef:                  policyv1alpha1.TargetReference{Kind: "Namespace", Name: ns},
				RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{{Group: "policy.weft.dev", Kind: "MeshTLSAuthentication", Name: "bad-id"}},
			},
		}
		if err := c.Create(ctx, ap); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, ap, func() []metav1.Condition { return ap.Status.Conditions },
			meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, controllers.ReasonUnresolvable,
			`MeshTLSAuthentication shop/bad-id: identity "web.shop" is not a SPIFFE ID`))
	})

	t.Run("MeshTLSAuthentication names a namespace that appears later", func(t *testing.T) {
		m := &policyv1alpha1.MeshTLSAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-billing"},
			Spec: policyv1alpha1.MeshTLSAuthenticationSpec{IdentityRefs: []policyv1alpha1.IdentityReference{
				{Kind: "Namespace", Name: "billing"},
				{Kind: "ServiceAccount", Name: "web"},
			}}}
		if err := c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		conds := func() []metav1.Condition { return m.Status.Conditions }
		eventually(t, wait, policyCondition(c, m, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
			"Namespace billing not found"))
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "billing"}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, wait, policyCondition(c, m, conds, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, meshv1alpha1.ReasonResolved, ""))
	})
}
