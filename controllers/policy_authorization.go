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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// +kubebuilder:rbac:groups=policy.weft.dev,resources=authorizationpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=authorizationpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=servers;meshtlsauthentications;networkauthentications,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewAuthorizationPolicyReconciler returns the reconciler that reports, in an
// AuthorizationPolicy's status, whether its target and every required authentication
// exist (ResolvedRefs): one that names a missing object authorizes nothing, and the
// message says so.
func NewAuthorizationPolicyReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*policyv1alpha1.AuthorizationPolicy, *policyv1alpha1.AuthorizationPolicyList] {
	return &StatusReconciler[*policyv1alpha1.AuthorizationPolicy, *policyv1alpha1.AuthorizationPolicyList]{Client: c, Recorder: rec, kind: authorizationPolicies}
}

var authorizationPolicies = statusKind[*policyv1alpha1.AuthorizationPolicy, *policyv1alpha1.AuthorizationPolicyList]{
	name:      "AuthorizationPolicy",
	newObject: func() *policyv1alpha1.AuthorizationPolicy { return &policyv1alpha1.AuthorizationPolicy{} },
	newList:   func() *policyv1alpha1.AuthorizationPolicyList { return &policyv1alpha1.AuthorizationPolicyList{} },
	items:     func(l *policyv1alpha1.AuthorizationPolicyList) []client.Object { return objects(l.Items) },
	refs:      authorizationRefs,
	watches: []refWatch{
		{object: &policyv1alpha1.Server{}, kind: "Server"},
		{object: &gatewayv1.HTTPRoute{}, kind: "HTTPRoute"},
		{object: &gatewayv1.GRPCRoute{}, kind: "GRPCRoute"},
		{object: &corev1.Namespace{}, kind: "Namespace"},
		{object: &policyv1alpha1.MeshTLSAuthentication{}, kind: "MeshTLSAuthentication"},
		{object: &policyv1alpha1.NetworkAuthentication{}, kind: "NetworkAuthentication"},
	},
	conditions:   func(a *policyv1alpha1.AuthorizationPolicy) *[]metav1.Condition { return &a.Status.Conditions },
	restate:      func(a *policyv1alpha1.AuthorizationPolicy) { a.Status.ObservedGeneration = a.Generation },
	validate:     validateAuthorizationPolicy,
	fixPrefix:    "Fix the spec (the policy authorizes nothing until then): ",
	validMessage: "The policy is valid",
	resolveRefs:  resolveAuthorizationRefs,
}

// targetKind is the kind of a policy's target as the reconciler knows it, "" for one it
// does not support.
func targetKind(t policyv1alpha1.TargetReference) string {
	switch {
	case t.Group == "" && t.Kind == "Namespace":
		return "Namespace"
	case isPolicyGroup(t.Group) && t.Kind == "Server":
		return "Server"
	case t.Group == gatewayGroup && (t.Kind == "HTTPRoute" || t.Kind == "GRPCRoute"):
		return t.Kind
	}
	return ""
}

// authnKind is the kind of a required authentication as the reconciler knows it, ""
// for one it does not support.
func authnKind(r policyv1alpha1.AuthenticationReference) string {
	switch {
	case isPolicyGroup(r.Group) && (r.Kind == "MeshTLSAuthentication" || r.Kind == "NetworkAuthentication"):
		return r.Kind
	case r.Group == "" && r.Kind == "ServiceAccount":
		return r.Kind
	}
	return ""
}

// validateAuthorizationPolicy repeats the CRD's rules on kinds (for objects stored
// before them) and adds the one CEL cannot see: a Namespace target is the policy's own.
func validateAuthorizationPolicy(a *policyv1alpha1.AuthorizationPolicy) field.ErrorList {
	var errs field.ErrorList
	tp := field.NewPath("spec", "targetRef")
	switch targetKind(a.Spec.TargetRef) {
	case "":
		errs = append(errs, field.NotSupported(tp.Child("kind"), a.Spec.TargetRef.Group+"/"+a.Spec.TargetRef.Kind,
			[]string{"policy.weft.dev/Server", "gateway.networking.k8s.io/HTTPRoute", "gateway.networking.k8s.io/GRPCRoute", "Namespace"}))
	case "Namespace":
		if a.Spec.TargetRef.Name != a.Namespace {
			errs = append(errs, field.Invalid(tp.Child("name"), a.Spec.TargetRef.Name,
				"a Namespace target must be the policy's own namespace "+a.Namespace))
		}
	}
	for i, r := range a.Spec.RequiredAuthenticationRefs {
		if authnKind(r) == "" {
			errs = append(errs, field.NotSupported(field.NewPath("spec", "requiredAuthenticationRefs").Index(i).Child("kind"),
				r.Group+"/"+r.Kind, []string{"policy.weft.dev/MeshTLSAuthentication", "policy.weft.dev/NetworkAuthentication", "ServiceAccount"}))
		}
	}
	return errs
}

// authnNamespace is the namespace of a required authentication: its own, else the
// policy's.
func authnNamespace(a *policyv1alpha1.AuthorizationPolicy, r policyv1alpha1.AuthenticationReference) string {
	if r.Namespace != "" {
		return r.Namespace
	}
	return a.Namespace
}

// authorizationRefs is the index of the objects a policy names. ServiceAccounts are not
// among them: a ServiceAccount reference is an identity (its SPIFFE ID), which needs no
// object to exist, so the controller neither reads nor watches ServiceAccounts.
func authorizationRefs(a *policyv1alpha1.AuthorizationPolicy) []string {
	var keys []string
	switch k := targetKind(a.Spec.TargetRef); k {
	case "Namespace":
		keys = append(keys, refKey(k, "", a.Spec.TargetRef.Name))
	case "Server", "HTTPRoute", "GRPCRoute":
		keys = append(keys, refKey(k, a.Namespace, a.Spec.TargetRef.Name))
	}
	for _, r := range a.Spec.RequiredAuthenticationRefs {
		if k := authnKind(r); k == "MeshTLSAuthentication" || k == "NetworkAuthentication" {
			keys = append(keys, refKey(k, authnNamespace(a, r), r.Name))
		}
	}
	return keys
}

// resolveAuthorizationRefs sets ResolvedRefs: True when the target and every required
// MeshTLSAuthentication and NetworkAuthentication exist (and a target route has a
// Server parent), otherwise False naming what is missing.
func resolveAuthorizationRefs(ctx context.Context, c client.Reader, rec events.EventRecorder, a *policyv1alpha1.AuthorizationPolicy, conds conditions) error {
	if !accepted(conds) {
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonInvalid, "The spec is invalid; see Accepted"+authorizesNothing)
		return nil
	}
	var missing []missingRef
	t := a.Spec.TargetRef
	kind := targetKind(t)
	var target client.Object
	key := types.NamespacedName{Namespace: a.Namespace, Name: t.Name}
	switch kind {
	case "Namespace":
		target, key = &corev1.Namespace{}, types.NamespacedName{Name: t.Name}
	case "Server":
		target = &policyv1alpha1.Server{}
	case "HTTPRoute":
		target = &gatewayv1.HTTPRoute{}
	case "GRPCRoute":
		target = &gatewayv1.GRPCRoute{}
	}
	ok, err := exists(ctx, c, key, target)
	if err != nil {
		return err
	}
	if !ok {
		missing = append(missing, missingRef{kind, key.Namespace, key.Name})
	}
	var (
		meshTLS  []*policyv1alpha1.MeshTLSAuthentication
		networks []*policyv1alpha1.NetworkAuthentication
	)
	for _, r := range a.Spec.RequiredAuthenticationRefs {
		var obj client.Object
		switch authnKind(r) {
		case "MeshTLSAuthentication":
			m := &policyv1alpha1.MeshTLSAuthentication{}
			meshTLS, obj = append(meshTLS, m), m
		case "NetworkAuthentication":
			n := &policyv1alpha1.NetworkAuthentication{}
			networks, obj = append(networks, n), n
		default:
			continue // a ServiceAccount is an identity; see authorizationRefs
		}
		key := types.NamespacedName{Namespace: authnNamespace(a, r), Name: r.Name}
		ok, err := exists(ctx, c, key, obj)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, missingRef{r.Kind, key.Namespace, key.Name})
		}
	}
	if len(missing) > 0 {
		setMissing(rec, a, conds, missing, authorizesNothing)
		return nil
	}
	// Everything exists; what the compiler cannot read (an identity it cannot name) is
	// reported in its words. The trust domain only renames Linkerd identities, it
	// never decides whether one resolves.
	if _, err := inbound.Authorization(a, meshTLS, networks, meshdefaults.TrustDomain); err != nil {
		msg := err.Error() + authorizesNothing
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, ReasonUnresolvable, msg)
		rec.Eventf(a, nil, corev1.EventTypeWarning, ReasonUnresolvable, "Resolve", msg)
		return nil
	}
	if ok && (kind == "HTTPRoute" || kind == "GRPCRoute") && !routeHasServerParent(target) {
		msg := fmt.Sprintf("%s %s has no parentRef to a Server (group policy.weft.dev, kind Server), so it matches no inbound request; "+
			"add one%s", kind, t.Name, authorizesNothing)
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, ReasonRouteNotAttached, msg)
		rec.Eventf(a, nil, corev1.EventTypeWarning, ReasonRouteNotAttached, "Resolve", msg)
		return nil
	}
	conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "The target and every required authentication exist")
	return nil
}

// accepted says whether this reconcile set Accepted True.
func accepted(conds conditions) bool {
	c := meta.FindStatusCondition(*conds.list, meshv1alpha1.ConditionAccepted)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == conds.generation
}

// routeHasServerParent says whether an HTTPRoute or GRPCRoute names a Server as a
// parent: the routes whose requests a policy can scope (Linkerd's model).
func routeHasServerParent(route client.Object) bool {
	var parents []gatewayv1.ParentReference
	switch r := route.(type) {
	case *gatewayv1.HTTPRoute:
		parents = r.Spec.ParentRefs
	case *gatewayv1.GRPCRoute:
		parents = r.Spec.ParentRefs
	}
	for _, p := range parents {
		if p.Group != nil && isPolicyGroup(string(*p.Group)) && p.Kind != nil && *p.Kind == "Server" {
			return true
		}
	}
	return false
}
