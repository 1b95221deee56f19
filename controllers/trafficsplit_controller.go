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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/validation"
)

// splitServiceIndex indexes TrafficSplits by every Service they name (root and
// backends), so a Service event finds the splits that depend on it.
const splitServiceIndex = "weft.split.service"

// TrafficSplitReconciler validates TrafficSplits, checks that their Services exist, and
// reports both in status.
type TrafficSplitReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits,verbs=get;list;watch
// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the status of one TrafficSplit up to date.
func (r *TrafficSplitReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	ts := &splitv1alpha2.TrafficSplit{}
	if err := r.Get(ctx, req.NamespacedName, ts); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := ts.DeepCopy()
	defer func() {
		if err := r.Status().Patch(ctx, ts, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = fmt.Errorf("patching TrafficSplit status: %w", err)
		}
	}()
	if !ts.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, ts)
}

func (r *TrafficSplitReconciler) reconcileNormal(ctx context.Context, ts *splitv1alpha2.TrafficSplit) error {
	conds := conditions{list: &ts.Status.Conditions, generation: ts.Generation}
	ts.Status.ObservedGeneration = ts.Generation
	ts.Status.Backends = summarizeBackends(ts.Spec.Backends)

	if errs := validation.TrafficSplit(ts); len(errs) > 0 {
		msg := errs.ToAggregate().Error()
		conds.set(meshv1alpha1.ConditionAccepted, false, meshv1alpha1.ReasonInvalid, msg)
		r.Recorder.Eventf(ts, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonInvalid, "Validate", msg)
	} else {
		conds.set(meshv1alpha1.ConditionAccepted, true, meshv1alpha1.ReasonAccepted, "The split is valid")
	}

	var missing []string
	for _, name := range splitServices(ts) {
		err := r.Get(ctx, types.NamespacedName{Namespace: ts.Namespace, Name: name}, &corev1.Service{})
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
		r.Recorder.Eventf(ts, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonRefNotFound, "Resolve", msg)
	} else {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "Every Service exists")
	}
	conds.summarizeReady(meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionResolvedRefs)
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

// SetupWithManager watches TrafficSplits and the Services they name.
func (r *TrafficSplitReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &splitv1alpha2.TrafficSplit{}, splitServiceIndex,
		func(o client.Object) []string { return splitServices(o.(*splitv1alpha2.TrafficSplit)) }); err != nil {
		return fmt.Errorf("indexing TrafficSplits by service: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&splitv1alpha2.TrafficSplit{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.splitsForService)).
		Complete(r)
}

func (r *TrafficSplitReconciler) splitsForService(ctx context.Context, svc client.Object) []reconcile.Request {
	var splits splitv1alpha2.TrafficSplitList
	if err := r.List(ctx, &splits, client.InNamespace(svc.GetNamespace()), client.MatchingFields{splitServiceIndex: svc.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing TrafficSplits for a Service", "service", client.ObjectKeyFromObject(svc))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(splits.Items))
	for _, s := range splits.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
	}
	return reqs
}
