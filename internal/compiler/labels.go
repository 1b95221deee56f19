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

package compiler

import (
	"cmp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/proxy/api"
)

// Names of the endpoint metric labels, as the Linkerd proxy labels its outbound
// metrics from its destination service's metric_labels (prefixed dst_), so that
// dashboards and queries written for Linkerd (sum by (dst_deployment) ...) carry over.
const (
	LabelDstNamespace       = "dst_namespace"
	LabelDstService         = "dst_service"
	LabelDstPod             = "dst_pod"
	LabelDstServiceAccount  = "dst_serviceaccount"
	LabelDstPodTemplateHash = "dst_pod_template_hash"
	// dstOwnerPrefix + the lower-cased kind of the pod's workload: dst_deployment,
	// dst_statefulset, dst_daemonset, dst_replicaset, dst_job, ...
	dstOwnerPrefix = "dst_"
)

// endpointMetricLabels are the metric labels of an endpoint of svc (nil for a pod-IP
// destination) that is the pod podName in podNamespace: the Service's namespace and
// name, the pod's name, and, when the pod is known (pod not nil), its ServiceAccount,
// workload and pod-template-hash. Sorted by name, as the wire contract says. Labels
// other than the pod's come from shared when it is not nil (see sharedLabels).
func endpointMetricLabels(shared sharedLabels, svc *corev1.Service, podNamespace, podName string, pod *corev1.Pod) []*api.Label {
	out := make([]*api.Label, 0, 6)
	add := func(name, value string) {
		if value == "" {
			return
		}
		if shared == nil || name == LabelDstPod {
			out = append(out, &api.Label{Name: name, Value: value})
			return
		}
		out = append(out, shared.get(name, value))
	}
	if svc != nil {
		add(LabelDstNamespace, svc.Namespace)
		add(LabelDstService, svc.Name)
	} else {
		add(LabelDstNamespace, podNamespace)
	}
	add(LabelDstPod, podName)
	if pod != nil {
		add(LabelDstServiceAccount, cmp.Or(pod.Spec.ServiceAccountName, "default"))
		if kind, name := WorkloadOf(pod); kind != "" {
			add(dstOwnerPrefix+kind, name)
		}
		add(LabelDstPodTemplateHash, pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey])
	}
	slices.SortFunc(out, func(a, b *api.Label) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sharedLabels shares label messages between the endpoints of one compiled Service
// port: they all carry its namespace and name, and most the same ServiceAccount,
// workload and pod-template-hash, which would otherwise cost each endpoint four
// messages of 80 bytes in every cached destination. Compiled messages are never
// modified once built, so sharing them is safe.
type sharedLabels map[[2]string]*api.Label

func (s sharedLabels) get(name, value string) *api.Label {
	k := [2]string{name, value}
	if l, ok := s[k]; ok {
		return l
	}
	l := &api.Label{Name: name, Value: value}
	s[k] = l
	return l
}

// WorkloadOf is the lower-cased kind and the name of the workload that runs pod, as
// Linkerd names it in metrics: the pod's controller, except that a ReplicaSet made by
// a Deployment is reported as the Deployment. That ReplicaSet is recognised without
// reading it (no ReplicaSet informer, whose objects would cost the controller memory
// at every scale): its name is the Deployment's, a dash and the pod-template-hash the
// pod carries as a label. A ReplicaSet of another name is reported as itself. A pod
// without a controller, or whose controller's kind is not a label name, has none ("").
func WorkloadOf(pod *corev1.Pod) (kind, name string) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Name == "" {
		return "", ""
	}
	kind = strings.ToLower(ref.Kind)
	if !labelNameTail(kind) {
		return "", ""
	}
	if kind == "replicaset" {
		hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		if d, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && hash != "" && d != "" {
			return "deployment", d
		}
	}
	return kind, ref.Name
}

// labelNameTail says whether s may follow "dst_" in a Prometheus label name: a kind of
// a custom resource is any DNS label, and a dash would make an invalid name.
func labelNameTail(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
