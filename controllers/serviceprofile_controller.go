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
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/internal/validation"
)

// +kubebuilder:rbac:groups=mesh.weft.dev,resources=serviceprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=serviceprofiles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewServiceProfileReconciler returns the reconciler that validates ServiceProfiles,
// checks that the service they describe exists, and reports both in status.
// clusterDomain is the cluster's DNS suffix: a profile named for a Service under it is
// that Service's.
func NewServiceProfileReconciler(c client.Client, rec events.EventRecorder, clusterDomain string) *StatusReconciler[*meshv1alpha1.ServiceProfile, *meshv1alpha1.ServiceProfileList] {
	return &StatusReconciler[*meshv1alpha1.ServiceProfile, *meshv1alpha1.ServiceProfileList]{Client: c, Recorder: rec, kind: serviceProfiles(clusterDomain)}
}

func serviceProfiles(clusterDomain string) statusKind[*meshv1alpha1.ServiceProfile, *meshv1alpha1.ServiceProfileList] {
	return statusKind[*meshv1alpha1.ServiceProfile, *meshv1alpha1.ServiceProfileList]{
		name:      "ServiceProfile",
		newObject: func() *meshv1alpha1.ServiceProfile { return &meshv1alpha1.ServiceProfile{} },
		newList:   func() *meshv1alpha1.ServiceProfileList { return &meshv1alpha1.ServiceProfileList{} },
		items:     func(l *meshv1alpha1.ServiceProfileList) []client.Object { return objects(l.Items) },
		services: func(sp *meshv1alpha1.ServiceProfile) []string {
			if key, ok := profileService(sp.Name, clusterDomain); ok {
				return []string{key.String()}
			}
			return nil
		},
		// The HTTPFaults its routes name (Weft-only fault field), for the index.
		refs: func(sp *meshv1alpha1.ServiceProfile) []string {
			var keys []string
			for _, name := range profileFaults(sp) {
				keys = append(keys, refKey("HTTPFault", sp.Namespace, name))
			}
			return keys
		},
		watches:    []refWatch{{object: &meshv1alpha1.HTTPFault{}, kind: "HTTPFault"}},
		conditions: func(sp *meshv1alpha1.ServiceProfile) *[]metav1.Condition { return &sp.Status.Conditions },
		restate: func(sp *meshv1alpha1.ServiceProfile) {
			sp.Status.ObservedGeneration = sp.Generation
			sp.Status.Routes = int32(len(sp.Spec.Routes))
			sp.Status.RetryableRoutes = 0
			for _, rt := range sp.Spec.Routes {
				if rt.IsRetryable {
					sp.Status.RetryableRoutes++
				}
			}
		},
		validate:     validation.ServiceProfile,
		fixPrefix:    "Fix the spec: ",
		validMessage: "The profile is valid",
		resolveRefs: func(ctx context.Context, c client.Reader, rec events.EventRecorder, sp *meshv1alpha1.ServiceProfile, conds conditions) error {
			return resolveProfileService(ctx, c, rec, sp, conds, clusterDomain)
		},
	}
}

// resolveProfileService sets ResolvedRefs: True when the profile names an in-cluster
// Service that exists, or names an authority outside the cluster (which has nothing to
// resolve).
func resolveProfileService(ctx context.Context, c client.Reader, rec events.EventRecorder, sp *meshv1alpha1.ServiceProfile, conds conditions, clusterDomain string) error {
	key, inCluster := profileService(sp.Name, clusterDomain)
	if !inCluster {
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "The profile describes an authority outside the cluster")
		return nil
	}
	err := c.Get(ctx, key, &corev1.Service{})
	switch {
	case apierrors.IsNotFound(err):
		msg := fmt.Sprintf("Service %s does not exist; create it, or rename the profile to the FQDN of an existing Service", key)
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonRefNotFound, msg)
		rec.Eventf(sp, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonRefNotFound, "Resolve", msg)
	case err != nil:
		return fmt.Errorf("getting Service %s: %w", key, err)
	default:
		var missing []missingRef
		for _, name := range profileFaults(sp) {
			ok, err := exists(ctx, c, types.NamespacedName{Namespace: sp.Namespace, Name: name}, &meshv1alpha1.HTTPFault{})
			if err != nil {
				return err
			}
			if !ok {
				missing = append(missing, missingRef{"HTTPFault", sp.Namespace, name})
			}
		}
		if len(missing) > 0 {
			setMissing(rec, sp, conds, missing, "; the requests of the routes that name it are answered 500 until it does")
			return nil
		}
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "Service "+key.String()+" exists")
	}
	return nil
}

// profileFaults are the names of the HTTPFaults a profile's routes name, once each.
func profileFaults(sp *meshv1alpha1.ServiceProfile) []string {
	var out []string
	for _, rt := range sp.Spec.Routes {
		if rt.Fault != "" && !slices.Contains(out, rt.Fault) {
			out = append(out, rt.Fault)
		}
	}
	return out
}

// profileService is the Service a profile name (<service>.<namespace>.svc.<cluster
// domain>) describes; other names (external authorities such as api.example.com)
// report false.
func profileService(name, clusterDomain string) (types.NamespacedName, bool) {
	svc, ok := svcname.Parse(name, clusterDomain, svcname.FQDNOnly)
	return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, ok
}
