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
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/compiler"
)

// GRPCRouteReconciler reports, for each Service a GRPCRoute attaches to (GAMMA),
// whether Weft accepts it and whether its backend references resolve. It shares its
// status logic with the HTTPRoute reconciler.
type GRPCRouteReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=grpcroutes/status,verbs=get;update;patch

// Reconcile brings the Weft entries of one GRPCRoute's status.parents up to date.
func (r *GRPCRouteReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	route := &gatewayv1.GRPCRoute{}
	if err := r.Get(ctx, req.NamespacedName, route); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := route.DeepCopy()
	defer func() {
		retErr = patchRouteStatus(ctx, r.Client, route, before, &before.Status.RouteStatus, &route.Status.RouteStatus, retErr)
	}()
	if !route.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, route)
}

func (r *GRPCRouteReconciler) reconcileNormal(ctx context.Context, route *gatewayv1.GRPCRoute) error {
	v := routeView{obj: route, parentRefs: route.Spec.ParentRefs}
	for _, rule := range route.Spec.Rules {
		v.ruleProblems = append(v.ruleProblems, compiler.GRPCRuleProblem(rule))
		for _, b := range rule.BackendRefs {
			v.backendRefs = append(v.backendRefs, b.BackendObjectReference)
		}
	}
	parents, err := computeParents(ctx, r.Client, r.Recorder, v, route.Status.Parents)
	if err != nil {
		return err
	}
	route.Status.Parents = parents
	return nil
}

// SetupWithManager watches GRPCRoutes and the Services they name.
func (r *GRPCRouteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &gatewayv1.GRPCRoute{}, routeServiceIndex,
		func(o client.Object) []string {
			route := o.(*gatewayv1.GRPCRoute)
			var refs []gatewayv1.BackendObjectReference
			for _, rule := range route.Spec.Rules {
				for _, b := range rule.BackendRefs {
					refs = append(refs, b.BackendObjectReference)
				}
			}
			return referencedServices(route.Namespace, route.Spec.ParentRefs, refs)
		}); err != nil {
		return fmt.Errorf("indexing GRPCRoutes by service: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&gatewayv1.GRPCRoute{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, svc client.Object) []reconcile.Request {
			var routes gatewayv1.GRPCRouteList
			return routesForService(ctx, r.Client, &routes, svc, func() []client.Object {
				out := make([]client.Object, 0, len(routes.Items))
				for i := range routes.Items {
					out = append(out, &routes.Items[i])
				}
				return out
			})
		})).
		Complete(r)
}
