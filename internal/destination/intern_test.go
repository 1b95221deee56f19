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

package destination

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// samePointer says whether two maps or slices share their storage.
func samePointer(a, b any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// TestSlimPodSharesWorkloadFields: two pods of one workload, decoded separately,
// share their labels, annotations, containers and controller reference once slimmed,
// and keep them equal to the originals; a pod of another workload shares none of
// them, and equal-looking encodings of different maps are not confused.
func TestSlimPodSharesWorkloadFields(t *testing.T) {
	pod := func(name, app string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name,
				Labels:      map[string]string{"app": app, "pod-template-hash": "abc"},
				Annotations: map[string]string{"config.weft.dev/inbound-port": "4243", "other": "x"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-abc",
					UID: "u-" + "name", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{ServiceAccountName: app, NodeName: "node-1",
				InitContainers: []corev1.Container{{Name: "weft-proxy", Image: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
				Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}}}}},
		}
	}
	slim := func(p *corev1.Pod) *corev1.Pod {
		o, err := slimPod(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		return o.(*corev1.Pod)
	}
	a, b, other := slim(pod("web-1", "web")), slim(pod("web-2", "web")), slim(pod("api-1", "api"))
	for _, f := range []struct {
		name       string
		a, b, want any
	}{
		{"labels", a.Labels, b.Labels, pod("", "web").Labels},
		{"annotations", a.Annotations, b.Annotations, map[string]string{"config.weft.dev/inbound-port": "4243"}},
		{"init containers", a.Spec.InitContainers, b.Spec.InitContainers, nil},
		{"containers", a.Spec.Containers, b.Spec.Containers, nil},
		{"owner references", a.OwnerReferences, b.OwnerReferences, []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-abc", Controller: ptr.To(true)}}},
	} {
		if !samePointer(f.a, f.b) {
			t.Errorf("the %s of two pods of one workload are not shared", f.name)
		}
		if f.want != nil && !equality.Semantic.DeepEqual(f.a, f.want) {
			t.Errorf("%s %v, want %v", f.name, f.a, f.want)
		}
	}
	if samePointer(a.Labels, other.Labels) || samePointer(a.OwnerReferences, other.OwnerReferences) || other.Labels["app"] != "api" {
		t.Errorf("a pod of another workload shares the first's labels or owner: %v %v", other.Labels, other.OwnerReferences)
	}
	if a.UID != "" {
		t.Errorf("the pod's UID %q is kept: nothing compiled reads it", a.UID)
	}
	if a.Name != "web-1" || b.Name != "web-2" || a.Spec.ServiceAccountName != "web" || a.Namespace != "shop" {
		t.Errorf("per-pod fields mixed up: %+v / %+v", a.ObjectMeta, b.ObjectMeta)
	}
	if !isMeshed(a) || !isMeshed(other) {
		t.Error("a pod with the proxy's container is no longer meshed once shared")
	}
	// Keys and values are length-prefixed: "ab"="c" and "a"="bc" are different maps.
	m1, m2 := internMap(map[string]string{"ab": "c"}), internMap(map[string]string{"a": "bc"})
	if samePointer(m1, m2) || !maps.Equal(m2, map[string]string{"a": "bc"}) {
		t.Errorf("different maps interned as one: %v %v", m1, m2)
	}
	// Containers and init containers with the same fields are different lists.
	cs := []corev1.Container{{Name: "x", Ports: []corev1.ContainerPort{{ContainerPort: 1}}}}
	if samePointer(internContainers(cs, true), internContainers(slices.Clone(cs), false)) {
		t.Error("init containers and containers interned as one")
	}
}

// TestInternTableIsBounded: however many distinct values pass through, a table
// holds at most two generations of internSize, and a value still in use by new
// objects stays shared across generations.
func TestInternTableIsBounded(t *testing.T) {
	var tab internTable[*int]
	hot := new(int)
	for i := range 5 * internSize {
		tab.get(fmt.Sprint("k", i), new(int))
		if got := tab.get("hot", hot); got != hot {
			t.Fatalf("after %d values the hot value is no longer shared", i)
		}
	}
	if n := len(tab.cur) + len(tab.prev); n > 2*internSize {
		t.Fatalf("the table holds %d entries, want at most %d", n, 2*internSize)
	}
}

// TestSlimEndpointSliceSharesConditions: endpoints share their zone and condition
// pointers, with the values unchanged.
func TestSlimEndpointSliceSharesConditions(t *testing.T) {
	ep := func(ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Zone: ptr.To("zone-a"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(!ready)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-1", UID: "u"}}
	}
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-x"},
		Endpoints: []discoveryv1.Endpoint{ep(true), ep(true), ep(false)}}
	o, err := slimEndpointSlice(es)
	if err != nil {
		t.Fatal(err)
	}
	e := o.(*discoveryv1.EndpointSlice).Endpoints
	if e[0].Zone != e[1].Zone || *e[2].Zone != "zone-a" || e[0].Conditions.Ready != e[1].Conditions.Ready {
		t.Error("zones or conditions not shared")
	}
	if !*e[0].Conditions.Ready || !*e[0].Conditions.Serving || *e[0].Conditions.Terminating ||
		*e[2].Conditions.Ready || *e[2].Conditions.Serving || !*e[2].Conditions.Terminating {
		t.Errorf("conditions changed: %+v %+v", e[0].Conditions, e[2].Conditions)
	}
}
