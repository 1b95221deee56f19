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
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/proxy/api"
)

func TestWorkloadOf(t *testing.T) {
	owned := func(kind, name string, controller bool, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, Name: name, Controller: ptr.To(controller)}}}}
	}
	hash := map[string]string{"pod-template-hash": "5d8f7c9b4"}
	cases := []struct {
		name             string
		pod              *corev1.Pod
		wantKind, wantNm string
	}{
		{"a Deployment's ReplicaSet is the Deployment", owned("ReplicaSet", "web-5d8f7c9b4", true, hash), "deployment", "web"},
		{"a Deployment whose name has dashes", owned("ReplicaSet", "my-web-app-5d8f7c9b4", true, hash), "deployment", "my-web-app"},
		{"a ReplicaSet not named after the hash is itself", owned("ReplicaSet", "web-other", true, hash), "replicaset", "web-other"},
		{"a ReplicaSet without the hash label is itself", owned("ReplicaSet", "web-5d8f7c9b4", true, nil), "replicaset", "web-5d8f7c9b4"},
		{"a ReplicaSet named only the hash is itself", owned("ReplicaSet", "-5d8f7c9b4", true, hash), "replicaset", "-5d8f7c9b4"},
		{"StatefulSet", owned("StatefulSet", "db", true, nil), "statefulset", "db"},
		{"DaemonSet", owned("DaemonSet", "agent", true, nil), "daemonset", "agent"},
		{"Job", owned("Job", "migrate", true, nil), "job", "migrate"},
		{"a custom controller's kind", owned("Rollout", "web", true, nil), "rollout", "web"},
		{"an owner that is not the controller", owned("ReplicaSet", "web-5d8f7c9b4", false, hash), "", ""},
		{"a kind that is no label name", owned("Weird-Kind", "x", true, nil), "", ""},
		{"no owner", &corev1.Pod{}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, name := WorkloadOf(tc.pod)
			if kind != tc.wantKind || name != tc.wantNm {
				t.Fatalf("WorkloadOf = %q %q, want %q %q", kind, name, tc.wantKind, tc.wantNm)
			}
		})
	}
}

func TestEndpointMetricLabels(t *testing.T) {
	p := deploymentPod(pod("web-1", "", true, nil), "web", "5d8f7c9b4")
	service := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	cases := []struct {
		name string
		got  []*api.Label
		want []*api.Label
	}{
		{"a Service's endpoint that is a Deployment's pod; the default ServiceAccount named",
			endpointMetricLabels(nil, service, "shop", "web-1", &p), []*api.Label{
				{Name: "dst_deployment", Value: "web"}, {Name: "dst_namespace", Value: "shop"}, {Name: "dst_pod", Value: "web-1"},
				{Name: "dst_pod_template_hash", Value: "5d8f7c9b4"}, {Name: "dst_service", Value: "web"},
				{Name: "dst_serviceaccount", Value: "default"}}},
		{"a pod not yet in the cache: its name only",
			endpointMetricLabels(nil, service, "shop", "web-9", nil), []*api.Label{
				{Name: "dst_namespace", Value: "shop"}, {Name: "dst_pod", Value: "web-9"}, {Name: "dst_service", Value: "web"}}},
		{"an endpoint that names no pod", endpointMetricLabels(nil, service, "", "", nil), []*api.Label{
			{Name: "dst_namespace", Value: "shop"}, {Name: "dst_service", Value: "web"}}},
		{"a pod-IP destination: no Service", endpointMetricLabels(nil, nil, "shop", "web-1", &p), []*api.Label{
			{Name: "dst_deployment", Value: "web"}, {Name: "dst_namespace", Value: "shop"}, {Name: "dst_pod", Value: "web-1"},
			{Name: "dst_pod_template_hash", Value: "5d8f7c9b4"}, {Name: "dst_serviceaccount", Value: "default"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, tc.got, protocmp.Transform()); d != "" {
				t.Fatalf("labels (-want +got):\n%s", d)
			}
		})
	}
}

// TestEndpointMetricLabelsShared: the endpoints of one Service port share their
// labels but the pod's, with the same values as unshared ones; another pod's labels
// stay its own.
func TestEndpointMetricLabelsShared(t *testing.T) {
	p1 := deploymentPod(pod("web-1", "", true, nil), "web", "5d8f7c9b4")
	p2 := deploymentPod(pod("web-2", "", true, nil), "web", "5d8f7c9b4")
	service := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	shared := sharedLabels{}
	a, b := endpointMetricLabels(shared, service, "shop", "web-1", &p1), endpointMetricLabels(shared, service, "shop", "web-2", &p2)
	if d := cmp.Diff(endpointMetricLabels(nil, service, "shop", "web-1", &p1), a, protocmp.Transform()); d != "" {
		t.Fatalf("shared labels differ from their own (-own +shared):\n%s", d)
	}
	if len(a) != 6 || len(b) != 6 {
		t.Fatalf("labels %v and %v, want six each", a, b)
	}
	for i := range a {
		if pod := a[i].GetName() == LabelDstPod; pod != (a[i] != b[i]) {
			t.Errorf("label %s shared %v, want shared unless it is the pod's", a[i].GetName(), a[i] == b[i])
		}
	}
	if b[2].GetName() != LabelDstPod || b[2].GetValue() != "web-2" {
		t.Errorf("the second endpoint's pod label is %v", b[2])
	}
}

// TestCompiledEndpointsShareStrings: in a compiled destination, the endpoints of one
// Service port share one copy of their identity and of their common labels (their
// values checked by the fixture's tests).
func TestCompiledEndpointsShareStrings(t *testing.T) {
	cfg, err := Compile(fixture(), Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	var eps []*api.Endpoint
	for _, b := range cfg.GetBackends() {
		if b.GetKey() == "shop/web:80" {
			eps = b.GetEndpoints()
		}
	}
	if len(eps) != 3 || eps[0].GetPod() != "web-1" || eps[2].GetPod() != "web-3" {
		t.Fatalf("endpoints %v, want web-1, web-2 and web-3", eps)
	}
	a, b := eps[0], eps[2]
	if a.Identity == "" || a.Identity != b.Identity || unsafe.StringData(a.Identity) != unsafe.StringData(b.Identity) {
		t.Errorf("identities %q and %q are not one copy", a.Identity, b.Identity)
	}
	shared := 0
	for _, la := range a.MetricLabels {
		for _, lb := range b.MetricLabels {
			if la == lb {
				shared++
			}
		}
	}
	// dst_namespace, dst_service and dst_serviceaccount.
	if shared != 3 {
		t.Errorf("%d labels shared between %v and %v, want 3", shared, a.MetricLabels, b.MetricLabels)
	}
}
