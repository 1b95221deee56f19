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
	"github.com/weftmesh/weft/internal/validation"
)

// profileServiceIndex indexes ServiceProfiles by the namespace/name of the in-cluster
// Service they describe, so a Service event finds its profiles without a full list.
const profileServiceIndex = "weft.profile.service"

// ServiceProfileReconciler validates ServiceProfiles, checks that the service they
// describe exists, and reports both in status.
type ServiceProfileReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=mesh.weft.dev,resources=serviceprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=serviceprofiles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the status of one ServiceProfile up to date.
func (r *ServiceProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	sp := &meshv1alpha1.ServiceProfile{}
	if err := r.Get(ctx, req.NamespacedName, sp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := sp.DeepCopy()
	defer func() {
		if err := r.Status().Patch(ctx, sp, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = fmt.Errorf("patching ServiceProfile status: %w", err)
		}
	}()
	if !sp.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, sp)
}

func (r *ServiceProfileReconciler) reconcileNormal(ctx context.Context, sp *meshv1alpha1.ServiceProfile) error {
	conds := conditions{list: &sp.Status.Conditions, generation: sp.Generation}
	sp.Status.ObservedGeneration = sp.Generation
	sp.Status.Routes = int32(len(sp.Spec.Routes))
	sp.Status.RetryableRoutes = 0
	for _, rt := range sp.Spec.Routes {
		if rt.IsRetryable {
			sp.Status.RetryableRoutes++
		}
	}

	if errs := validation.ServiceProfile(sp); len(errs) > 0 {
		msg := errs.ToAggregate().Error()
		conds.set(meshv1alpha1.ConditionAccepted, false, meshv1alpha1.ReasonInvalid, "Fix the spec: "+msg)
		r.Recorder.Eventf(sp, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonInvalid, "Validate", "Fix the spec: %s", msg)
	} else {
		conds.set(meshv1alpha1.ConditionAccepted, true, meshv1alpha1.ReasonAccepted, "The profile is valid")
	}

	if err := r.resolveService(ctx, sp, conds); err != nil {
		return err
	}
	conds.summarizeReady(meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionResolvedRefs)
	return nil
}

// resolveService sets ResolvedRefs: True when the profile names an in-cluster Service that
// exists, or names an authority outside the cluster (which has nothing to resolve).
func (r *ServiceProfileReconciler) resolveService(ctx context.Context, sp *meshv1alpha1.ServiceProfile, conds conditions) error {
	key, inCluster := ServiceForProfileName(sp.Name)
	if !inCluster {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "The profile describes an authority outside the cluster")
		return nil
	}
	err := r.Get(ctx, key, &corev1.Service{})
	switch {
	case apierrors.IsNotFound(err):
		msg := fmt.Sprintf("Service %s does not exist; create it, or rename the profile to the FQDN of an existing Service", key)
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonRefNotFound, msg)
		r.Recorder.Eventf(sp, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonRefNotFound, "Resolve", msg)
	case err != nil:
		return fmt.Errorf("getting Service %s: %w", key, err)
	default:
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "Service "+key.String()+" exists")
	}
	return nil
}

// ServiceForProfileName parses a profile name of the form
// <service>.<namespace>.svc.<cluster-domain> into the Service it describes. Other names
// (external authorities such as api.example.com) report false.
func ServiceForProfileName(name string) (types.NamespacedName, bool) {
	parts := strings.SplitN(name, ".", 4)
	if len(parts) < 4 || parts[2] != "svc" || parts[3] == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: parts[1], Name: parts[0]}, true
}

// SetupWithManager watches ServiceProfiles and the Services they describe.
func (r *ServiceProfileReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.ServiceProfile{}, profileServiceIndex,
		func(o client.Object) []string {
			if key, ok := ServiceForProfileName(o.GetName()); ok {
				return []string{key.String()}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("indexing ServiceProfiles by service: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.ServiceProfile{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.profilesForService)).
		Complete(r)
}

func (r *ServiceProfileReconciler) profilesForService(ctx context.Context, svc client.Object) []reconcile.Request {
	var profiles meshv1alpha1.ServiceProfileList
	key := types.NamespacedName{Namespace: svc.GetNamespace(), Name: svc.GetName()}.String()
	if err := r.List(ctx, &profiles, client.MatchingFields{profileServiceIndex: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing ServiceProfiles for a Service", "service", key)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(profiles.Items))
	for _, p := range profiles.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return reqs
}
