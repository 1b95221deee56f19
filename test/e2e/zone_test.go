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

package e2e

// Zone-aware balancing (issue 20, item 4) on the local cluster. The cluster has ONE
// node, so every endpoint is in the client's zone: this test can show that the
// preference is switched on and off by applying and removing
// trafficDistribution: PreferClose, that the zone travels node label -> EndpointSlice
// -> destination service -> proxy (weft_balancer_zone_requests_total{locality="local"}
// counts the steady load), and that the switch costs no request. It cannot show a
// spill-over to another zone; proxy/server/routing_zone_test.go does, with real sockets.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestZoneAware: label the node zone-a, set PreferClose on the steady Service, and the
// steady load's proxy counts its requests as local; remove it, and the series goes.
func TestZoneAware(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const zone = "zone-a"
	const series = "weft_balancer_zone_requests_total"
	backendLabel := `backend="` + ns + `/steady:8080"`
	pod := steadyLoadPod(ctx, t)
	start := time.Now()

	nodes, err := env.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		old, had := n.Labels[corev1.LabelTopologyZone]
		setLabel(ctx, t, n.Name, zone)
		t.Cleanup(func() {
			if had {
				setLabel(context.Background(), t, n.Name, old)
			} else {
				setLabel(context.Background(), t, n.Name, "")
			}
		})
	}
	setTrafficDistribution := func(ctx context.Context, v any) {
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"trafficDistribution": v}})
		if _, err := env.kube.CoreV1().Services(ns).Patch(ctx, "steady", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("setting steady's trafficDistribution to %v: %v", v, err)
		}
	}
	setTrafficDistribution(ctx, corev1.ServiceTrafficDistributionPreferClose)
	t.Cleanup(func() { setTrafficDistribution(context.Background(), nil) })

	// The EndpointSlice controller copies the node's zone onto the endpoints (and,
	// for PreferClose, hints for it) when it reconciles the Service.
	if err := eventually(ctx, time.Minute, time.Second, func() error {
		slices, err := env.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=steady"})
		if err != nil {
			return err
		}
		n := 0
		for _, es := range slices.Items {
			for _, e := range es.Endpoints {
				if e.Zone == nil || *e.Zone != zone {
					return fmt.Errorf("endpoint %v has zone %v", e.Addresses, e.Zone)
				}
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("no endpoints")
		}
		return nil
	}); err != nil {
		t.Fatalf("the steady Service's endpoints did not get zone %s: %v", zone, err)
	}

	// The destination service sends the zone with the next configuration; the proxy
	// then counts every request to steady as local.
	counter := func(locality string) float64 {
		return proxyCounter(ctx, t, ns, pod, series, backendLabel+`,locality="`+locality+`"`)
	}
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if v := counter("local"); v == 0 {
			return fmt.Errorf("%s{locality=local} = 0", series)
		}
		return nil
	}); err != nil {
		t.Fatalf("the steady load's proxy did not balance by zone: %v", err)
	}
	l0, r0 := counter("local"), counter("remote")
	time.Sleep(10 * time.Second)
	l1, r1 := counter("local"), counter("remote")
	t.Logf("10s of steady load with PreferClose: local %v, remote %v", l1-l0, r1-r0)
	// 200 requests/s over at most a few hundred connections' worth of picks: at
	// least a request a second is local, none is remote (there is no other zone).
	if l1-l0 < 10 || r1 != r0 {
		t.Errorf("local +%v, remote +%v: want local traffic only", l1-l0, r1-r0)
	}

	// Off: the preference goes and with it the series.
	setTrafficDistribution(ctx, nil)
	if err := eventually(ctx, 90*time.Second, time.Second, func() error {
		if v := proxyCounter(ctx, t, ns, pod, series, backendLabel); v != 0 {
			return fmt.Errorf("%s still reported (%v)", series, v)
		}
		return nil
	}); err != nil {
		t.Errorf("the preference was not switched off: %v", err)
	}
	time.Sleep(5 * time.Second)
	s, err := podStats(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if f := s.failuresSentFrom(start.Unix()); f != 0 {
		t.Errorf("%d requests failed while the preference was switched on and off (last: %s)", f, s.LastError)
	}
}

// setLabel sets a node's topology zone label ("" removes it).
func setLabel(ctx context.Context, t *testing.T, node, zone string) {
	t.Helper()
	var v any = zone
	if zone == "" {
		v = nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{corev1.LabelTopologyZone: v}}})
	if _, err := env.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("labelling node %s with zone %q: %v", node, zone, err)
	}
}
