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
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/validation"
)

// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits,verbs=get;list;watch
// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewTrafficSplitReconciler returns the reconciler that validates TrafficSplits, checks
// that their Services exist, and reports both in status.
func NewTrafficSplitReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*splitv1alpha2.TrafficSplit, *splitv1alpha2.TrafficSplitList] {
	return &StatusReconciler[*splitv1alpha2.TrafficSplit, *splitv1alpha2.TrafficSplitList]{Client: c, Recorder: rec, kind: trafficSplits}
}

var trafficSplits = statusKind[*splitv1alpha2.TrafficSplit, *splitv1alpha2.TrafficSplitList]{
	name:      "TrafficSplit",
	newObject: func() *splitv1alpha2.TrafficSplit { return &splitv1alpha2.TrafficSplit{} },
	newList:   func() *splitv1alpha2.TrafficSplitList { return &splitv1alpha2.TrafficSplitList{} },
	items:     func(l *splitv1alpha2.TrafficSplitList) []client.Object { return objects(l.Items) },
	services: func(ts *splitv1alpha2.TrafficSplit) []string {
		refs := validation.TrafficSplitServices(ts)
		keys := make([]string, len(refs))
		for i, r := range refs {
			keys[i] = r.Key.String()
		}
		return keys
	},
	conditions: func(ts *splitv1alpha2.TrafficSplit) *[]metav1.Condition { return &ts.Status.Conditions },
	restate: func(ts *splitv1alpha2.TrafficSplit) {
		ts.Status.ObservedGeneration = ts.Generation
		ts.Status.Backends = summarizeBackends(ts.Spec.Backends)
	},
	validate:     validation.TrafficSplit,
	validMessage: "The split is valid",
	resolveRefs:  resolveSplitServices,
}

// resolveSplitServices sets ResolvedRefs: True when the root Service and every backend
// exist, otherwise False naming the missing ones.
func resolveSplitServices(ctx context.Context, c client.Reader, rec events.EventRecorder, ts *splitv1alpha2.TrafficSplit, conds conditions) error {
	var missing []string
	for _, name := range splitServices(ts) {
		err := c.Get(ctx, types.NamespacedName{Namespace: ts.Namespace, Name: name}, &corev1.Service{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, name)
		case err != nil:
			return fmt.Errorf("getting Service %s/%s: %w", ts.Namespace, name, err)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("Service %s not found in namespace %s; create it or remove it from the split", strings.Join(missing, ", "), ts.Namespace)
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonRefNotFound, msg)
		rec.Eventf(ts, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonRefNotFound, "Resolve", msg)
	} else {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "Every Service exists")
	}
	return nil
}

// splitServices returns the names of the Services a split names, root first, in spec
// order: the same references the validating webhook warns about when they are missing.
func splitServices(ts *splitv1alpha2.TrafficSplit) []string {
	refs := validation.TrafficSplitServices(ts)
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Key.Name
	}
	return names
}

// summarizeBackends renders the split as service:percent for the Backends printer
// column, e.g. "web-v1:90%,web-v2:10%". Percentages are rounded to whole numbers.
func summarizeBackends(backends []splitv1alpha2.TrafficSplitBackend) string {
	var total int64
	for _, b := range backends {
		total += int64(b.Weight)
	}
	parts := make([]string, 0, len(backends))
	for _, b := range backends {
		pct := int64(0)
		if total > 0 {
			pct = (int64(b.Weight)*100 + total/2) / total
		}
		parts = append(parts, fmt.Sprintf("%s:%d%%", b.Service, pct))
	}
	return strings.Join(parts, ",")
}
