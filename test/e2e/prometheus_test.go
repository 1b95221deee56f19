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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/config/grafana"
)

// The demo's values for the dashboards' template variables.
var dashboardVars = map[string]string{"namespace": demoNS, "deployment": "web"}

// TestPrometheusDashboards runs a real Prometheus (Debian's prometheus, on the host:
// hack/prometheus.sh) with config/prometheus/scrape-config.yaml against the cluster,
// and requires every panel query of every dashboard of config/grafana, with the
// demo's values for the template variables, to return a non-empty result while the
// demo's load runs. It also checks that the proxies' outbound series carry the
// endpoint labels (dst_deployment) and that every target is up.
func TestPrometheusDashboards(t *testing.T) {
	track(t)
	if _, err := exec.LookPath("/usr/bin/prometheus"); err != nil {
		t.Fatal("Debian's prometheus is not installed (apt-get install prometheus): /usr/bin/prometheus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "weft-e2e-prometheus-")
	if err != nil {
		t.Fatal(err)
	}
	// Prometheus listens on the host's bridge address, not loopback: the dashboard's
	// pod queries it at the end (checkDashboardOnPrometheus).
	addr := net.JoinHostPort(nodeAddress(ctx, t), "9195")
	promEnv := append(os.Environ(), "KUBECONFIG="+env.kubeconfig, "PROM_DIR="+filepath.Join(dir, "prom"),
		"PROM_ADDR="+addr, "PROM_SD_ADDR=127.0.0.1:9196", "PROM_INTERVAL=5s")
	script := filepath.Join(env.root, "hack/prometheus.sh")
	t.Cleanup(func() {
		down := exec.Command(script, "down")
		down.Env = promEnv
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("hack/prometheus.sh down: %v\n%s", err, out)
		}
		_ = os.RemoveAll(dir)
	})
	up := exec.CommandContext(ctx, script, "up")
	up.Env = promEnv
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("hack/prometheus.sh up: %v\n%s", err, out)
	}
	prom := &promClient{base: "http://" + addr}

	// Every target up: the proxies of the demo's pods (the suite's own namespace holds
	// pods other tests break on purpose), and the controller's HTTPS endpoint with the
	// metrics reader's token.
	if err := eventually(ctx, 60*time.Second, 2*time.Second, func() error {
		for _, sel := range []string{`job="weft-proxy", namespace="` + demoNS + `"`, `job="weft-controller"`} {
			n, err := prom.count(ctx, `up{`+sel+`} == 1`)
			if err != nil {
				return err
			}
			down, err := prom.count(ctx, `up{`+sel+`} == 0`)
			if err != nil {
				return err
			}
			if n == 0 || down > 0 {
				return fmt.Errorf("%s: %d targets up, %d down", sel, n, down)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("scrape targets: %v", err)
	}

	// The endpoint labels: web calls backend-v1 and backend-v2 (the split) and grpc.
	if err := eventually(ctx, 30*time.Second, 2*time.Second, func() error {
		for _, dst := range []string{"backend-v1", "grpc"} {
			q := `request_total{job="weft-proxy", namespace="` + demoNS + `", deployment="web", direction="outbound", dst_namespace="` + demoNS + `", dst_deployment="` + dst + `"}`
			if n, err := prom.count(ctx, q); err != nil || n == 0 {
				return fmt.Errorf("%s: %d series (%v)", q, n, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("outbound series without the endpoint's labels: %v", err)
	}

	dashboards, err := grafana.Load()
	if err != nil {
		t.Fatal(err)
	}
	var queries []grafana.Query
	for _, d := range dashboards {
		queries = append(queries, d.Queries()...)
	}
	// A 30s window holds six scrapes at 5s; the first few seconds after Prometheus
	// starts may not, so empty results are retried until the deadline.
	pending := map[int]string{}
	for i := range queries {
		pending[i] = ""
	}
	err = eventually(ctx, 60*time.Second, 5*time.Second, func() error {
		for i := range pending {
			q := queries[i]
			expr := grafana.Expand(q.Expr, dashboardVars, "30s")
			n, err := prom.count(ctx, expr)
			switch {
			case err != nil:
				pending[i] = err.Error()
			case n == 0:
				pending[i] = "empty result"
			default:
				delete(pending, i)
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d of %d panel queries without data", len(pending), len(queries))
		}
		return nil
	})
	if err != nil {
		for i, why := range pending {
			q := queries[i]
			t.Errorf("%s: panel %q (%s): %s\n    %s", q.Dashboard, q.Panel, q.RefID, why, grafana.Expand(q.Expr, dashboardVars, "30s"))
		}
		t.Fatal(err)
	}
	t.Logf("%d panel queries of %d dashboards returned data", len(queries), len(dashboards))

	t.Run("dashboard", func(t *testing.T) { checkDashboardOnPrometheus(t, prom, prom.base) })
}

// promClient queries Prometheus' HTTP API.
type promClient struct{ base string }

// count runs an instant query and returns the number of series (or 1 for a scalar).
func (p *promClient) count(ctx context.Context, expr string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("query %s: %w: %s", expr, err, strings.TrimSpace(string(body)))
	}
	if out.Status != "success" {
		return 0, errors.New("query " + expr + ": " + out.Error)
	}
	switch out.Data.ResultType {
	case "vector", "matrix":
		var rs []json.RawMessage
		if err := json.Unmarshal(out.Data.Result, &rs); err != nil {
			return 0, err
		}
		return len(rs), nil
	}
	return 1, nil
}
