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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/controllers"
)

func rateLimit(ns, name, server string, total int32) *policyv1alpha1.HTTPLocalRateLimitPolicy {
	return &policyv1alpha1.HTTPLocalRateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: policyv1alpha1.RateLimitPolicySpec{
			TargetRef: policyv1alpha1.RateLimitTargetReference{Group: "policy.weft.dev", Kind: "Server", Name: server},
			Total:     &policyv1alpha1.Limit{RequestsPerSecond: total},
		},
	}
}

// TestRateLimitPolicyStatus drives the HTTPLocalRateLimitPolicy reconciler through a
// real API server: a missing Server is RefNotFound (Reconciling, then Stalled after the
// grace) and resolves when the Server appears; the younger of two policies on one
// Server is Conflicted (Stalled at once), and accepted when the older goes.
func TestRateLimitPolicyStatus(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	const ns = "limits"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	const wait = 20 * time.Second

	older := rateLimit(ns, "web-limits", "web-http", 100)
	if err := c.Create(ctx, older); err != nil {
		t.Fatal(err)
	}
	oc := func() []metav1.Condition { return older.Status.Conditions }
	eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound,
		"Server limits/web-http not found; create it or fix the reference; nothing is rate limited until it does"))
	eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))
	eventually(t, wait, policyCondition(c, older, oc, controllers.ConditionReconciling, metav1.ConditionTrue, meshv1alpha1.ReasonRefNotFound,
		"Waiting up to"))
	eventually(t, wait, func() error {
		if ok, err := hasEvent(ctx, c, ns, older.Name, meshv1alpha1.ReasonRefNotFound); err != nil || !ok {
			return fmt.Errorf("no RefNotFound Event (err %v)", err)
		}
		return nil
	})
	// After the grace, with no event to wake it: Stalled.
	eventually(t, suiteMissingRefGrace+wait, policyCondition(c, older, oc, controllers.ConditionStalled, metav1.ConditionTrue,
		meshv1alpha1.ReasonRefNotFound, "Server limits/web-http not found"))

	if err := c.Create(ctx, server(ns, "web-http", "web", intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, meshv1alpha1.ReasonResolved, ""))
	eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ""))
	eventually(t, wait, func() error {
		if err := c.Get(ctx, crclient.ObjectKeyFromObject(older), older); err != nil {
			return err
		}
		if meta.FindStatusCondition(older.Status.Conditions, controllers.ConditionStalled) != nil {
			return fmt.Errorf("still Stalled: %+v", older.Status.Conditions)
		}
		return nil
	})

	// Creation timestamps have a resolution of one second.
	time.Sleep(1100 * time.Millisecond)
	newer := rateLimit(ns, "web-limits-2", "web-http", 5)
	if err := c.Create(ctx, newer); err != nil {
		t.Fatal(err)
	}
	nc := func() []metav1.Condition { return newer.Status.Conditions }
	eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionAccepted, metav1.ConditionFalse, controllers.ReasonConflicted,
		"HTTPLocalRateLimitPolicy web-limits is older and targets Server web-http too"))
	eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonConflicted, ""))
	eventually(t, wait, policyCondition(c, newer, nc, controllers.ConditionStalled, metav1.ConditionTrue, controllers.ReasonConflicted, ""))
	eventually(t, wait, func() error {
		if ok, err := hasEvent(ctx, c, ns, newer.Name, controllers.ReasonConflicted); err != nil || !ok {
			return fmt.Errorf("no Conflicted Event (err %v)", err)
		}
		return nil
	})
	eventually(t, wait, policyCondition(c, older, oc, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))

	// The older goes: the younger applies (the namespace watch requeues it).
	if err := c.Delete(ctx, older); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, ""))
	eventually(t, wait, policyCondition(c, newer, nc, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, ""))
}
