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

package e2e

// Rate limiting and fault injection (issue 20) on the local cluster: each is switched on
// by applying resources and off by deleting them while the steady load (200 requests/s
// to the steady Service, as ServiceAccount client) runs, which must see no failure;
// in between, a load Job shows the feature at work.

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
)

// steadyFailures measures the steady load's failures while f runs (and 5 s after).
func steadyFailures(ctx context.Context, t *testing.T, f func()) (sent, failed uint64) {
	t.Helper()
	pod := steadyLoadPod(ctx, t)
	s0, err := podStats(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	f()
	time.Sleep(5 * time.Second)
	s1, err := podStats(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	return s1.Requests - s0.Requests, s1.Failures - s0.Failures
}

// readyCondition waits until obj's Ready condition is True for its generation.
func readyCondition(ctx context.Context, t *testing.T, obj client.Object, conds func() []metav1.Condition) {
	t.Helper()
	if err := eventually(ctx, time.Minute, time.Second, func() error {
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		for _, c := range conds() {
			if c.Type == "Ready" && c.Status == metav1.ConditionTrue && c.ObservedGeneration == obj.GetGeneration() {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", conds())
	}); err != nil {
		t.Fatalf("%s never Ready: %v", obj.GetName(), err)
	}
}

// TestRateLimit: a Server on the steady pods' port admitting everyone, and an
// HTTPLocalRateLimitPolicy giving clients without a mesh identity 5 requests/s per pod
// (the steady load's identity an override of 100,000). An unmeshed load Job at 40/s is
// refused with 429 beyond the limit; the steady load never fails while the policy is
// applied and deleted.
func TestRateLimit(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := &policyv1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "steady-http", Namespace: ns},
		Spec: policyv1alpha1.ServerSpec{
			PodSelector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "steady"}},
			Port:         intstr.FromString("http"),
			AccessPolicy: policyv1alpha1.AccessAllUnauthenticated,
		},
	}
	limit := &policyv1alpha1.HTTPLocalRateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "steady-limits", Namespace: ns},
		Spec: policyv1alpha1.RateLimitPolicySpec{
			TargetRef: policyv1alpha1.RateLimitTargetReference{Group: policyv1alpha1.GroupVersion.Group, Kind: "Server", Name: srv.Name},
			Identity:  &policyv1alpha1.Limit{RequestsPerSecond: 5},
			Overrides: []policyv1alpha1.Override{{RequestsPerSecond: 100_000, ClientRefs: policyv1alpha1.ClientRefs{
				TargetRefs: []policyv1alpha1.ClientReference{{Kind: "ServiceAccount", Name: "client"}}}}},
		},
	}
	sent, failed := steadyFailures(ctx, t, func() {
		for _, o := range []client.Object{srv, limit} {
			if err := env.client.Create(ctx, o); err != nil {
				t.Fatalf("creating %s: %v", o.GetName(), err)
			}
			t.Cleanup(func() { _ = env.client.Delete(context.Background(), o) })
		}
		readyCondition(ctx, t, limit, func() []metav1.Condition { return limit.Status.Conditions })
	})
	if failed != 0 {
		t.Errorf("switching the rate limit on: %d of the steady load's %d requests failed", failed, sent)
	}

	// The proxies take the policy within seconds: wait until an unmeshed client is
	// limited, then measure a run of its own.
	unmeshed := func(name string, rps, requests int) LoadStats {
		s, _ := runLoadJob(ctx, t, loadJob{name: name, args: []string{
			"--target=http://steady." + ns + ".svc.cluster.local:8080/limited",
			fmt.Sprintf("--rps=%d", rps), fmt.Sprintf("--requests=%d", requests)}})
		return s
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if s := unmeshed("ratelimit-warmup", 100, 100); s.ByStatus["429"] == 0 {
			return fmt.Errorf("100 requests at 100/s were answered %v, want some 429", s.ByStatus)
		}
		return nil
	}); err != nil {
		t.Fatalf("the rate limit never took effect: %v", err)
	}
	time.Sleep(2 * time.Second) // the buckets refill
	s := unmeshed("ratelimit-run", 40, 400)
	// Two steady pods, each admitting a burst of 5 and then 5/s, over ~10 s.
	ok, limited := s.ByStatus["200"], s.ByStatus["429"]
	t.Logf("unmeshed at 40/s: %v in %.1fs", s.ByStatus, s.ElapsedSeconds)
	if hi := uint64(2*(5+5*s.ElapsedSeconds)) + 10; ok > hi || ok < 40 {
		t.Errorf("%d requests admitted, want 40..%d (5/s per pod)", ok, hi)
	}
	if ok+limited != 400 {
		t.Errorf("statuses %v, want only 200 and 429", s.ByStatus)
	}

	sent, failed = steadyFailures(ctx, t, func() {
		for _, o := range []client.Object{limit, srv} {
			if err := env.client.Delete(ctx, o); err != nil {
				t.Fatalf("deleting %s: %v", o.GetName(), err)
			}
		}
	})
	if failed != 0 {
		t.Errorf("switching the rate limit off: %d of the steady load's %d requests failed", failed, sent)
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if s := unmeshed("ratelimit-after", 40, 80); s.ByStatus["200"] != 80 {
			return fmt.Errorf("after the delete: %v, want 80 × 200", s.ByStatus)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestFaults: an HTTPRoute on the steady Service whose /chaos rule applies an HTTPFault
// (abort 503 to 50%, delay 200ms to all) and whose other rule is plain. A meshed load
// Job to /chaos sees half its requests answered 503 and the rest delayed; the steady
// load (path /) never fails while the route and the HTTPFault are applied and deleted.
func TestFaults(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fault := &meshv1alpha1.HTTPFault{
		ObjectMeta: metav1.ObjectMeta{Name: "steady-chaos", Namespace: ns},
		Spec: meshv1alpha1.HTTPFaultSpec{
			Abort: &meshv1alpha1.FaultAbort{HTTPStatus: ptr.To[int32](503), Percentage: 50},
			Delay: &meshv1alpha1.FaultDelay{FixedDelay: "200ms", Percentage: 100},
		},
	}
	prefix := func(p string) []gatewayv1.HTTPRouteMatch {
		return []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(p)}}}
	}
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "steady-chaos", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "steady", Port: ptr.To[int32](8080)}}},
			Rules: []gatewayv1.HTTPRouteRule{
				{Matches: prefix("/chaos"), Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef,
					ExtensionRef: &gatewayv1.LocalObjectReference{Group: "mesh.weft.dev", Kind: "HTTPFault", Name: "steady-chaos"}}}},
				{Matches: prefix("/")},
			},
		},
	}
	sent, failed := steadyFailures(ctx, t, func() {
		for _, o := range []client.Object{fault, route} {
			if err := env.client.Create(ctx, o); err != nil {
				t.Fatalf("creating %s: %v", o.GetName(), err)
			}
			t.Cleanup(func() { _ = env.client.Delete(context.Background(), o) })
		}
	})
	if failed != 0 {
		t.Errorf("switching the fault on: %d of the steady load's %d requests failed", failed, sent)
	}

	chaos := func(name string, requests int) LoadStats {
		s, _ := runLoadJob(ctx, t, loadJob{name: name, meshed: true, args: []string{
			"--target=http://steady." + ns + ".svc.cluster.local:8080/chaos",
			"--rps=20", fmt.Sprintf("--requests=%d", requests)}})
		return s
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if s := chaos("fault-warmup", 20); s.ByStatus["503"] == 0 {
			return fmt.Errorf("20 requests to /chaos were answered %v, want some 503", s.ByStatus)
		}
		return nil
	}); err != nil {
		t.Fatalf("the fault never took effect: %v", err)
	}
	s := chaos("fault-run", 400)
	t.Logf("/chaos: %v, latency %v", s.ByStatus, s.LatencyMs)
	if share := float64(s.ByStatus["503"]) / 400; share < 0.42 || share > 0.58 {
		t.Errorf("%.0f%% of the requests were aborted, want 50%%", 100*share)
	}
	if p50 := s.LatencyMs["p50"]; p50 < 195 {
		t.Errorf("p50 latency %.0fms, want at least the 200ms delay", p50)
	}

	sent, failed = steadyFailures(ctx, t, func() {
		for _, o := range []client.Object{route, fault} {
			if err := env.client.Delete(ctx, o); err != nil {
				t.Fatalf("deleting %s: %v", o.GetName(), err)
			}
		}
	})
	if failed != 0 {
		t.Errorf("switching the fault off: %d of the steady load's %d requests failed", failed, sent)
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if s := chaos("fault-after", 40); s.ByStatus["200"] != 40 {
			return fmt.Errorf("after the delete: %v, want 40 × 200", s.ByStatus)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
