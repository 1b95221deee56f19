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

package tap

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// DefaultMaxPods bounds how many proxies one tap opens streams to: a tap of a
// namespace of 5,000 pods would otherwise open 5,000 mTLS connections from one
// controller replica. The pods taken are the first by name, and the response says so.
const DefaultMaxPods = 100

// NotFoundError: the tapped workload (or namespace) does not exist.
type NotFoundError struct{ Target Target }

func (e *NotFoundError) Error() string {
	if e.Target.Resource == "namespaces" {
		return fmt.Sprintf("namespace %q does not exist", e.Target.Namespace)
	}
	return fmt.Sprintf("%s %q does not exist in namespace %q", strings.TrimSuffix(e.Target.Resource, "s"), e.Target.Name, e.Target.Namespace)
}

// NoPodsError: the workload exists but has no running meshed pod to tap.
type NoPodsError struct {
	Target Target
	// Pods counts its running pods without a proxy.
	Unmeshed int
}

func (e *NoPodsError) Error() string {
	msg := fmt.Sprintf("%s has no running meshed pod to tap", e.Target)
	if e.Unmeshed > 0 {
		msg += fmt.Sprintf(" (%d running pods have no proxy: annotate the namespace or workload with weft.dev/inject=enabled and restart them)", e.Unmeshed)
	}
	return msg
}

// Pod is one proxy to tap.
type Pod struct {
	Namespace string
	Name      string
	// Addr is the proxy's tap address, podIP:4190.
	Addr string
	// ServiceAccount names the identity the proxy's tap server must prove.
	ServiceAccount string
}

// resolvePods returns the running meshed pods of t (their tap address on port),
// sorted by name, at most max, and how many there were in all.
func resolvePods(ctx context.Context, r client.Reader, t Target, max, port int) ([]Pod, int, error) {
	if port == 0 {
		port = meshdefaults.TapPort
	}
	sel, err := selectorOf(ctx, r, t)
	if err != nil {
		return nil, 0, err
	}
	var pods []corev1.Pod
	if t.Resource == "pods" {
		p := &corev1.Pod{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: t.Name}, p); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, 0, &NotFoundError{Target: t}
			}
			return nil, 0, fmt.Errorf("reading pod %s/%s: %w", t.Namespace, t.Name, err)
		}
		pods = []corev1.Pod{*p}
	} else {
		list := &corev1.PodList{}
		if err := r.List(ctx, list, client.InNamespace(t.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, 0, fmt.Errorf("listing the pods of %s: %w", t, err)
		}
		pods = list.Items
	}
	var out []Pod
	unmeshed := 0
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		if !meshdefaults.Injected(p.Annotations, inject.ContainerNames(&p.Spec)) {
			unmeshed++
			continue
		}
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		out = append(out, Pod{
			Namespace: p.Namespace, Name: p.Name, ServiceAccount: sa,
			Addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)),
		})
	}
	if len(out) == 0 {
		return nil, 0, &NoPodsError{Target: t, Unmeshed: unmeshed}
	}
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
	total := len(out)
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, total, nil
}

// selectorOf returns the label selector of t's pods (everything for a namespace; unused
// for a pod), or NotFoundError.
func selectorOf(ctx context.Context, r client.Reader, t Target) (labels.Selector, error) {
	key := types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
	var obj client.Object
	var sel func() *metav1.LabelSelector
	switch t.Resource {
	case "namespaces":
		key = types.NamespacedName{Name: t.Namespace}
		obj = &corev1.Namespace{}
	case "pods":
		return labels.Everything(), nil
	case "deployments":
		o := &appsv1.Deployment{}
		obj, sel = o, func() *metav1.LabelSelector { return o.Spec.Selector }
	case "replicasets":
		o := &appsv1.ReplicaSet{}
		obj, sel = o, func() *metav1.LabelSelector { return o.Spec.Selector }
	case "statefulsets":
		o := &appsv1.StatefulSet{}
		obj, sel = o, func() *metav1.LabelSelector { return o.Spec.Selector }
	case "daemonsets":
		o := &appsv1.DaemonSet{}
		obj, sel = o, func() *metav1.LabelSelector { return o.Spec.Selector }
	case "jobs":
		o := &batchv1.Job{}
		obj, sel = o, func() *metav1.LabelSelector { return o.Spec.Selector }
	default:
		return nil, fmt.Errorf("resource %q cannot be tapped; use one of %s", t.Resource, strings.Join(Resources, ", "))
	}
	if err := r.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &NotFoundError{Target: t}
		}
		return nil, fmt.Errorf("reading %s: %w", t, err)
	}
	if sel == nil {
		return labels.Everything(), nil
	}
	ls := sel()
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		// An empty selector would select every pod of the namespace: tap nothing
		// rather than more than the user asked for.
		return nil, &NoPodsError{Target: t}
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("the selector of %s: %w", t, err)
	}
	return s, nil
}
