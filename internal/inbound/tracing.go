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

package inbound

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/validation"
	"github.com/weftmesh/weft/proxy/api"
)

// The OpenTelemetry resource attributes (semantic conventions, k8s.*) the control plane
// sets on every proxy's spans, so that one service name serves the whole mesh and a
// trace viewer still tells the hops apart.
const (
	AttrNamespace   = "k8s.namespace.name"
	AttrPod         = "k8s.pod.name"
	AttrDeployment  = "k8s.deployment.name"
	AttrReplicaSet  = "k8s.replicaset.name"
	AttrStatefulSet = "k8s.statefulset.name"
	AttrDaemonSet   = "k8s.daemonset.name"
	AttrJob         = "k8s.job.name"
)

// tracingPath is the Mesh field TracingConfig reads, for its errors.
var tracingPath = field.NewPath("spec", "tracing")

// TracingConfig returns what a pod's proxy needs of the Mesh's spec.tracing, or nil
// when tracing is off: no Mesh, no spec.tracing, or one whose collector or rate does
// not parse (validation.Tracing; the Mesh's TracingReady condition then says why).
// Bad input turns tracing off rather than guessing: a proxy cannot dial an address
// that does not parse, and a rate it cannot read has no safe reading.
func TracingConfig(mesh *meshv1alpha1.Mesh, pod *corev1.Pod) *api.Tracing {
	if mesh == nil || mesh.Spec.Tracing == nil {
		return nil
	}
	t := mesh.Spec.Tracing
	if len(validation.Tracing(t, tracingPath)) > 0 {
		return nil
	}
	perMillion, _ := validation.SamplingPerMillion(t.SamplingRate) // checked just above
	out := &api.Tracing{
		Collector:          t.Collector,
		SamplingPerMillion: perMillion,
		ServiceName:        cmp.Or(t.ServiceName, meshdefaults.TracingServiceName),
	}
	for _, a := range t.Attributes {
		// The schema refuses these names; one that got past it must not pass for
		// the pod's identity in a trace.
		if a.Name == "service.name" || strings.HasPrefix(a.Name, "k8s.") {
			continue
		}
		out.Attributes = append(out.Attributes, &api.Attribute{Key: a.Name, Value: a.Value})
	}
	for k, v := range podAttributes(pod) {
		out.Attributes = append(out.Attributes, &api.Attribute{Key: k, Value: v})
	}
	slices.SortFunc(out.Attributes, func(a, b *api.Attribute) int { return cmp.Compare(a.Key, b.Key) })
	// A duplicate key (two entries of the same name in an object the schema did not
	// check) keeps its first value, so the message stays deterministic.
	out.Attributes = slices.CompactFunc(out.Attributes, func(a, b *api.Attribute) bool { return a.Key == b.Key })
	return out
}

// podAttributes are the pod's k8s.* resource attributes: its namespace and name, and
// its controller by the semantic conventions' names. A ReplicaSet of a Deployment also
// gives the Deployment, recognised as the metrics' dst_deployment is
// (compiler.WorkloadOf), without reading the ReplicaSet.
func podAttributes(pod *corev1.Pod) map[string]string {
	attrs := map[string]string{AttrNamespace: pod.Namespace, AttrPod: pod.Name}
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil {
		return attrs
	}
	group, _, _ := strings.Cut(owner.APIVersion, "/")
	switch {
	case group == "apps" && owner.Kind == "ReplicaSet":
		attrs[AttrReplicaSet] = owner.Name
		if kind, name := compiler.WorkloadOf(pod); kind == "deployment" {
			attrs[AttrDeployment] = name
		}
	case group == "apps" && owner.Kind == "StatefulSet":
		attrs[AttrStatefulSet] = owner.Name
	case group == "apps" && owner.Kind == "DaemonSet":
		attrs[AttrDaemonSet] = owner.Name
	case group == "batch" && owner.Kind == "Job":
		attrs[AttrJob] = owner.Name
	}
	return attrs
}
