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
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/dashboard"
	"github.com/weftmesh/weft/internal/dashboard/browsercheck"
)

// nodeAddress is the node's InternalIP: on the local cluster, the host's address on
// the cluster's bridge (hack/cluster), the one host address pods reach.
func nodeAddress(ctx context.Context, t *testing.T) string {
	t.Helper()
	nodes, err := env.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address
			}
		}
	}
	t.Fatal("no node with an InternalIP: cannot tell the pods where the host's Prometheus is")
	return ""
}

// promWindow is the dashboard's rate window against the host's Prometheus (scrapes
// every 5 s): six scrapes.
const promWindow = 30 * time.Second

// checkDashboardOnPrometheus points the running weft-dashboard at the host's Prometheus
// (promURL, on the bridge address), and requires the workloads page to come from it
// with deploy/web's RPS within 20% of what the dashboard's own scrapes of the proxies
// give, and the browser check to pass with the page naming Prometheus as its source.
// The Deployment's args are restored afterwards.
func checkDashboardOnPrometheus(t *testing.T, prom *promClient, promURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// rate() divides by the whole window: wait until Prometheus has scraped the demo
	// for all of it, or the figures read low.
	if err := eventually(ctx, 60*time.Second, 2*time.Second, func() error {
		q := fmt.Sprintf(`min(count_over_time(up{job="weft-proxy", namespace=%q}[%s])) >= %d`, demoNS, promWindow+5*time.Second, int(promWindow/(5*time.Second))+1)
		if n, err := prom.count(ctx, q); err != nil || n == 0 {
			return fmt.Errorf("%s: %d (%v)", q, n, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("Prometheus has not scraped the demo for a whole rate window: %v", err)
	}

	orig, err := kubectl(ctx, "-n", controlPlane, "get", "deploy/weft-dashboard", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
	if err != nil {
		t.Fatalf("reading weft-dashboard's args: %v\n%s", err, orig)
	}
	var origArgs []string
	if err := json.Unmarshal([]byte(orig), &origArgs); err != nil {
		t.Fatalf("weft-dashboard's args %q: %v", orig, err)
	}
	patch := func(ctx context.Context, args []string) error {
		b, _ := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": args}})
		if out, err := kubectl(ctx, "-n", controlPlane, "patch", "deploy/weft-dashboard", "--type=json", "-p", string(b)); err != nil {
			return fmt.Errorf("patching weft-dashboard: %w\n%s", err, out)
		}
		if out, err := kubectl(ctx, "-n", controlPlane, "rollout", "status", "deploy/weft-dashboard", "--timeout=90s"); err != nil {
			return fmt.Errorf("weft-dashboard's rollout: %w\n%s", err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer rcancel()
		if err := patch(rctx, origArgs); err != nil {
			t.Errorf("restoring weft-dashboard: %v", err)
		}
	})
	withProm := append(append([]string{}, origArgs...), "--prometheus-url="+promURL, "--prometheus-window="+promWindow.String())
	if err := patch(ctx, withProm); err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var base string
	// The old pod may still be terminating; Forward picks the running one.
	if err := eventually(ctx, 30*time.Second, time.Second, func() error {
		u, _, err := dashboard.Forward(fctx, env.config, env.kube, controlPlane, 0)
		base = strings.TrimSuffix(u, "/")
		return err
	}); err != nil {
		t.Fatalf("port-forward to weft-dashboard: %v", err)
	}

	type workloads struct {
		Source string          `json:"source"`
		Error  string          `json:"error"`
		Rows   []dashboard.Row `json:"rows"`
	}
	webRPS := func(query string) (float64, workloads, error) {
		resp, err := http.Get(base + "/api/workloads?ns=" + demoNS + query)
		if err != nil {
			return 0, workloads{}, err
		}
		defer func() { _ = resp.Body.Close() }()
		var pg workloads
		if err := json.NewDecoder(resp.Body).Decode(&pg); err != nil {
			return 0, pg, err
		}
		for _, r := range pg.Rows {
			if r.Name == "deploy/web" {
				return r.Inbound.RPS, pg, nil
			}
		}
		return 0, pg, nil
	}
	var fromProm, fromProxies float64
	// The dashboard's own scrapes need two rounds (5 s apart) before the proxies'
	// figure exists; Prometheus' is there at once.
	if err := eventually(ctx, 60*time.Second, 2*time.Second, func() error {
		var pg workloads
		var err error
		if fromProm, pg, err = webRPS(""); err != nil {
			return err
		}
		if pg.Source != dashboard.SourcePrometheus || pg.Error != "" || fromProm <= 0 {
			return fmt.Errorf("workloads page: source %q, error %q, deploy/web %.2f RPS; want prometheus with traffic", pg.Source, pg.Error, fromProm)
		}
		if fromProxies, pg, err = webRPS("&source=proxies"); err != nil {
			return err
		}
		if pg.Source != dashboard.SourceProxies || fromProxies <= 0 {
			return fmt.Errorf("workloads page with ?source=proxies: source %q, deploy/web %.2f RPS", pg.Source, fromProxies)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if math.Abs(fromProm-fromProxies) > 0.2*fromProxies {
		t.Errorf("deploy/web: %.2f RPS from Prometheus, %.2f from the proxies; want within 20%%", fromProm, fromProxies)
	}
	t.Logf("deploy/web: %.2f RPS from Prometheus (rate over %s), %.2f from the proxies' own scrapes", fromProm, promWindow, fromProxies)
	browsercheck.RunFromSource(ctx, t, base, demoNS, "e2e-prometheus", dashboard.SourcePrometheus)
}
