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

// Package workload names the workload that runs a pod the way kubectl's short names
// do (deploy/web, sts/db, ds/x, job/y, pod/z), for what users read: weft stat, authz
// and diagnostics, and the dashboard. (Metric labels name workloads differently, as
// Linkerd's do: compiler.WorkloadOf.)
package workload

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeploymentOf names a ReplicaSet's workload: its Deployment (deploy/NAME), else the
// ReplicaSet itself (rs/NAME).
func DeploymentOf(rs *appsv1.ReplicaSet) string {
	for _, ref := range rs.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "Deployment" {
			return "deploy/" + ref.Name
		}
	}
	return "rs/" + rs.Name
}

// Name names the workload that owns a pod: its Deployment through its ReplicaSet
// (rsOwner maps namespace/ReplicaSet to DeploymentOf's answer), else its controller
// (sts/db, ds/x, job/y), else the pod itself.
func Name(p *corev1.Pod, rsOwner map[string]string) string {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return "pod/" + p.Name
	}
	switch ref.Kind {
	case "ReplicaSet":
		if d, ok := rsOwner[p.Namespace+"/"+ref.Name]; ok {
			return d
		}
		return "rs/" + ref.Name
	case "StatefulSet":
		return "sts/" + ref.Name
	case "DaemonSet":
		return "ds/" + ref.Name
	case "Job":
		return "job/" + ref.Name
	}
	return strings.ToLower(ref.Kind) + "/" + ref.Name
}
