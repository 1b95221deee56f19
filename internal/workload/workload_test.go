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

package workload

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestName(t *testing.T) {
	owned := func(kind, name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p-0",
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, Name: name, Controller: ptr.To(true)}}}}
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d8f",
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "web", Controller: ptr.To(true)}}}}
	rsOwner := map[string]string{"shop/web-5d8f": DeploymentOf(rs)}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"a Deployment's pod", owned("ReplicaSet", "web-5d8f"), "deploy/web"},
		{"a bare ReplicaSet's pod", owned("ReplicaSet", "solo"), "rs/solo"},
		{"a StatefulSet's pod", owned("StatefulSet", "db"), "sts/db"},
		{"a DaemonSet's pod", owned("DaemonSet", "agent"), "ds/agent"},
		{"a Job's pod", owned("Job", "migrate"), "job/migrate"},
		{"a custom controller's pod", owned("Rollout", "canary"), "rollout/canary"},
		{"a bare pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}}, "pod/lonely"},
	} {
		if got := Name(tc.pod, rsOwner); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := DeploymentOf(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "solo"}}); got != "rs/solo" {
		t.Errorf("a ReplicaSet without a Deployment: %q, want rs/solo", got)
	}
}
