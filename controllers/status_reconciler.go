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
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/gatewayapi"
)

// statusRefIndex indexes the objects of a StatusReconciler's kind by refKey of every
// object other than a Service that they name, so an event of a watched kind finds the
// objects that name it without a full list.
const statusRefIndex = "weft.status.ref"

// statusServiceIndex indexes the objects of a StatusReconciler's kind by the
// namespace/name of every Service they name, so a Service event finds its objects
// without a full list. The index is per kind, so the kinds share the name.
const statusServiceIndex = "weft.status.service"

// StatusReconciler is the skeleton of the reconcilers whose whole output is the status
// of their own object, and whose spec names other objects: ServiceProfile and
// TrafficSplit (Services), and the policy kinds (Servers, routes, authentications,
// namespaces, pods).
// Every reconcile runs the same phases, in order: restate the spec in status, set
// Accepted from the spec's validation (internal/validation, the rules the webhooks
// reject with), set ResolvedRefs from whether the named Services exist, and summarise
// Ready from the two, then kstatus's Stalled or Reconciling (setProgress); the status is
// written once, in a deferred patch. A change to a named Service reconciles again, so
// the order in which GitOps applies objects never matters. What differs per kind is in
// its statusKind.
type StatusReconciler[T client.Object, L client.ObjectList] struct {
	client.Client
	Recorder events.EventRecorder
	// MissingRefGrace is how long a named object may be missing (ResolvedRefs False)
	// before the object is Stalled; until then it is Reconciling. Default:
	// DefaultMissingRefGrace.
	MissingRefGrace time.Duration
	// Now is the clock of the grace. Default: time.Now.
	Now func() time.Time
	// NoGatewayAPI leaves out the watches of Gateway API kinds, which the API server
	// does not serve (Options.NoGatewayAPI).
	NoGatewayAPI bool
	kind         statusKind[T, L]
}

// DefaultMissingRefGrace is how long a missing reference counts as progress rather than
// a failure. GitOps tools apply a Service and the objects naming it together, and the
// controller's cache can see the object a moment before the Service: judged Failed at
// once, such an apply would fail Flux's fail-fast health check for a reference that
// resolves a second later. A Service still missing after the grace waits for the user,
// so it is terminal, and a health check should stop waiting for it.
const DefaultMissingRefGrace = 30 * time.Second

// statusKind is what StatusReconciler needs to know about one kind.
type statusKind[T client.Object, L client.ObjectList] struct {
	// name names the kind in errors, e.g. "ServiceProfile".
	name      string
	newObject func() T
	newList   func() L
	items     func(L) []client.Object
	// services returns the namespace/name of every Service the object names, for the
	// index; nil for kinds that name no Service (no Service watch then).
	services func(T) []string
	// refs returns refKey of every other object the object names, for the index that
	// watches of kind refWatchNamed read.
	refs func(T) []string
	// watches are the kinds other than Service whose events reconcile objects.
	watches []refWatch
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
	return r.reconcileNormal(ctx, obj)
}

func (r *StatusReconciler[T, L]) reconcileNormal(ctx context.Context, obj T) (ctrl.Result, error) {
	conds := conditions{list: r.kind.conditions(obj), generation: obj.GetGeneration()}
	r.kind.restate(obj)
	r.setAccepted(obj, conds)
	if err := r.kind.resolveRefs(ctx, r.Client, r.Recorder, obj, conds); err != nil {
		return ctrl.Result{}, err
	}
	conds.summarizeReady(meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionResolvedRefs)
	return r.setProgress(conds), nil
}

// setProgress sets kstatus's Stalled or Reconciling, so that Flux and Argo CD tell an
// object that waits for the user (Failed) from one that is still converging
// (InProgress): an invalid spec stalls at once; a missing reference is Reconciling for
// MissingRefGrace after ResolvedRefs turned False, and Stalled after that. The result
// wakes the reconciler when the grace ends, since no event would.
func (r *StatusReconciler[T, L]) setProgress(conds conditions) ctrl.Result {
	if conds.stallIfRejected() {
		return ctrl.Result{}
	}
	refs := meta.FindStatusCondition(*conds.list, meshv1alpha1.ConditionResolvedRefs)
	if refs == nil || refs.Status == metav1.ConditionTrue {
		return ctrl.Result{}
	}
	grace := r.MissingRefGrace
	if grace <= 0 {
		grace = DefaultMissingRefGrace
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	return ctrl.Result{RequeueAfter: conds.stallAfterGrace(refs, grace, now())}
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

// SetupWithManager watches the objects of the reconciler's kind and the objects they
// name.
func (r *StatusReconciler[T, L]) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).For(r.kind.newObject())
	if r.kind.services != nil {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newObject(), statusServiceIndex,
			func(o client.Object) []string { return r.kind.services(o.(T)) }); err != nil {
			return fmt.Errorf("indexing %ss by service: %w", r.kind.name, err)
		}
		b = b.Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.objectsForService))
	}
	if r.kind.refs != nil {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newObject(), statusRefIndex,
			func(o client.Object) []string { return r.kind.refs(o.(T)) }); err != nil {
			return fmt.Errorf("indexing %ss by reference: %w", r.kind.name, err)
		}
	}
	for _, w := range r.kind.watches {
		if r.NoGatewayAPI {
			if gvk, err := apiutil.GVKForObject(w.object, mgr.GetScheme()); err == nil && gvk.Group == gatewayapi.Group {
				continue
			}
		}
		b = b.Watches(w.object, handler.EnqueueRequestsFromMapFunc(r.objectsFor(w)), builder.WithPredicates(w.predicates...))
	}
	return b.Complete(r)
}

// refWatch is a kind whose events reconcile the objects of a StatusReconciler.
type refWatch struct {
	object client.Object
	// kind names the watched kind in refKey (refWatchNamed).
	kind string
	// scope says which objects an event reconciles.
	scope refScope
	// predicates filter the events (pods: only what changes selection).
	predicates []predicate.Predicate
}

// refScope is which objects an event of a watched kind reconciles.
type refScope int

const (
	// refWatchNamed: the objects whose refs name the event's object.
	refWatchNamed refScope = iota
	// refWatchNamespace: every object in the event's namespace (a pod event and the
	// Servers that may select it; a Server and the Servers it may conflict with).
	refWatchNamespace
)

// refKey is the index key of a named object: kind/namespace/name (namespace empty for
// cluster-scoped kinds).
func refKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// objectsFor maps an event of a watched kind to the objects it reconciles.
func (r *StatusReconciler[T, L]) objectsFor(w refWatch) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := r.kind.newList()
		opt := client.ListOption(client.InNamespace(o.GetNamespace()))
		if w.scope == refWatchNamed {
			opt = client.MatchingFields{statusRefIndex: refKey(w.kind, o.GetNamespace(), o.GetName())}
		}
		if err := r.List(ctx, list, opt); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing objects for a watched object", "kind", r.kind.name, "watched", w.kind, "object", klog.KObj(o))
			return nil
		}
		items := r.kind.items(list)
		reqs := make([]reconcile.Request, 0, len(items))
		for _, it := range items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(it)})
		}
		return reqs
	}
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
