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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/dashboard"
	"github.com/weftmesh/weft/internal/dashboard/browsercheck"
	"github.com/weftmesh/weft/internal/tapclient"
)

// TestDashboard opens the web dashboard as a user does, with `weft dashboard
// --show-url` (a port-forward to weft-dashboard's loopback), and checks every page in
// headless Chromium against the demo's live traffic: web's RPS, the call graph's
// edges, live tap rows of deploy/web, a clean console. Screenshots:
// $E2E_RESULTS/dashboard/e2e, else test/e2e/results/dashboard/e2e. A user without RBAC
// on pods/portforward is refused.
func TestDashboard(t *testing.T) {
	track(t)
	browsercheck.Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := kubectl(ctx, "-n", controlPlane, "rollout", "status", "deploy/weft-dashboard", "--timeout=60s"); err != nil {
		t.Fatalf("weft-dashboard is not available: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, env.weft, "dashboard", "--kubeconfig", env.kubeconfig, "--show-url", "--port", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("weft dashboard printed no URL: %v; stderr: %s", err, stderr.String())
	}
	// "Weft dashboard at http://127.0.0.1:NNNN/ (Ctrl-C to stop)"
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[3], "http://127.0.0.1:") {
		t.Fatalf("weft dashboard printed %q, want its URL", line)
	}
	base := strings.TrimSuffix(fields[3], "/")

	// The collector needs two rounds (5 s apart) before rates exist.
	if err := eventually(ctx, 40*time.Second, time.Second, func() error {
		resp, err := http.Get(base + "/api/workloads?ns=" + demoNS)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		var pg struct {
			Rows []dashboard.Row `json:"rows"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&pg); err != nil {
			return err
		}
		for _, r := range pg.Rows {
			if r.Name == "deploy/web" && r.Inbound.RPS > 0 {
				return nil
			}
		}
		return fmt.Errorf("no inbound RPS for deploy/web yet: %+v", pg.Rows)
	}); err != nil {
		t.Fatal(err)
	}
	tapThroughDashboard(ctx, t, base)
	browsercheck.Run(ctx, t, base, demoNS, "e2e")

	// Someone the API server does not allow to port-forward in weft-system gets nothing.
	nobody := rest.CopyConfig(env.config)
	nobody.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":default"}
	kubeNobody, err := kubernetes.NewForConfig(nobody)
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := dashboard.Forward(ctx, nobody, kubeNobody, controlPlane, 0); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a user without RBAC reached the dashboard at %q (err %v), want forbidden", u, err)
	}
}

// tapThroughDashboard reads the live tap view's stream of deploy/web (through the
// port-forward, the dashboard's ServiceAccount and the tap API) and requires a request
// of the demo's load within 5 s; a workload that does not exist is refused with the
// tap API's message.
func tapThroughDashboard(ctx context.Context, t *testing.T, base string) {
	t.Helper()
	get := func(ctx context.Context, query string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/tap/stream?"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	resp := get(tctx, "ns="+demoNS+"&target=deploy/web")
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		t.Fatalf("the dashboard's tap of deploy/web: %d %s", resp.StatusCode, body.Error)
	}
	sc := bufio.NewScanner(resp.Body)
	var row tapclient.Summary
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || !strings.Contains(data, `"kind":"req"`) {
			continue
		}
		if err := json.Unmarshal([]byte(data), &row); err != nil {
			t.Fatal(err)
		}
		break
	}
	if row.Authority == "" {
		t.Fatalf("no tap row of deploy/web within 5s (%v)", sc.Err())
	}
	t.Logf("first tap row through the dashboard after %v: %s %s%s from %s", time.Since(start).Round(time.Millisecond), row.Method, row.Authority, row.Path, row.Source.Identity)

	nope := get(ctx, "ns="+demoNS+"&target=deploy/nope")
	defer func() { _ = nope.Body.Close() }()
	var body struct{ Error string }
	_ = json.NewDecoder(nope.Body).Decode(&body)
	if nope.StatusCode != http.StatusNotFound || !strings.Contains(body.Error, `deployment "nope" does not exist`) {
		t.Errorf("a tap of deploy/nope: %d %q, want 404 saying it does not exist", nope.StatusCode, body.Error)
	}
}
