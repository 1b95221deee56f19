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
	"cmp"
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/validation"
)

// Reasons of the Mesh's TracingReady condition.
const (
	// ReasonTracingEnabled: every proxy has been given the collector and sampling rate.
	ReasonTracingEnabled = "Enabled"
	// ReasonInvalidTracing (also a Warning Event): spec.tracing cannot be used as
	// written, and proxies do no tracing until it is fixed.
	ReasonInvalidTracing = "InvalidTracing"
)

// reconcileTracing reports spec.tracing in the TracingReady condition: absent while
// tracing is off, True with what the proxies do while it is on, False when the
// collector or rate cannot be used (the inbound policy compiler, inbound.TracingConfig,
// applies the same check and then sends proxies no tracing). The proxies get tracing
// from the destination service on every replica, not from this reconciler: this phase
// only tells the user.
func (r *MeshReconciler) reconcileTracing(_ context.Context, mesh *meshv1alpha1.Mesh, conds conditions, _ *meshState) error {
	if mesh.Spec.Tracing == nil {
		meta.RemoveStatusCondition(conds.list, meshv1alpha1.ConditionTracingReady)
		return nil
	}
	ok, reason, msg := tracingCondition(mesh.Spec.Tracing)
	if !ok {
		// One Warning per new problem, not one per reconcile.
		if prev := meta.FindStatusCondition(*conds.list, meshv1alpha1.ConditionTracingReady); prev == nil || prev.Reason != reason || prev.Message != msg {
			r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, reason, "ValidateTracing", truncateMessage(msg, maxEventNote))
		}
	}
	conds.set(meshv1alpha1.ConditionTracingReady, ok, reason, msg)
	return nil
}

// tracingCondition is the pure part of reconcileTracing: whether spec.tracing is
// usable, the reason, and a message that says what proxies do or what to fix.
func tracingCondition(t *meshv1alpha1.TracingSpec) (ok bool, reason, msg string) {
	if errs := validation.Tracing(t, field.NewPath("spec", "tracing")); len(errs) > 0 {
		return false, ReasonInvalidTracing, fmt.Sprintf("Proxies do no tracing: %v; set spec.tracing.collector to the collector's OTLP/gRPC host:port (for example jaeger.tracing.svc.cluster.local:4317) and samplingRate to a decimal from 0 to 1",
			errs.ToAggregate())
	}
	perMillion, _ := validation.SamplingPerMillion(t.SamplingRate)
	return true, ReasonTracingEnabled, fmt.Sprintf("Proxies report spans to %s as service %s, starting %s of new traces and following the sampling decision of requests that carry one",
		t.Collector, cmp.Or(t.ServiceName, meshdefaults.TracingServiceName), percent(perMillion))
}

// percent writes a rate in millionths as a percentage: 10000 is "1%", 1 "0.0001%".
func percent(perMillion uint32) string {
	return strconv.FormatFloat(float64(perMillion)/10_000, 'f', -1, 64) + "%"
}

// readyConditions are the conditions the Mesh's Ready summarises: TracingReady only
// while tracing is configured, so a Mesh without tracing is not held back by it and
// one whose tracing cannot be used is not Ready (GitOps tools see the mistake).
func readyConditions(mesh *meshv1alpha1.Mesh) []string {
	types := []string{meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionTrustAnchorReady,
		meshv1alpha1.ConditionIssuerReady, meshv1alpha1.ConditionIdentityReady}
	if mesh.Spec.Tracing != nil {
		types = append(types, meshv1alpha1.ConditionTracingReady)
	}
	return types
}
