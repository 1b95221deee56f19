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

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// demoLoadRate is config/demo/load.yaml's --rps: the load generator calls web at
// this rate, and web calls backend and grpc once per request.
const demoLoadRate = 20

// TestCLIEdges: weft edges on the demo shows its call graph, load -> web -> backend
// and grpc, each edge with the identity the server verified for the client and the
// client verified for the server.
func TestCLIEdges(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type edge struct {
		Src, Dst, ClientID, ServerID string
		Secured                      bool
		Requests                     float64
	}
	want := []struct{ src, dst, clientSA, serverSA string }{
		{"deploy/load", "deploy/web", "load", "web"},
		{"deploy/web", "deploy/backend-v1", "web", "backend"},
		{"deploy/web", "deploy/grpc", "web", "grpc"},
	}
	var last string
	err := eventually(ctx, 60*time.Second, 3*time.Second, func() error {
		out, stderr, err := weft(ctx, "edges", "deploy", "-n", demoNS, "-o", "json")
		if err != nil {
			return fmt.Errorf("weft edges: %v\n%s", err, stderr)
		}
		last = out
		var got struct{ Edges []edge }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			return fmt.Errorf("weft edges -o json: %v\n%s", err, out)
		}
		for _, w := range want {
			i := slices.IndexFunc(got.Edges, func(e edge) bool { return e.Src == w.src && e.Dst == w.dst })
			if i < 0 {
				return fmt.Errorf("no edge %s -> %s in %s", w.src, w.dst, out)
			}
			e := got.Edges[i]
			if !e.Secured || !strings.HasPrefix(e.ClientID, "spiffe://") || !strings.HasSuffix(e.ClientID, "/ns/"+demoNS+"/sa/"+w.clientSA) ||
				!strings.HasSuffix(e.ServerID, "/ns/"+demoNS+"/sa/"+w.serverSA) || e.Requests <= 0 {
				return fmt.Errorf("edge %s -> %s: %+v, want secured with client sa %s and server sa %s", w.src, w.dst, e, w.clientSA, w.serverSA)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	table, stderr, err := weft(ctx, "edges", "deploy", "-n", demoNS)
	if err != nil {
		t.Fatalf("weft edges: %v\n%s", err, stderr)
	}
	t.Logf("weft edges deploy -n %s:\n%s", demoNS, table)
	if !strings.Contains(table, "deploy/load") || !strings.Contains(table, "SERVER_ID") {
		t.Errorf("the table lacks the edges that -o json showed:\n%s\njson: %s", table, last)
	}
}

// TestCLIRoutes: weft routes on the demo's backend Service (an HTTPRoute with two
// rules) sees the rate web calls it at, which is the load generator's: within 5% of
// the generator's own count over the same windows, which runs at the configured rate.
func TestCLIRoutes(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	load := demoLoadPod(ctx, t)
	type route struct {
		Service, Route string
		RPS            float64
		SuccessRate    *float64
		P50Ms          *float64
	}
	// Three 10s windows, compared by their median, as TestMetrics does: a stall of a
	// process at a window's edge on this 2-core machine moves one window by 10%.
	var rates []float64
	before, err := demoLoadStats(ctx, load)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		out, stderr, err := weft(ctx, "routes", "svc/backend", "-n", demoNS, "--interval", "10s", "-o", "json")
		if err != nil {
			t.Fatalf("weft routes: %v\n%s", err, stderr)
		}
		var got struct{ Routes []route }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("weft routes -o json: %v\n%s", err, out)
		}
		sum := 0.0
		for _, r := range got.Routes {
			if r.Service != demoNS+"/backend" {
				t.Errorf("a route of %s in the routes of svc/backend: %+v", r.Service, r)
			}
			sum += r.RPS
		}
		t.Logf("weft routes svc/backend: %s", out)
		rates = append(rates, sum)
	}
	after, err := demoLoadStats(ctx, load)
	if err != nil {
		t.Fatal(err)
	}
	genRate := float64(after.Requests-before.Requests) / (after.ElapsedSeconds - before.ElapsedSeconds)
	slices.SortFunc(rates, cmp.Compare[float64])
	median := rates[1]
	t.Logf("weft routes svc/backend: %.2f RPS (windows %v); the load generator: %.2f requests/s (configured %d)", median, rates, genRate, demoLoadRate)
	if math.Abs(median-genRate) > 0.05*genRate {
		t.Errorf("weft routes says %.2f RPS, the load generator %.2f: more than 5%% apart", median, genRate)
	}
	if math.Abs(genRate-demoLoadRate) > 0.05*demoLoadRate {
		t.Errorf("the load generator ran at %.2f requests/s, not its configured %d (a loaded machine?)", genRate, demoLoadRate)
	}

	// The table names every route with its golden metrics.
	table, stderr, err := weft(ctx, "routes", "svc/backend", "-n", demoNS, "--interval", "5s")
	if err != nil {
		t.Fatalf("weft routes: %v\n%s", err, stderr)
	}
	t.Logf("weft routes svc/backend -n %s:\n%s", demoNS, table)
	for _, w := range []string{"SERVICE", "ROUTE", "RPS", "SUCCESS", "P99", demoNS + "/backend"} {
		if !strings.Contains(table, w) {
			t.Errorf("the table lacks %q", w)
		}
	}
	// A Service that does not exist is an error that says so.
	if _, stderr, err := weft(ctx, "routes", "svc/nonexistent", "-n", demoNS, "--interval", "1s"); err == nil || !strings.Contains(stderr, "not found") {
		t.Errorf("routes of a missing Service: %v, stderr %q", err, stderr)
	}
}

// TestCLIVersionAndDiagnostics: weft version names the control plane's version, and
// weft diagnostics proxy-metrics prints the raw metrics of each pod's proxy.
func TestCLIVersionAndDiagnostics(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, stderr, err := weft(ctx, "version")
	if err != nil {
		t.Fatalf("weft version: %v\n%s", err, stderr)
	}
	t.Logf("weft version:\n%s", out)
	if !strings.Contains(out, "Client version: ") || !strings.Contains(out, "Control plane version: ") || !strings.Contains(out, controlPlane+"/weft-controller") {
		t.Errorf("weft version: %q", out)
	}
	out, stderr, err = weft(ctx, "diagnostics", "proxy-metrics", "deploy/web", "-n", demoNS)
	if err != nil {
		t.Fatalf("weft diagnostics proxy-metrics: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "# POD "+demoNS+"/web-") || !strings.Contains(out, "# TYPE request_total counter") ||
		!strings.Contains(out, `request_total{direction="inbound"`) {
		t.Errorf("weft diagnostics proxy-metrics deploy/web lacks the pod header or its request_total:\n%.2000s", out)
	}
}

func demoLoadPod(ctx context.Context, t *testing.T) string {
	t.Helper()
	pods, err := env.kube.CoreV1().Pods(demoNS).List(ctx, metav1.ListOptions{LabelSelector: "app=load"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p.Name
		}
	}
	t.Fatalf("no running load pod in %s", demoNS)
	return ""
}

// demoLoadStats reads the demo load generator's own count (its --stats-addr).
func demoLoadStats(ctx context.Context, pod string) (LoadStats, error) {
	var s LoadStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := env.kube.CoreV1().Pods(demoNS).ProxyGet("http", pod, "9102", "stats", nil).DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("reading %s's stats: %w", pod, err)
	}
	return s, json.Unmarshal(b, &s)
}
