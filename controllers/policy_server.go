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
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
)

// +kubebuilder:rbac:groups=policy.weft.dev,resources=servers,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=servers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// NewServerReconciler returns the reconciler that reports, in a Server's status,
// whether it selects any pod port (ResolvedRefs; selecting none is not an error) and
// whether an older Server selects the same port of the same pods (Accepted False,
// Conflicted).
func NewServerReconciler(c client.Client, rec events.EventRecorder) *StatusReconciler[*policyv1alpha1.Server, *policyv1alpha1.ServerList] {
	return &StatusReconciler[*policyv1alpha1.Server, *policyv1alpha1.ServerList]{Client: c, Recorder: rec, kind: servers}
}

var servers = statusKind[*policyv1alpha1.Server, *policyv1alpha1.ServerList]{
	name:      "Server",
	newObject: func() *policyv1alpha1.Server { return &policyv1alpha1.Server{} },
	newList:   func() *policyv1alpha1.ServerList { return &policyv1alpha1.ServerList{} },
	items:     func(l *policyv1alpha1.ServerList) []client.Object { return objects(l.Items) },
	watches: []refWatch{
		// A pod that appears, goes or changes labels may change what every Server of
		// its namespace selects; other pod updates (status) cannot.
		{object: &corev1.Pod{}, kind: "Pod", scope: refWatchNamespace, predicates: []predicate.Predicate{podSelectionChanged}},
		// A Server that appears, goes or changes may start or end a conflict with the
		// others of its namespace.
		{object: &policyv1alpha1.Server{}, kind: "Server", scope: refWatchNamespace,
			predicates: []predicate.Predicate{predicate.GenerationChangedPredicate{}}},
	},
	conditions: func(s *policyv1alpha1.Server) *[]metav1.Condition { return &s.Status.Conditions },
	restate:    func(s *policyv1alpha1.Server) { s.Status.ObservedGeneration = s.Generation },
	validate: func(s *policyv1alpha1.Server) field.ErrorList {
		if _, err := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector); err != nil {
			return field.ErrorList{field.Invalid(field.NewPath("spec", "podSelector"), s.Spec.PodSelector.String(), err.Error())}
		}
		return nil
	},
	fixPrefix:    "Fix the spec: ",
	validMessage: "The Server is valid",
	resolveRefs:  resolveServer,
}

// resolveServer runs the phases that read other objects: the conflicts that may set
// Accepted False (only for a valid spec), then ResolvedRefs.
func resolveServer(ctx context.Context, c client.Reader, rec events.EventRecorder, s *policyv1alpha1.Server, conds conditions) error {
	if accepted(conds) {
		if err := acceptServer(ctx, c, rec, s, conds); err != nil {
			return err
		}
	}
	return resolveServerPods(ctx, c, rec, s, conds)
}

// podSelectionChanged passes the pod events that can change which Servers select the
// pod: creation, deletion, and a change of labels. Container ports cannot change on a
// live pod.
var podSelectionChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
	},
}

// selects returns the ports s selects on pod, none when it does not select the pod.
func selects(s *policyv1alpha1.Server, sel labels.Selector, pod *corev1.Pod) []uint32 {
	if pod.Namespace != s.Namespace || !pod.DeletionTimestamp.IsZero() || !sel.Matches(labels.Set(pod.Labels)) {
		return nil
	}
	return inbound.ServerPorts(s, pod)
}

// OlderServer says whether a takes precedence over b where both select the same port
// of a pod: the older (creation time), then the name first in order. The inbound
// compiler keeps the same rule, so the Server reported Conflicted is the one the proxy
// ignores.
func OlderServer(a, b *policyv1alpha1.Server) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// acceptServer sets Accepted False, Conflicted, when an older Server of the namespace
// selects the same port of one of the pods this one selects: that pod's port follows
// the older one.
func acceptServer(ctx context.Context, c client.Reader, rec events.EventRecorder, s *policyv1alpha1.Server, conds conditions) error {
	pods, err := listPods(ctx, c, s.Namespace)
	if err != nil {
		return err
	}
	var others policyv1alpha1.ServerList
	if err := c.List(ctx, &others, client.InNamespace(s.Namespace)); err != nil {
		return fmt.Errorf("listing Servers in %s: %w", s.Namespace, err)
	}
	sel, _ := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector) // validated before accept runs
	for i := range pods.Items {
		pod := &pods.Items[i]
		ports := selects(s, sel, pod)
		if len(ports) == 0 {
			continue
		}
		for j := range others.Items {
			o := &others.Items[j]
			if o.Name == s.Name || !OlderServer(o, s) {
				continue
			}
			osel, err := metav1.LabelSelectorAsSelector(&o.Spec.PodSelector)
			if err != nil {
				continue // an invalid Server selects nothing
			}
			for _, port := range selects(o, osel, pod) {
				if !slices.Contains(ports, port) {
					continue
				}
				msg := fmt.Sprintf("Server %s is older and selects port %d of pod %s too; that port follows %s there. "+
					"Change this Server's podSelector or port, or delete one of the two", o.Name, port, pod.Name, o.Name)
				conds.set(meshv1alpha1.ConditionAccepted, false, ReasonConflicted, msg)
				rec.Eventf(s, nil, corev1.EventTypeWarning, ReasonConflicted, "Accept", msg)
				return nil
			}
		}
	}
	return nil
}

// resolveServerPods sets ResolvedRefs: True either way, with reason Resolved when the
// Server selects a port of at least one pod, NoPodsSelected (and a message saying why)
// when it selects none yet.
func resolveServerPods(ctx context.Context, c client.Reader, _ events.EventRecorder, s *policyv1alpha1.Server, conds conditions) error {
	sel, err := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector)
	if err != nil {
		conds.set(meshv1alpha1.ConditionResolvedRefs, false, meshv1alpha1.ReasonInvalid, "The podSelector is invalid; see Accepted")
		return nil
	}
	pods, err := listPods(ctx, c, s.Namespace)
	if err != nil {
		return err
	}
	matched, selected := 0, 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !pod.DeletionTimestamp.IsZero() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		matched++
		if len(inbound.ServerPorts(s, pod)) > 0 {
			selected++
		}
	}
	switch {
	case selected > 0:
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, meshv1alpha1.ReasonResolved,
			fmt.Sprintf("The Server selects port %s of %d pod(s)", s.Spec.Port.String(), selected))
	case matched > 0:
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, ReasonNoPodsSelected,
			fmt.Sprintf("The podSelector matches %d pod(s) but none has a container port named %q; fix the port name, "+
				"or the Server applies to pods that get one", matched, s.Spec.Port.StrVal))
	default:
		conds.set(meshv1alpha1.ConditionResolvedRefs, true, ReasonNoPodsSelected,
			fmt.Sprintf("The podSelector matches no pod in namespace %s yet; the Server applies to pods as they appear "+
				"(check the labels if you expected some)", s.Namespace))
	}
	return nil
}

// listPods lists a namespace's pods from the manager's cache (cut down to labels and
// container ports, see slimPod).
func listPods(ctx context.Context, c client.Reader, namespace string) (*corev1.PodList, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	return &pods, nil
}
