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
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/controllers"
)

// TestStatusStalled checks kstatus's abnormal-true conditions on the StatusReconciler
// kinds: an invalid spec is Stalled at once; a missing Service is Reconciling for the
// grace, then Stalled (it waits for the user); both clear when the user fixes it, and
// every condition carries the generation it was computed for.
func TestStatusStalled(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	progress := func(conds []metav1.Condition) string {
		var out []string
		for _, ct := range []string{controllers.ConditionStalled, controllers.ConditionReconciling} {
			if cond := meta.FindStatusCondition(conds, ct); cond != nil {
				out = append(out, fmt.Sprintf("%s=%s/%s@%d", ct, cond.Status, cond.Reason, cond.ObservedGeneration))
			}
		}
		return strings.Join(out, ",")
	}

	sp := &meshv1alpha1.ServiceProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web.shop.svc.cluster.local"},
		Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
			{Name: "books", Condition: meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*"}},
		}},
	}
	if err := c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(sp)
	get := func() *meshv1alpha1.ServiceProfile {
		t.Helper()
		if err := c.Get(ctx, key, sp); err != nil {
			t.Fatal(err)
		}
		return sp
	}

	// Within the grace: Reconciling, not Stalled.
	created := time.Now()
	eventually(t, 10*time.Second, func() error {
		s := get().Status
		if got, want := progress(s.Conditions), fmt.Sprintf("Reconciling=True/RefNotFound@%d", sp.Generation); got != want {
			return fmt.Errorf("missing Service within the grace: %s, want %s", got, want)
		}
		return nil
	})
	if d := time.Since(created); d >= suiteMissingRefGrace {
		t.Fatalf("saw Reconciling only after %v, past the grace", d)
	}
	// After the grace, with no event to wake it: Stalled, with the ResolvedRefs message.
	eventually(t, suiteMissingRefGrace+10*time.Second, func() error {
		s := get().Status
		if got, want := progress(s.Conditions), fmt.Sprintf("Stalled=True/RefNotFound@%d", sp.Generation); got != want {
			return fmt.Errorf("missing Service after the grace: %s, want %s", got, want)
		}
		return nil
	})
	if msg := meta.FindStatusCondition(sp.Status.Conditions, controllers.ConditionStalled).Message; !strings.Contains(msg, "Service shop/web does not exist; create it") {
		t.Errorf("Stalled message %q does not say what to fix", msg)
	}
	if d := time.Since(created); d < suiteMissingRefGrace-time.Second {
		t.Errorf("Stalled after %v, before the %v grace", d, suiteMissingRefGrace)
	}

	// The user creates the Service: neither condition remains, Ready.
	if err := c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		s := get().Status
		if got := progress(s.Conditions); got != "" || !conditionIs(s.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, sp.Generation) {
			return fmt.Errorf("after the Service exists: progress %q, conditions %+v; want none and Ready", got, s.Conditions)
		}
		return nil
	})

	// A bad regular expression is terminal at once, at the new generation.
	sp.Spec.Routes[0].Condition.PathRegex = "/books/(unclosed"
	if err := c.Update(ctx, sp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		s := get().Status
		if got, want := progress(s.Conditions), fmt.Sprintf("Stalled=True/Invalid@%d", sp.Generation); got != want {
			return fmt.Errorf("bad regex: %s, want %s", got, want)
		}
		if msg := meta.FindStatusCondition(s.Conditions, controllers.ConditionStalled).Message; !strings.Contains(msg, "Fix the spec: spec.routes[0].condition.pathRegex") {
			return fmt.Errorf("Stalled message %q does not name the field to fix", msg)
		}
		return nil
	})
	sp.Spec.Routes[0].Condition.PathRegex = "/books/[^/]*"
	if err := c.Update(ctx, sp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := progress(get().Status.Conditions); got != "" {
			return fmt.Errorf("after the fix: %s, want neither", got)
		}
		return nil
	})

	// TrafficSplit: an unsupported match (SMI HTTPRouteGroup) stalls at once, even
	// while its Services are missing too: the spec error comes first.
	ts := &splitv1alpha2.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books"},
		Spec: splitv1alpha2.TrafficSplitSpec{
			Service:  "books",
			Backends: []splitv1alpha2.TrafficSplitBackend{{Service: "books-v1", Weight: 90}, {Service: "books-v2", Weight: 10}},
			Matches:  []splitv1alpha2.TrafficSplitMatch{{Kind: "HTTPRouteGroup", Name: "canary-users"}},
		},
	}
	if err := c.Create(ctx, ts); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ts), ts); err != nil {
			return err
		}
		if got, want := progress(ts.Status.Conditions), fmt.Sprintf("Stalled=True/Invalid@%d", ts.Generation); got != want {
			return fmt.Errorf("unsupported match: %s, want %s", got, want)
		}
		return nil
	})
}
