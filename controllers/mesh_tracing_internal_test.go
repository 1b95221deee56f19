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

package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

func TestTracingCondition(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    meshv1alpha1.TracingSpec
		ok      bool
		reason  string
		message []string
	}{
		{name: "defaults", spec: meshv1alpha1.TracingSpec{Collector: "jaeger.tracing:4317"}, ok: true, reason: ReasonTracingEnabled,
			message: []string{"jaeger.tracing:4317", "service weft-proxy", "starting 1% of new traces"}},
		{name: "every trace", spec: meshv1alpha1.TracingSpec{Collector: "j:4317", SamplingRate: "1", ServiceName: "shop"}, ok: true, reason: ReasonTracingEnabled,
			message: []string{"service shop", "starting 100% of new traces"}},
		{name: "one in a million", spec: meshv1alpha1.TracingSpec{Collector: "j:4317", SamplingRate: "0.000001"}, ok: true, reason: ReasonTracingEnabled,
			message: []string{"starting 0.0001% of new traces"}},
		{name: "collector without port", spec: meshv1alpha1.TracingSpec{Collector: "jaeger"}, reason: ReasonInvalidTracing,
			message: []string{"Proxies do no tracing", "spec.tracing.collector", "must be host:port", "jaeger.tracing.svc.cluster.local:4317"}},
		{name: "rate above 1", spec: meshv1alpha1.TracingSpec{Collector: "j:4317", SamplingRate: "2"}, reason: ReasonInvalidTracing,
			message: []string{"spec.tracing.samplingRate", "from 0 to 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason, msg := tracingCondition(&tc.spec)
			if ok != tc.ok || reason != tc.reason {
				t.Errorf("ok %v reason %s, want %v %s (message %q)", ok, reason, tc.ok, tc.reason, msg)
			}
			for _, want := range tc.message {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
}

// TestReconcileTracing: the phase adds TracingReady while spec.tracing is set and
// removes it after; an unusable spec gets one Warning Event per new problem, not one
// per reconcile; Ready summarises TracingReady only while tracing is configured.
func TestReconcileTracing(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	r := &MeshReconciler{Recorder: rec}
	mesh := &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName, Generation: 3}}
	conds := conditions{list: &mesh.Status.Conditions, generation: mesh.Generation}
	run := func() *metav1.Condition {
		t.Helper()
		if err := r.reconcileTracing(context.Background(), mesh, conds, nil); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(mesh.Status.Conditions, meshv1alpha1.ConditionTracingReady)
	}
	if c := run(); c != nil {
		t.Fatalf("TracingReady %+v without spec.tracing", c)
	}
	if slices.Contains(readyConditions(mesh), meshv1alpha1.ConditionTracingReady) {
		t.Error("Ready waits for TracingReady although tracing is off")
	}

	mesh.Spec.Tracing = &meshv1alpha1.TracingSpec{Collector: "jaeger"}
	for range 3 {
		if c := run(); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonInvalidTracing || c.ObservedGeneration != 3 {
			t.Fatalf("TracingReady %+v, want False InvalidTracing at generation 3", c)
		}
	}
	if n := len(rec.Events); n != 1 {
		t.Errorf("%d Warning Events after three reconciles of the same problem, want 1", n)
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning InvalidTracing") || !strings.Contains(e, "spec.tracing.collector") {
		t.Errorf("event %q", e)
	}
	if !slices.Contains(readyConditions(mesh), meshv1alpha1.ConditionTracingReady) {
		t.Error("Ready ignores TracingReady while tracing is configured")
	}

	mesh.Spec.Tracing = &meshv1alpha1.TracingSpec{Collector: "jaeger.tracing:4317", SamplingRate: "1"}
	if c := run(); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonTracingEnabled {
		t.Fatalf("TracingReady %+v, want True Enabled", c)
	}
	if n := len(rec.Events); n != 0 {
		t.Errorf("%d Events for a valid spec", n)
	}

	mesh.Spec.Tracing = nil
	if c := run(); c != nil {
		t.Fatalf("TracingReady %+v after spec.tracing was removed", c)
	}
}
