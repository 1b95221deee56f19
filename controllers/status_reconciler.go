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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// statusServiceIndex indexes the objects of a StatusReconciler's kind by the
// namespace/name of every Service they name, so a Service event finds its objects
// without a full list. The index is per kind, so the kinds share the name.
const statusServiceIndex = "weft.status.service"

// StatusReconciler is the skeleton of the reconcilers whose whole output is the status
// of their own object, and whose spec names Services: ServiceProfile and TrafficSplit.
// Every reconcile runs the same phases, in order: restate the spec in status, set
// Accepted from the spec's validation (internal/validation, the rules the webhooks
// reject with), set ResolvedRefs from whether the named Services exist, and summarise
// Ready from the two; the status is written once, in a deferred patch. A change to a
// named Service reconciles again, so the order in which GitOps applies objects never
// matters. What differs per kind is in its statusKind.
type StatusReconciler[T client.Object, L client.ObjectList] struct {
	client.Client
	Recorder events.EventRecorder
	kind     statusKind[T, L]
}

// statusKind is what StatusReconciler needs to know about one kind.
type statusKind[T client.Object, L client.ObjectList] struct {
	// name names the kind in errors, e.g. "ServiceProfile".
	name      string
	newObject func() T
	newList   func() L
	items     func(L) []client.Object
	// services returns the namespace/name of every Service the object names, for the
	// index.
	services func(T) []string
	// conditions returns the object's status conditions, to update in place.
	conditions func(T) *[]metav1.Condition
	// restate writes observedGeneration and what the status restates from the spec
	// (counts, printer columns).
	restate func(T)
	// validate returns what is wrong with the spec; fixPrefix starts the Accepted
	// message and the Event of an invalid object, validMessage is Accepted's message
	// otherwise.
	validate     func(T) field.ErrorList
	fixPrefix    string
	validMessage string
	// resolveRefs sets ResolvedRefs: whether the Services the object names exist. It
	// returns only errors that are worth a retry (reads that failed).
	resolveRefs func(ctx context.Context, c client.Reader, rec events.EventRecorder, obj T, conds conditions) error
}

// Reconcile brings the status of one object up to date.
func (r *StatusReconciler[T, L]) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	obj := r.kind.newObject()
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := obj.DeepCopyObject().(T)
	defer func() {
		if err := r.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = fmt.Errorf("patching %s status: %w", r.kind.name, err)
		}
	}()
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, obj)
}

func (r *StatusReconciler[T, L]) reconcileNormal(ctx context.Context, obj T) error {
	conds := conditions{list: r.kind.conditions(obj), generation: obj.GetGeneration()}
	r.kind.restate(obj)
	r.setAccepted(obj, conds)
	if err := r.kind.resolveRefs(ctx, r.Client, r.Recorder, obj, conds); err != nil {
		return err
	}
	conds.summarizeReady(meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionResolvedRefs)
	return nil
}

// setAccepted sets Accepted from the spec's validation, with a Warning Event when the
// spec is invalid.
func (r *StatusReconciler[T, L]) setAccepted(obj T, conds conditions) {
	errs := r.kind.validate(obj)
	if len(errs) == 0 {
		conds.set(meshv1alpha1.ConditionAccepted, true, meshv1alpha1.ReasonAccepted, r.kind.validMessage)
		return
	}
	msg := r.kind.fixPrefix + errs.ToAggregate().Error()
	conds.set(meshv1alpha1.ConditionAccepted, false, meshv1alpha1.ReasonInvalid, msg)
	// The API server refuses an Event whose note passes 1 KiB; the condition keeps more.
	r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonInvalid, "Validate", "%s", truncateMessage(msg, maxEventNote))
}

// SetupWithManager watches the objects of the reconciler's kind and the Services they
// name.
func (r *StatusReconciler[T, L]) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newObject(), statusServiceIndex,
		func(o client.Object) []string { return r.kind.services(o.(T)) }); err != nil {
		return fmt.Errorf("indexing %ss by service: %w", r.kind.name, err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(r.kind.newObject()).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.objectsForService)).
		Complete(r)
}

// objectsForService maps a Service event to the objects that name the Service.
func (r *StatusReconciler[T, L]) objectsForService(ctx context.Context, svc client.Object) []reconcile.Request {
	list := r.kind.newList()
	key := types.NamespacedName{Namespace: svc.GetNamespace(), Name: svc.GetName()}.String()
	if err := r.List(ctx, list, client.MatchingFields{statusServiceIndex: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing objects for a Service", "kind", r.kind.name, "service", key)
		return nil
	}
	items := r.kind.items(list)
	reqs := make([]reconcile.Request, 0, len(items))
	for _, o := range items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return reqs
}
