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
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/compiler"
)

// routeView is what status computation needs from a route of either kind.
type routeView struct {
	obj        client.Object
	parentRefs []gatewayv1.ParentReference
	// ruleProblems has one entry per rule: why Weft drops it, or "".
	ruleProblems []string
	backendRefs  []gatewayv1.BackendObjectReference
	// mirrorRefs are the backendRefs of the route's RequestMirror filters: one that
	// does not resolve drops that mirror (nothing is mirrored there).
	mirrorRefs []gatewayv1.BackendObjectReference
	// annotationProblems are the route's invalid retry.weft.dev/* and
	// timeout.weft.dev/* values, each naming its annotation.
	annotationProblems []string
	// faultRefs are the names of the HTTPFaults its rules' ExtensionRef filters
	// name, in the route's namespace.
	faultRefs []string
}

// RouteConditionAnnotationsAccepted is Weft's condition on a route's parent entry
// about its retry.weft.dev/* and timeout.weft.dev/* annotations: False (reason
// RouteReasonInvalidAnnotation) while one has a bad value, which is ignored with the
// rest of its family; absent otherwise. The rules are not affected, so the route
// stays Accepted.
const RouteConditionAnnotationsAccepted = "weft.dev/AnnotationsAccepted"

// RouteReasonInvalidAnnotation is the reason of a False AnnotationsAccepted and of the
// Warning Event that goes with it.
const RouteReasonInvalidAnnotation = "InvalidAnnotation"

// ignoredAnnotationsMessage says which annotations are ignored and what to do.
func ignoredAnnotationsMessage(problems []string) string {
	return "Ignored (with the rest of their retry.weft.dev/ or timeout.weft.dev/ family) until fixed: " + strings.Join(problems, "; ")
}

// computeParents returns the route's new status.parents: other controllers' entries
// unchanged and in place, then one Weft entry per Service parentRef, in spec order.
// Weft's entries for parentRefs that are gone are dropped.
func computeParents(ctx context.Context, c client.Reader, rec events.EventRecorder, v routeView, existing []gatewayv1.RouteParentStatus) ([]gatewayv1.RouteParentStatus, error) {
	get := func(ns, name string) (*corev1.Service, error) {
		svc := &corev1.Service{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, svc); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
		return svc, nil
	}
	gen := v.obj.GetGeneration()
	ns := v.obj.GetNamespace()

	// ResolvedRefs is the same for every parent: it is about the route's backends.
	resolved := metav1.Condition{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue,
		Reason: string(gatewayv1.RouteReasonResolvedRefs), Message: "All references resolved", ObservedGeneration: gen}
	var refProblems []string
	for _, ref := range v.backendRefs {
		reason, msg, _, _, err := compiler.CheckBackendRef(ns, ref, get)
		if err != nil {
			return nil, err
		}
		if reason == "" {
			continue
		}
		if len(refProblems) == 0 {
			resolved.Status, resolved.Reason = metav1.ConditionFalse, reason
		}
		refProblems = append(refProblems, msg)
		rec.Eventf(v.obj, nil, corev1.EventTypeWarning, reason, "Resolve", "Fix the backendRef: %s", msg)
	}
	if len(refProblems) > 0 {
		resolved.Message = "Requests to these backends fail with 500: " + strings.Join(refProblems, "; ")
	}
	if err := checkMirrorRefs(ns, v, get, rec, &resolved); err != nil {
		return nil, err
	}
	missingFaults, err := missingHTTPFaults(ctx, c, ns, v.faultRefs)
	if err != nil {
		return nil, err
	}
	if len(missingFaults) > 0 {
		// Gateway API: a filter that cannot be resolved is not skipped; the requests
		// it would process get an error. BackendNotFound is the spec's reason for a
		// reference to an object that does not exist.
		msg := "HTTPFault " + strings.Join(missingFaults, ", ") + " not found in namespace " + ns +
			"; the requests of the rules whose ExtensionRef filter names it are answered 500 until it exists or the filter goes"
		if resolved.Status == metav1.ConditionTrue {
			resolved.Status, resolved.Reason, resolved.Message = metav1.ConditionFalse, string(gatewayv1.RouteReasonBackendNotFound), msg
		} else {
			resolved.Message += "; " + msg
		}
		rec.Eventf(v.obj, nil, corev1.EventTypeWarning, string(gatewayv1.RouteReasonBackendNotFound), "Resolve", "%s", msg)
	}

	// Rules Weft cannot implement are dropped (Gateway API's "Drop Rule" approach).
	var dropped []string
	for i, p := range v.ruleProblems {
		if p != "" {
			dropped = append(dropped, fmt.Sprintf("rule %d: %s", i, p))
		}
	}
	allDropped := len(dropped) > 0 && len(dropped) == len(v.ruleProblems)
	if len(dropped) > 0 {
		rec.Eventf(v.obj, nil, corev1.EventTypeWarning, string(gatewayv1.RouteReasonUnsupportedValue), "Accept",
			"Dropped Rule(s): %s", strings.Join(dropped, "; "))
	}

	if len(v.annotationProblems) > 0 {
		rec.Eventf(v.obj, nil, corev1.EventTypeWarning, RouteReasonInvalidAnnotation, "Accept", "%s",
			ignoredAnnotationsMessage(v.annotationProblems))
	}

	var out []gatewayv1.RouteParentStatus
	for _, p := range existing {
		if p.ControllerName != MeshControllerName {
			out = append(out, p)
		}
	}
	for _, pr := range v.parentRefs {
		if !compiler.IsServiceParent(pr) || len(out) >= maxRouteParents {
			continue
		}
		entry := gatewayv1.RouteParentStatus{ParentRef: pr, ControllerName: MeshControllerName}
		for _, p := range existing {
			if p.ControllerName == MeshControllerName && reflect.DeepEqual(p.ParentRef, pr) {
				// Keep the conditions so that unchanged ones keep their
				// lastTransitionTime.
				entry.Conditions = append([]metav1.Condition(nil), p.Conditions...)
			}
		}
		ok, reason, msg, err := compiler.CheckParent(ns, pr, get)
		if err != nil {
			return nil, err
		}
		if !ok {
			rec.Eventf(v.obj, nil, corev1.EventTypeWarning, reason, "Accept", "Fix the parentRef: %s", msg)
		}
		if ok && allDropped {
			ok, reason, msg = false, string(gatewayv1.RouteReasonUnsupportedValue), "Every rule was dropped: "+strings.Join(dropped, "; ")
		}
		accepted := metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionTrue,
			Reason: reason, Message: msg, ObservedGeneration: gen}
		if !ok {
			accepted.Status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&entry.Conditions, accepted)
		meta.SetStatusCondition(&entry.Conditions, resolved)
		// PartiallyInvalid is only ever True, and only while some rules are dropped
		// and the route is accepted.
		if ok && len(dropped) > 0 {
			meta.SetStatusCondition(&entry.Conditions, metav1.Condition{Type: string(gatewayv1.RouteConditionPartiallyInvalid),
				Status: metav1.ConditionTrue, Reason: string(gatewayv1.RouteReasonUnsupportedValue),
				Message: "Dropped Rule(s): " + strings.Join(dropped, "; "), ObservedGeneration: gen})
		} else {
			meta.RemoveStatusCondition(&entry.Conditions, string(gatewayv1.RouteConditionPartiallyInvalid))
		}
		if len(v.annotationProblems) > 0 {
			meta.SetStatusCondition(&entry.Conditions, metav1.Condition{Type: RouteConditionAnnotationsAccepted,
				Status: metav1.ConditionFalse, Reason: RouteReasonInvalidAnnotation,
				Message: ignoredAnnotationsMessage(v.annotationProblems), ObservedGeneration: gen})
		} else {
			meta.RemoveStatusCondition(&entry.Conditions, RouteConditionAnnotationsAccepted)
		}
		out = append(out, entry)
	}
	if out == nil {
		// status.parents is required: write an empty list, not null.
		out = []gatewayv1.RouteParentStatus{}
	}
	return out, nil
}

// patchRouteStatus writes the route's status once, at the end of a reconcile, when it
// changed. status.parents is an atomic list shared with other controllers, so the
// patch carries the resourceVersion it was computed from: a concurrent writer makes
// it fail with a conflict and the reconcile runs again on fresh data.
func patchRouteStatus(ctx context.Context, c client.Client, obj, before client.Object, old, updated *gatewayv1.RouteStatus, retErr error) error {
	if retErr != nil {
		return retErr
	}
	if len(old.Parents) == len(updated.Parents) && reflect.DeepEqual(old.Parents, updated.Parents) {
		return nil
	}
	if len(old.Parents) == 0 && len(updated.Parents) == 0 {
		return nil
	}
	err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching %T status: %w", obj, err)
	}
	return nil
}

// checkMirrorRefs adds the route's unusable RequestMirror backendRefs to resolved
// (ResolvedRefs False with the first problem's reason, as for backendRefs), with a
// Warning Event each: the compiler drops those mirrors, and the user must learn that
// nothing is copied there.
func checkMirrorRefs(ns string, v routeView, get compiler.ServiceGetter, rec events.EventRecorder, resolved *metav1.Condition) error {
	var problems []string
	for _, ref := range v.mirrorRefs {
		reason, msg, _, _, err := compiler.CheckBackendRef(ns, ref, get)
		if err != nil {
			return err
		}
		if reason == "" {
			continue
		}
		if resolved.Status == metav1.ConditionTrue {
			resolved.Status, resolved.Reason, resolved.Message = metav1.ConditionFalse, reason, ""
		}
		problems = append(problems, msg)
		rec.Eventf(v.obj, nil, corev1.EventTypeWarning, reason, "Resolve", "Fix the RequestMirror backendRef: %s", msg)
	}
	if len(problems) == 0 {
		return nil
	}
	m := "Nothing is mirrored to these RequestMirror backends: " + strings.Join(problems, "; ")
	if resolved.Message != "" {
		m = resolved.Message + ". " + m
	}
	resolved.Message = m
	return nil
}

// missingHTTPFaults returns the names among refs of the HTTPFaults of namespace ns that
// do not exist, once each, in order.
func missingHTTPFaults(ctx context.Context, c client.Reader, ns string, refs []string) ([]string, error) {
	var missing []string
	for _, name := range refs {
		if slices.Contains(missing, name) {
			continue
		}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &meshv1alpha1.HTTPFault{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, name)
		case err != nil:
			return nil, fmt.Errorf("getting HTTPFault %s/%s: %w", ns, name, err)
		}
	}
	return missing, nil
}
