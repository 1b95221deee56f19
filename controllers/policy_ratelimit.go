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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
)

// +kubebuilder:rbac:groups=policy.weft.dev,resources=httplocalratelimitpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=httplocalratelimitpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=servers,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewHTTPLocalRateLimitPolicyReconciler returns the reconciler that reports, in an
// HTTPLocalRateLimitPolicy's status, whether its Server exists (ResolvedRefs) and
// whether an older policy targets the same Server (Accepted False, Conflicted): a
// Server takes one rate limit, the oldest, as in Linkerd.
func NewHTTPLocalRateLimitPolicyReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*policyv1alpha1.HTTPLocalRateLimitPolicy, *policyv1alpha1.HTTPLocalRateLimitPolicyList] {
	return &StatusReconciler[*policyv1alpha1.HTTPLocalRateLimitPolicy, *policyv1alpha1.HTTPLocalRateLimitPolicyList]{Client: c, Recorder: rec, kind: rateLimitPolicies}
}

var rateLimitPolicies = statusKind[*policyv1alpha1.HTTPLocalRateLimitPolicy, *policyv1alpha1.HTTPLocalRateLimitPolicyList]{
	name:      "HTTPLocalRateLimitPolicy",
	newObject: func() *policyv1alpha1.HTTPLocalRateLimitPolicy { return &policyv1alpha1.HTTPLocalRateLimitPolicy{} },
	newList: func() *policyv1alpha1.HTTPLocalRateLimitPolicyList {
		return &policyv1alpha1.HTTPLocalRateLimitPolicyList{}
	},
	items: func(l *policyv1alpha1.HTTPLocalRateLimitPolicyList) []client.Object { return objects(l.Items) },
	refs: func(p *policyv1alpha1.HTTPLocalRateLimitPolicy) []string {
		return []string{refKey("Server", p.Namespace, p.Spec.TargetRef.Name)}
	},
	watches: []refWatch{
		{object: &policyv1alpha1.Server{}, kind: "Server"},
		// A policy that appears, goes or retargets may start or end a conflict with
		// the others of its namespace.
		{object: &policyv1alpha1.HTTPLocalRateLimitPolicy{}, kind: "HTTPLocalRateLimitPolicy", scope: refWatchNamespace,
			predicates: []predicate.Predicate{predicate.GenerationChangedPredicate{}}},
	},
	conditions:   func(p *policyv1alpha1.HTTPLocalRateLimitPolicy) *[]metav1.Condition { return &p.Status.Conditions },
	restate:      func(p *policyv1alpha1.HTTPLocalRateLimitPolicy) { p.Status.ObservedGeneration = p.Generation },
	validate:     validateRateLimitPolicy,
	fixPrefix:    "Fix the spec (the Server is not rate limited until then): ",
	validMessage: "The policy is valid",
	resolveRefs:  resolveRateLimitPolicy,
}

// validateRateLimitPolicy repeats the CRD's rules (for objects stored before them):
// inbound.RateLimit is the one place that knows them.
func validateRateLimitPolicy(p *policyv1alpha1.HTTPLocalRateLimitPolicy) field.ErrorList {
	return inbound.ValidateRateLimit(p)
}

// resolveRateLimitPolicy runs the phases that read other objects: the conflict that
// may set Accepted False (only for a valid spec), then ResolvedRefs (the Server).
func resolveRateLimitPolicy(ctx context.Context, c client.Reader, rec events.EventRecorder, p *policyv1alpha1.HTTPLocalRateLimitPolicy, conds conditions) error {
	if accepted(conds) {
		var others policyv1alpha1.HTTPLocalRateLimitPolicyList
		if err := c.List(ctx, &others, client.InNamespace(p.Namespace)); err != nil {
			return fmt.Errorf("listing HTTPLocalRateLimitPolicies in %s: %w", p.Namespace, err)
		}
		for i := range others.Items {
			o := &others.Items[i]
			if o.Name == p.Name || o.Spec.TargetRef.Name != p.Spec.TargetRef.Name || !inbound.OlderRateLimit(o, p) ||
				len(inbound.ValidateRateLimit(o)) > 0 {
				continue
			}
			msg := fmt.Sprintf("HTTPLocalRateLimitPolicy %s is older and targets Server %s too; a Server takes one rate limit, "+
				"so %s applies. Delete one of the two, or merge them", o.Name, p.Spec.TargetRef.Name, o.Name)
			conds.set(meshv1alpha1.ConditionAccepted, false, ReasonConflicted, msg)
			rec.Eventf(p, nil, corev1.EventTypeWarning, ReasonConflicted, "Accept", msg)
			break
		}
	}
	if !accepted(conds) {
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonInvalid,
			"The policy is not accepted; see Accepted")
		return nil
	}
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.TargetRef.Name}
	ok, err := exists(ctx, c, key, &policyv1alpha1.Server{})
	if err != nil {
		return err
	}
	if !ok {
		setMissing(rec, p, conds, []missingRef{{"Server", key.Namespace, key.Name}}, "; nothing is rate limited until it does")
		return nil
	}
	conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved, "The target Server exists")
	return nil
}
