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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// TestRouteFaultStatus: a route whose ExtensionRef filter names a missing HTTPFault is
// Accepted (the rule is kept and answers 500) with ResolvedRefs False BackendNotFound
// and an Event; creating the HTTPFault resolves it (the HTTPFault watch requeues the
// route), deleting it again unresolves it.
func TestRouteFaultStatus(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	const ns = "chaos"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}); err != nil {
		t.Fatal(err)
	}
	web := svcParent("web", nil)
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-chaos"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}},
			Rules: []gatewayv1.HTTPRouteRule{{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef,
				ExtensionRef: &gatewayv1.LocalObjectReference{Group: "mesh.weft.dev", Kind: "HTTPFault", Name: "latency"}}}}},
		},
	}
	if err := c.Create(ctx, route); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(route)
	check := func(status metav1.ConditionStatus, reason, msg string) func() error {
		return func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, ""); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, status, reason, route.Generation, msg)
		}
	}
	eventually(t, 10*time.Second, check(metav1.ConditionFalse, string(gatewayv1.RouteReasonBackendNotFound),
		"HTTPFault latency not found in namespace chaos; the requests of the rules whose ExtensionRef filter names it are answered 500"))
	eventually(t, 10*time.Second, func() error {
		if ok, err := hasEvent(ctx, c, ns, route.Name, string(gatewayv1.RouteReasonBackendNotFound)); !ok {
			return fmt.Errorf("want a BackendNotFound Event (err %v)", err)
		}
		return nil
	})

	fault := &meshv1alpha1.HTTPFault{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "latency"},
		Spec: meshv1alpha1.HTTPFaultSpec{Delay: &meshv1alpha1.FaultDelay{FixedDelay: "100ms", Percentage: 50}}}
	if err := c.Create(ctx, fault); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, check(metav1.ConditionTrue, string(gatewayv1.RouteReasonResolvedRefs), "All references resolved"))

	if err := c.Delete(ctx, fault); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, check(metav1.ConditionFalse, string(gatewayv1.RouteReasonBackendNotFound), "HTTPFault latency not found"))

	// A ServiceProfile route's Weft-only fault field: the same, in the profile's status
	// (the HTTPFault watch requeues the profile).
	sp := &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web.chaos.svc.cluster.local"},
		Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
			{Name: "GET /", Condition: meshv1alpha1.RequestMatch{Method: "GET"}, Fault: "latency"}}}}
	if err := c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	spc := func() []metav1.Condition { return sp.Status.Conditions }
	eventually(t, 10*time.Second, policyCondition(c, sp, spc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
		"HTTPFault chaos/latency not found; create it or fix the reference; the requests of the routes that name it are answered 500 until it does"))
	fault.ResourceVersion = ""
	if err := c.Create(ctx, fault); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, policyCondition(c, sp, spc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, meshv1alpha1.ReasonResolved, ""))
}
