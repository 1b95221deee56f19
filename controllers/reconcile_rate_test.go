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

package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
)

// writeCounter counts the write requests a client sends, and those to ConfigMaps.
type writeCounter struct{ all, configMaps atomic.Int64 }

type countingTransport struct {
	next http.RoundTripper
	c    *writeCounter
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return countingTransport{next: rt, c: w}
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		t.c.all.Add(1)
		if strings.Contains(req.URL.Path, "/configmaps") {
			t.c.configMaps.Add(1)
		}
	}
	return t.next.RoundTrip(req)
}

// meshReconciles is controller-runtime's controller_runtime_reconcile_total of the Mesh
// controller, over every result.
func meshReconciles(t *testing.T) float64 {
	t.Helper()
	mfs, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "mesh" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// TestMeshReconcileRate measures how often pod churn makes the Mesh reconciler run and
// write: 100 readiness changes and 100 restarts of pods without a proxy, then 100
// readiness changes of meshed pods, with the bundle published in 5 namespaces. Pods
// without a proxy move none of the Mesh's counts, so they must cause no reconcile; a
// meshed pod's readiness changes the counts but neither the chain nor the bundle, so it
// must cause no write but the status patch. The figures are logged (go test -v) as reconciles per minute.
func TestMeshReconcileRate(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	if err := c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "Mesh",
		"metadata": map[string]any{"name": meshv1alpha1.MeshName}, "spec": map[string]any{"trustDomain": meshTD},
	}}); err != nil {
		t.Fatal(err)
	}
	waitMeshReady(t, c, 30*time.Second)

	const meshedNamespaces, pods = 5, 100
	for i := range meshedNamespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i),
			Labels: map[string]string{controllers.InjectAnnotation: "enabled"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}); err != nil {
		t.Fatal(err)
	}
	plainPod := func(i int) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: fmt.Sprintf("plain-%d", i)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	}
	var meshed []*corev1.Pod
	for i := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("app-%d", i%meshedNamespaces), Name: fmt.Sprintf("web-%d", i)},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "weft-proxy", Image: "weft-proxy:dev", RestartPolicy: new(corev1.ContainerRestartPolicyAlways)}},
				Containers:     []corev1.Container{{Name: "app", Image: "app"}},
			},
		}
		for _, o := range []client.Object{p, plainPod(i)} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		meshed = append(meshed, p)
	}
	wantCounts(t, c, meshv1alpha1.ProxyCounts{Injected: pods, Ready: 0})
	for i := range meshedNamespaces {
		eventually(t, 10*time.Second, func() error {
			_, err := m.bundle(ctx, fmt.Sprintf("app-%d", i))
			return err
		})
	}
	time.Sleep(2 * time.Second) // let the reconciles of the setup drain

	type figures struct{ reconciles, writes, configMapWrites float64 }
	measure := func(name string, churn func()) figures {
		r0, w0, cm0 := meshReconciles(t), m.writes.all.Load(), m.writes.configMaps.Load()
		start := time.Now()
		churn()
		time.Sleep(3 * time.Second) // the reconciles the churn queued
		elapsed := time.Since(start)
		f := figures{meshReconciles(t) - r0, float64(m.writes.all.Load() - w0), float64(m.writes.configMaps.Load() - cm0)}
		t.Logf("%s: %.0f Mesh reconciles (%.0f/min), %.0f API writes, %.0f of them to ConfigMaps, in %v",
			name, f.reconciles, f.reconciles/elapsed.Minutes(), f.writes, f.configMapWrites, elapsed.Round(time.Millisecond))
		return f
	}

	plain := measure(fmt.Sprintf("%d readiness changes and %d restarts of pods without a proxy", pods, pods), func() {
		for i := range pods {
			p := plainPod(i)
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "app"}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			if err := c.Status().Patch(ctx, p, client.Merge); err != nil {
				t.Fatal(err)
			}
		}
		for i := range pods {
			if err := c.Delete(ctx, plainPod(i), client.GracePeriodSeconds(0)); err != nil {
				t.Fatal(err)
			}
			if err := c.Create(ctx, plainPod(i)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if plain.reconciles != 0 {
		t.Errorf("pods without a proxy caused %.0f Mesh reconciles, want 0", plain.reconciles)
	}

	ready := measure(fmt.Sprintf("%d readiness changes of meshed pods", pods), func() {
		for _, p := range meshed {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "weft-proxy", Ready: true, Image: "weft-proxy:dev"}}
			if err := c.Status().Update(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	})
	wantCounts(t, c, meshv1alpha1.ProxyCounts{Injected: pods, Ready: pods})
	if ready.reconciles == 0 {
		t.Errorf("readiness changes of meshed pods caused no reconcile: the proxy counts would not follow")
	}
	// At most the status patch: the chain and the bundles did not change.
	if ready.writes > ready.reconciles {
		t.Errorf("readiness changes of meshed pods caused %.0f API writes in %.0f reconciles, want at most one (the status) each", ready.writes, ready.reconciles)
	}
	if ready.configMapWrites != 0 {
		t.Errorf("readiness changes of meshed pods caused %.0f ConfigMap writes, want 0: the bundle did not change", ready.configMapWrites)
	}
}
