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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
)

func TestRoutingStatus(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	for _, ns := range []string{"shop"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	service := func(name string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}
	}

	t.Run("ServiceProfile", func(t *testing.T) {
		sp := &meshv1alpha1.ServiceProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web.shop.svc.cluster.local"},
			Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
				{Name: "books", Condition: meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*"}, IsRetryable: true},
				{Name: "orders", Condition: meshv1alpha1.RequestMatch{Method: "POST"}},
			}},
		}
		if err := c.Create(ctx, sp); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(sp)

		// The Service does not exist yet: accepted, but not ready, with an Event.
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, sp); err != nil {
				return err
			}
			s := sp.Status
			if s.ObservedGeneration != sp.Generation ||
				!conditionIs(s.Conditions, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, sp.Generation) ||
				!conditionIs(s.Conditions, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound, sp.Generation) ||
				!conditionIs(s.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound, sp.Generation) {
				return fmt.Errorf("want Accepted, not ResolvedRefs, not Ready; got %+v", s)
			}
			if s.Routes != 2 || s.RetryableRoutes != 1 {
				return fmt.Errorf("want 2 routes, 1 retryable; got %d, %d", s.Routes, s.RetryableRoutes)
			}
			if msg := meta.FindStatusCondition(s.Conditions, meshv1alpha1.ConditionResolvedRefs).Message; !strings.Contains(msg, "Service shop/web does not exist") {
				return fmt.Errorf("want a message naming the missing Service, got %q", msg)
			}
			if ok, err := hasEvent(ctx, c, "shop", sp.Name, meshv1alpha1.ReasonRefNotFound); !ok {
				return fmt.Errorf("want a RefNotFound Event (err %v)", err)
			}
			return nil
		})

		// Creating the Service later is enough: GitOps apply order does not matter.
		if err := c.Create(ctx, service("web")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, sp); err != nil {
				return err
			}
			if !conditionIs(sp.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, sp.Generation) {
				return fmt.Errorf("want Ready once the Service exists, got %+v", sp.Status.Conditions)
			}
			return nil
		})

		// A regular expression that does not compile passes the schema but is not
		// accepted; the message names the field.
		sp.Spec.Routes[0].Condition.PathRegex = "/books/(unclosed"
		if err := c.Update(ctx, sp); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, sp); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(sp.Status.Conditions, meshv1alpha1.ConditionAccepted)
			if sp.Status.ObservedGeneration != sp.Generation || cond == nil || cond.Status != metav1.ConditionFalse ||
				cond.ObservedGeneration != sp.Generation || !strings.Contains(cond.Message, "spec.routes[0].condition.pathRegex") {
				return fmt.Errorf("want Accepted=False naming spec.routes[0].condition.pathRegex for generation %d, got %+v", sp.Generation, cond)
			}
			if !conditionIs(sp.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionFalse, meshv1alpha1.ReasonInvalid, sp.Generation) {
				return fmt.Errorf("want Ready=False Invalid, got %+v", sp.Status.Conditions)
			}
			return nil
		})
	})

	// Nested conditions have no schema; written while the webhook was down, garbage there
	// still reads back, and the status names each bad member. Its many errors pass the
	// 1 KiB an Event's note may hold, and the Event still goes out.
	t.Run("ServiceProfile with nested garbage", func(t *testing.T) {
		var members []string
		for i := range 40 {
			members = append(members, fmt.Sprintf("{pathregex%d: /x}", i))
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(`apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: shop, name: garbage.shop.svc.cluster.local}
spec:
  routes:
  - name: r
    condition: {any: [`+strings.Join(members, ", ")+`]}
`), &u.Object); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		var sp meshv1alpha1.ServiceProfile
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(u), &sp); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(sp.Status.Conditions, meshv1alpha1.ConditionAccepted)
			if cond == nil || cond.Status != metav1.ConditionFalse ||
				!strings.Contains(cond.Message, `spec.routes[0].condition.any[39]: Invalid value: unknown field "pathregex39"`) {
				return fmt.Errorf("want Accepted=False naming spec.routes[0].condition.any[39], got %+v", cond)
			}
			if len(cond.Message) <= 1024 {
				return fmt.Errorf("the message is %d bytes; the case needs more than an Event's 1 KiB", len(cond.Message))
			}
			if ok, err := hasEvent(ctx, c, "shop", sp.Name, meshv1alpha1.ReasonInvalid); !ok {
				return fmt.Errorf("want an Invalid Event (err %v)", err)
			}
			return nil
		})
	})

	t.Run("TrafficSplit", func(t *testing.T) {
		ts := &splitv1alpha2.TrafficSplit{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books"},
			Spec: splitv1alpha2.TrafficSplitSpec{
				Service:  "books",
				Backends: []splitv1alpha2.TrafficSplitBackend{{Service: "books-v1", Weight: 90}, {Service: "books-v2", Weight: 10}},
			},
		}
		if err := c.Create(ctx, ts); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(ts)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, ts); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(ts.Status.Conditions, meshv1alpha1.ConditionResolvedRefs)
			if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "books, books-v1, books-v2 not found") {
				return fmt.Errorf("want ResolvedRefs=False naming the three missing Services, got %+v", cond)
			}
			if ts.Status.Backends != "books-v1:90%,books-v2:10%" {
				return fmt.Errorf("want the backends summary books-v1:90%%,books-v2:10%%, got %q", ts.Status.Backends)
			}
			return nil
		})
		for _, name := range []string{"books", "books-v1", "books-v2"} {
			if err := c.Create(ctx, service(name)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, ts); err != nil {
				return err
			}
			if !conditionIs(ts.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ts.Generation) {
				return fmt.Errorf("want Ready once every Service exists, got %+v", ts.Status.Conditions)
			}
			return nil
		})

		// SMI route-group matches are valid SMI but Weft cannot honour them.
		ts.Spec.Matches = []splitv1alpha2.TrafficSplitMatch{{Kind: "HTTPRouteGroup", Name: "canary-users"}}
		if err := c.Update(ctx, ts); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, ts); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(ts.Status.Conditions, meshv1alpha1.ConditionAccepted)
			if cond == nil || cond.Status != metav1.ConditionFalse || cond.ObservedGeneration != ts.Generation ||
				!strings.Contains(cond.Message, "spec.matches[0]") {
				return fmt.Errorf("want Accepted=False naming spec.matches[0], got %+v", cond)
			}
			if ok, err := hasEvent(ctx, c, "shop", ts.Name, meshv1alpha1.ReasonInvalid); !ok {
				return fmt.Errorf("want an Invalid Event (err %v)", err)
			}
			return nil
		})
	})
}
