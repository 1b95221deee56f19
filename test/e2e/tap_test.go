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
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestTap: `weft tap deploy/web -n weft-demo` shows the demo load's live requests
// within 2 s of starting, through the kube-apiserver's aggregation layer, the tap API
// and web's proxy; a user without RBAC permission (impersonated with --as) is refused
// with the permission named; a workload that does not exist says so; `weft top` shows
// the load's path.
func TestTap(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The APIService must be Available (its CA injected, a controller serving it).
	if err := eventually(ctx, 60*time.Second, time.Second, func() error {
		out, err := kubectl(ctx, "get", "apiservice", "v1alpha1.tap.weft.dev", "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].status}")
		if err != nil || strings.TrimSpace(out) != "True" {
			return &tapError{"APIService v1alpha1.tap.weft.dev is not Available: " + out}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("live requests of deploy/web within 2s", func(t *testing.T) {
		var first time.Duration
		err := eventually(ctx, 30*time.Second, time.Second, func() error {
			tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
			defer tcancel()
			cmd := exec.CommandContext(tctx, env.weft, "tap", "--kubeconfig", env.kubeconfig, "deploy/web", "-n", demoNS, "--path", "/books")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			start := time.Now()
			if err := cmd.Start(); err != nil {
				return err
			}
			defer func() { tcancel(); _ = cmd.Wait() }()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "req ") && strings.Contains(line, ":path=/books") && strings.Contains(line, "proxy=in") {
					first = time.Since(start)
					t.Logf("first line after %v: %s", first.Round(time.Millisecond), line)
					return nil
				}
			}
			return &tapError{"no req line for /books before the tap ended; stderr: " + stderr.String()}
		})
		if err != nil {
			t.Fatal(err)
		}
		if first > 2*time.Second {
			t.Errorf("the first request showed after %v, want within 2s", first)
		}
	})

	t.Run("a user without RBAC is refused with the permission named", func(t *testing.T) {
		_, stderr, err := weft(ctx, "tap", "deploy/web", "-n", demoNS, "--as", "e2e-nobody@example.com")
		if err == nil || !strings.Contains(stderr, "forbidden") || !strings.Contains(stderr, "deployments/tap") || !strings.Contains(stderr, "e2e-nobody@example.com") {
			t.Fatalf("weft tap --as e2e-nobody: err %v, stderr %q; want a refusal naming the user and deployments/tap", err, stderr)
		}
		t.Logf("refused: %s", strings.TrimSpace(stderr))
	})

	t.Run("a workload that does not exist says so", func(t *testing.T) {
		_, stderr, err := weft(ctx, "tap", "deploy/e2e-nope", "-n", demoNS)
		if err == nil || !strings.Contains(stderr, `deployment "e2e-nope" does not exist in namespace "weft-demo"`) {
			t.Fatalf("weft tap deploy/e2e-nope: err %v, stderr %q; want it to say the deployment does not exist", err, stderr)
		}
	})

	t.Run("weft top shows the load's path", func(t *testing.T) {
		out, stderr, err := weft(ctx, "top", "deploy/web", "-n", demoNS, "--interval", "5s", "--count", "1")
		if err != nil || !strings.HasPrefix(out, "METHOD") || !strings.Contains(out, "/books/1") {
			t.Fatalf("weft top: err %v, stdout %q, stderr %q; want a table with /books/1", err, out, stderr)
		}
		t.Logf("weft top:\n%s", out)
	})
}

type tapError struct{ msg string }

func (e *tapError) Error() string { return e.msg }
