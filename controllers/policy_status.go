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
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
)

// Reasons of the policy kinds' conditions beyond the shared ones (Accepted, Invalid,
// Resolved, RefNotFound). Each message says what to do.
const (
	// ReasonConflicted (Server, Accepted False): an older Server selects the same port
	// of at least one of the same pods; the oldest wins there, as in Linkerd.
	ReasonConflicted = "Conflicted"
	// ReasonNoPodsSelected (Server, ResolvedRefs True): the Server selects no pod port
	// yet. Not an error, so that a Server applied before its workload (GitOps order)
	// does not fail health checks; the message says it.
	ReasonNoPodsSelected = "NoPodsSelected"
	// ReasonRouteNotAttached (AuthorizationPolicy, ResolvedRefs False): the target
	// route exists but no parentRef of it names a Server, so the policy admits nothing.
	ReasonRouteNotAttached = "RouteNotAttached"
	// ReasonUnresolvable (AuthorizationPolicy, ResolvedRefs False): the objects exist but
	// the inbound compiler cannot use one (an identity it cannot name); the message is
	// the compiler's.
	ReasonUnresolvable = "Unresolvable"
	// ReasonNoReferences (ResolvedRefs True): the object names nothing to resolve.
	ReasonNoReferences = "NoReferences"
)

// authorizesNothing ends the message of an AuthorizationPolicy whose references do not
// resolve: the compiler drops such a policy whole rather than authorize with what is
// left, so it never widens access.
const authorizesNothing = "; the policy authorizes nothing until it does"

// isPolicyGroup says whether an API group names the policy kinds: policy.weft.dev, or
// Linkerd's policy.linkerd.io (a Linkerd policy whose apiVersion alone was changed).
func isPolicyGroup(g string) bool {
	return g == policyv1alpha1.GroupVersion.Group || g == policyv1alpha1.LinkerdGroup
}

// gatewayGroup is the Gateway API's group, of the routes a policy may target.
const gatewayGroup = "gateway.networking.k8s.io"

// missingRef is a referenced object that does not exist, for a ResolvedRefs message.
type missingRef struct{ kind, namespace, name string }

func (m missingRef) String() string {
	if m.namespace == "" {
		return m.kind + " " + m.name
	}
	return m.kind + " " + m.namespace + "/" + m.name
}

// exists says whether an object exists; only errors other than NotFound are returned.
func exists(ctx context.Context, c client.Reader, key types.NamespacedName, obj client.Object) (bool, error) {
	err := c.Get(ctx, key, obj)
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		// A kind the API server does not serve (the optional Gateway API CRDs are not
		// installed) has no objects: the reference is missing, never satisfied.
		return false, nil
	case err != nil:
		return false, fmt.Errorf("getting %T %s: %w", obj, key, err)
	}
	return true, nil
}

// setMissing sets ResolvedRefs False naming the missing objects, with a Warning Event;
// tail says what follows for the object (for an AuthorizationPolicy: that it
// authorizes nothing until they exist).
func setMissing(rec events.EventRecorder, obj client.Object, conds conditions, missing []missingRef, tail string) {
	names := make([]string, len(missing))
	for i, m := range missing {
		names[i] = m.String()
	}
	msg := fmt.Sprintf("%s not found; create it or fix the reference%s", strings.Join(names, ", "), tail)
	conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonRefNotFound, msg)
	rec.Eventf(obj, nil, corev1.EventTypeWarning, meshv1alpha1.ReasonRefNotFound, "Resolve", msg)
}
