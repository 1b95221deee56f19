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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/weftmesh/weft/internal/validation"
)

// ServiceAnnotationReconciler reports bad retry.weft.dev/* and timeout.weft.dev/*
// values on Services. A Service has no status of Weft's to hold a condition, so each
// bad value raises a Warning Event (reason InvalidAnnotation) naming the annotation;
// the compiler ignores the value's whole family, as on routes.
type ServiceAnnotationReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one Service's annotations.
func (r *ServiceAnnotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	svc := &corev1.Service{}
	if err := r.Get(ctx, req.NamespacedName, svc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	_, _, errs := validation.RetryTimeoutAnnotations(validation.KindService, svc.Annotations)
	if len(errs) == 0 {
		return ctrl.Result{}, nil
	}
	problems := make([]string, 0, len(errs))
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, RouteReasonInvalidAnnotation, "Compile", "%s", ignoredAnnotationsMessage(problems))
	return ctrl.Result{}, nil
}

// hasRetryTimeoutAnnotation keeps the reconciler to the Services that carry one of
// the annotations, and to changes of their annotations.
func hasRetryTimeoutAnnotation(o client.Object) bool {
	for k := range o.GetAnnotations() {
		if validation.IsRetryTimeoutAnnotation(k) {
			return true
		}
	}
	return false
}

// SetupWithManager watches Services whose retry or timeout annotations change.
func (r *ServiceAnnotationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("service-annotations").
		For(&corev1.Service{}, builder.WithPredicates(
			predicate.NewPredicateFuncs(hasRetryTimeoutAnnotation),
			predicate.AnnotationChangedPredicate{})).
		Complete(r)
}
