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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/validation"
)

// MeshControllerName is the controllerName of the status.parents[] entries Weft writes
// on routes attached to Services. Entries with any other controllerName belong to
// other controllers (a Gateway implementation, another mesh) and are left alone.
const MeshControllerName gatewayv1.GatewayController = "weft.dev/mesh-controller"

// routeServiceIndex indexes HTTPRoutes and GRPCRoutes by the namespace/name of every
// Service they name as a parent or a backend, so a Service event finds its routes.
const routeServiceIndex = "weft.route.service"

// maxRouteParents is the API's bound on status.parents.
const maxRouteParents = 32

// RouteReconciler reports, for each Service a Gateway API route attaches to (GAMMA),
// whether Weft accepts it and whether its backend references resolve. One reconciler
// serves both route kinds: HTTPRoute and GRPCRoute differ only in their rule types, which
// a routeKind reads, so both report status the same way by construction.
type RouteReconciler[R client.Object, L client.ObjectList] struct {
	client.Client
	Recorder events.EventRecorder
	kind     routeKind[R, L]
}

// routeKind is what RouteReconciler needs to know about one route kind: how to make its
// objects and lists, and where its parentRefs, rules, backends and status are.
type routeKind[R client.Object, L client.ObjectList] struct {
	// plural names the kind in errors, e.g. "HTTPRoutes"; name is the kind.
	plural   string
	name     string
	newRoute func() R
	newList  func() L
	items    func(L) []client.Object
	status   func(R) *gatewayv1.RouteStatus
	parents  func(R) []gatewayv1.ParentReference
	backends func(R) []gatewayv1.BackendObjectReference
	// mirrors are the backendRefs of the route's RequestMirror filters.
	mirrors func(R) []gatewayv1.BackendObjectReference
	// ruleProblems has one entry per rule: why Weft drops it, or "".
	ruleProblems func(R) []string
	// faults are the names of the HTTPFaults its rules' filters name.
	faults func(R) []string
}

// NewHTTPRouteReconciler returns the reconciler of HTTPRoutes.
func NewHTTPRouteReconciler(c client.Client, rec events.EventRecorder) *RouteReconciler[*gatewayv1.HTTPRoute, *gatewayv1.HTTPRouteList] {
	return &RouteReconciler[*gatewayv1.HTTPRoute, *gatewayv1.HTTPRouteList]{Client: c, Recorder: rec, kind: httpRoutes}
}

// NewGRPCRouteReconciler returns the reconciler of GRPCRoutes.
func NewGRPCRouteReconciler(c client.Client, rec events.EventRecorder) *RouteReconciler[*gatewayv1.GRPCRoute, *gatewayv1.GRPCRouteList] {
	return &RouteReconciler[*gatewayv1.GRPCRoute, *gatewayv1.GRPCRouteList]{Client: c, Recorder: rec, kind: grpcRoutes}
}

var httpRoutes = routeKind[*gatewayv1.HTTPRoute, *gatewayv1.HTTPRouteList]{
	plural:   "HTTPRoutes",
	name:     validation.KindHTTPRoute,
	newRoute: func() *gatewayv1.HTTPRoute { return &gatewayv1.HTTPRoute{} },
	newList:  func() *gatewayv1.HTTPRouteList { return &gatewayv1.HTTPRouteList{} },
	items:    func(l *gatewayv1.HTTPRouteList) []client.Object { return objects(l.Items) },
	status:   func(r *gatewayv1.HTTPRoute) *gatewayv1.RouteStatus { return &r.Status.RouteStatus },
	parents:  func(r *gatewayv1.HTTPRoute) []gatewayv1.ParentReference { return r.Spec.ParentRefs },
	backends: func(r *gatewayv1.HTTPRoute) []gatewayv1.BackendObjectReference {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendObjectReference)
			}
		}
		return refs
	},
	mirrors: func(r *gatewayv1.HTTPRoute) []gatewayv1.BackendObjectReference {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			refs = append(refs, compiler.HTTPRuleMirrorRefs(rule)...)
		}
		return refs
	},
	ruleProblems: func(r *gatewayv1.HTTPRoute) []string {
		out := make([]string, 0, len(r.Spec.Rules))
		for _, rule := range r.Spec.Rules {
			out = append(out, compiler.HTTPRuleProblem(rule))
		}
		return out
	},
	faults: func(r *gatewayv1.HTTPRoute) []string { return compiler.HTTPFaultRefs(r.Spec.Rules) },
}

var grpcRoutes = routeKind[*gatewayv1.GRPCRoute, *gatewayv1.GRPCRouteList]{
	plural:   "GRPCRoutes",
	name:     validation.KindGRPCRoute,
	newRoute: func() *gatewayv1.GRPCRoute { return &gatewayv1.GRPCRoute{} },
	newList:  func() *gatewayv1.GRPCRouteList { return &gatewayv1.GRPCRouteList{} },
	items:    func(l *gatewayv1.GRPCRouteList) []client.Object { return objects(l.Items) },
	status:   func(r *gatewayv1.GRPCRoute) *gatewayv1.RouteStatus { return &r.Status.RouteStatus },
	parents:  func(r *gatewayv1.GRPCRoute) []gatewayv1.ParentReference { return r.Spec.ParentRefs },
	backends: func(r *gatewayv1.GRPCRoute) []gatewayv1.BackendObjectReference {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendObjectReference)
			}
		}
		return refs
	},
	mirrors: func(r *gatewayv1.GRPCRoute) []gatewayv1.BackendObjectReference {
		var refs []gatewayv1.BackendObjectReference
		for _, rule := range r.Spec.Rules {
			refs = append(refs, compiler.GRPCRuleMirrorRefs(rule)...)
		}
		return refs
	},
	ruleProblems: func(r *gatewayv1.GRPCRoute) []string {
		out := make([]string, 0, len(r.Spec.Rules))
		for _, rule := range r.Spec.Rules {
			out = append(out, compiler.GRPCRuleProblem(rule))
		}
		return out
	},
	faults: func(r *gatewayv1.GRPCRoute) []string { return compiler.GRPCFaultRefs(r.Spec.Rules) },
}

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=grpcroutes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=httpfaults,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the Weft entries of one route's status.parents up to date.
func (r *RouteReconciler[R, L]) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	route := r.kind.newRoute()
	if err := r.Get(ctx, req.NamespacedName, route); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := route.DeepCopyObject().(R)
	defer func() {
		retErr = patchRouteStatus(ctx, r.Client, route, before, r.kind.status(before), r.kind.status(route), retErr)
	}()
	if !route.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, route)
}

func (r *RouteReconciler[R, L]) reconcileNormal(ctx context.Context, route R) error {
	v := routeView{obj: route, parentRefs: r.kind.parents(route), ruleProblems: r.kind.ruleProblems(route), backendRefs: r.kind.backends(route),
		mirrorRefs: r.kind.mirrors(route), faultRefs: r.kind.faults(route)}
	_, _, errs := validation.RetryTimeoutAnnotations(r.kind.name, route.GetAnnotations())
	for _, e := range errs {
		v.annotationProblems = append(v.annotationProblems, e.Error())
	}
	status := r.kind.status(route)
	parents, err := computeParents(ctx, r.Client, r.Recorder, v, status.Parents)
	if err != nil {
		return err
	}
	status.Parents = parents
	return nil
}

// SetupWithManager watches the routes of the reconciler's kind and the Services they
// name.
func (r *RouteReconciler[R, L]) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newRoute(), routeServiceIndex,
		func(o client.Object) []string {
			route := o.(R)
			// A mirror's Service appearing or going changes ResolvedRefs too.
			return referencedServices(route.GetNamespace(), r.kind.parents(route), append(r.kind.backends(route), r.kind.mirrors(route)...))
		}); err != nil {
		return fmt.Errorf("indexing %s by service: %w", r.kind.plural, err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.kind.newRoute(), routeFaultIndex,
		func(o client.Object) []string {
			var keys []string
			for _, name := range r.kind.faults(o.(R)) {
				keys = append(keys, types.NamespacedName{Namespace: o.GetNamespace(), Name: name}.String())
			}
			return keys
		}); err != nil {
		return fmt.Errorf("indexing %s by HTTPFault: %w", r.kind.plural, err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(r.kind.newRoute()).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.routesForService)).
		Watches(&meshv1alpha1.HTTPFault{}, handler.EnqueueRequestsFromMapFunc(r.routesForFault)).
		Complete(r)
}

// routeFaultIndex indexes routes by the namespace/name of every HTTPFault their
// filters name, so an HTTPFault event finds its routes.
const routeFaultIndex = "weft.route.fault"

// routesForFault maps an HTTPFault event to the routes of the reconciler's kind that
// name it.
func (r *RouteReconciler[R, L]) routesForFault(ctx context.Context, f client.Object) []reconcile.Request {
	routes := r.kind.newList()
	key := types.NamespacedName{Namespace: f.GetNamespace(), Name: f.GetName()}.String()
	if err := r.List(ctx, routes, client.MatchingFields{routeFaultIndex: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing routes for an HTTPFault", "fault", key)
		return nil
	}
	var reqs []reconcile.Request
	for _, o := range r.kind.items(routes) {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return reqs
}

// referencedServices lists namespace/name of the Services a route names as parents or
// backends, for the index.
func referencedServices(ns string, parents []gatewayv1.ParentReference, backends []gatewayv1.BackendObjectReference) []string {
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, pr := range parents {
		if compiler.IsServiceParent(pr) {
			add(types.NamespacedName{Namespace: compiler.ParentNamespace(ns, pr), Name: string(pr.Name)}.String())
		}
	}
	for _, b := range backends {
		if (b.Group == nil || *b.Group == "") && (b.Kind == nil || *b.Kind == "Service") {
			bns := ns
			if b.Namespace != nil && *b.Namespace != "" {
				bns = string(*b.Namespace)
			}
			add(types.NamespacedName{Namespace: bns, Name: string(b.Name)}.String())
		}
	}
	return out
}

// routesForService maps a Service event to the routes of the reconciler's kind that
// name it.
func (r *RouteReconciler[R, L]) routesForService(ctx context.Context, svc client.Object) []reconcile.Request {
	routes := r.kind.newList()
	key := types.NamespacedName{Namespace: svc.GetNamespace(), Name: svc.GetName()}.String()
	if err := r.List(ctx, routes, client.MatchingFields{routeServiceIndex: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing routes for a Service", "service", key)
		return nil
	}
	var reqs []reconcile.Request
	for _, o := range r.kind.items(routes) {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return reqs
}
