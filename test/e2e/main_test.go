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

// Package e2e is Weft's end-to-end suite: it runs against a real cluster with Weft,
// a Mesh and the demo application installed (hack/e2e.sh does all of that, as make demo
// does), deploys its own workloads into the namespace weft-e2e, and checks injection,
// identity, mTLS on the wire, routing, resilience under load and weft stat's numbers.
//
// It runs only when WEFT_E2E_KUBECONFIG names the cluster's kubeconfig, so `make test`
// (go test ./...) skips it. The tests run in file order and share the cluster.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/testenv"
)

const (
	ns           = "weft-e2e"  // the suite's namespace (testdata/e2e.yaml)
	demoNS       = "weft-demo" // the demo application's (config/demo)
	controlPlane = "weft-system"
)

// env is what every test uses; set by TestMain.
var env struct {
	kubeconfig string
	config     *rest.Config
	kube       kubernetes.Interface
	client     client.Client
	weft       string // the weft CLI, built from this tree
	root       string
}

// timings records how long each test took, printed at the end.
var timings struct {
	sync.Mutex
	d map[string]time.Duration
}

func TestMain(m *testing.M) {
	env.kubeconfig = os.Getenv("WEFT_E2E_KUBECONFIG")
	if env.kubeconfig == "" {
		fmt.Println("e2e: WEFT_E2E_KUBECONFIG is not set; skipping the end-to-end suite (make e2e runs it)")
		os.Exit(0)
	}
	start := time.Now()
	if _, err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		os.Exit(1)
	}
	fmt.Printf("e2e: setup took %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if os.Getenv("WEFT_E2E_KEEP") == "" {
		t0 := time.Now()
		out, err := kubectl(context.Background(), "delete", "namespace", ns, "--wait=true", "--timeout=120s")
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: deleting namespace %s: %v\n%s", ns, err, out)
		}
		fmt.Printf("e2e: cleanup took %s\n", time.Since(t0).Round(time.Millisecond))
	}
	names := make([]string, 0, len(timings.d))
	for n := range timings.d {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Println("e2e: time per test:")
	for _, n := range names {
		fmt.Printf("  %-40s %s\n", n, timings.d[n].Round(100*time.Millisecond))
	}
	fmt.Printf("e2e: total %s\n", time.Since(start).Round(time.Second))
	os.Exit(code)
}

// setup builds the CLI, connects, and deploys the suite's workloads.
func setup() (int, error) {
	var err error
	if env.root, err = testenv.RepoRoot(); err != nil {
		return 1, err
	}
	if env.config, err = clientcmd.BuildConfigFromFlags("", env.kubeconfig); err != nil {
		return 1, fmt.Errorf("loading %s: %w", env.kubeconfig, err)
	}
	env.config.QPS, env.config.Burst = 50, 100
	if env.kube, err = kubernetes.NewForConfig(env.config); err != nil {
		return 1, err
	}
	if env.client, err = client.New(env.config, client.Options{Scheme: scheme.Scheme}); err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "weft-e2e-")
	if err != nil {
		return 1, err
	}
	env.weft = filepath.Join(dir, "weft")
	build := exec.Command("go", "build", "-o", env.weft, "./cmd/weft")
	build.Dir = env.root
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building weft: %w\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// A namespace left by an earlier run (WEFT_E2E_KEEP, or a run cut short) may hold
	// pods created before injection was possible: start from scratch.
	if out, err := kubectl(ctx, "delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=120s"); err != nil {
		return 1, fmt.Errorf("deleting the namespace %s of an earlier run: %w\n%s", ns, err, out)
	}
	if out, err := kubectl(ctx, "apply", "-f", filepath.Join(env.root, "test/e2e/testdata/e2e.yaml")); err != nil {
		return 1, fmt.Errorf("applying testdata/e2e.yaml: %w\n%s", err, out)
	}
	if out, err := kubectl(ctx, "-n", ns, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=180s"); err != nil {
		pods, _ := kubectl(ctx, "-n", ns, "get", "pods", "-o", "wide")
		return 1, fmt.Errorf("the suite's deployments are not available: %w\n%s\n%s", err, out, pods)
	}
	if out, err := kubectl(ctx, "-n", ns, "rollout", "status", "statefulset/sts-echo", "--timeout=180s"); err != nil {
		return 1, fmt.Errorf("the suite's StatefulSet is not ready: %w\n%s", err, out)
	}
	return 0, nil
}

// track records a test's duration for the summary.
func track(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() {
		timings.Lock()
		defer timings.Unlock()
		if timings.d == nil {
			timings.d = map[string]time.Duration{}
		}
		timings.d[t.Name()] = time.Since(start)
		t.Logf("%s took %s", t.Name(), time.Since(start).Round(100*time.Millisecond))
	})
}

// kubectl runs kubectl against the cluster and returns its combined output.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// weft runs the CLI built from this tree.
func weft(ctx context.Context, args ...string) (string, string, error) {
	// The cluster flags belong to the subcommand: weft <subcommand> --kubeconfig ... <args>.
	cmd := exec.CommandContext(ctx, env.weft, append([]string{args[0], "--kubeconfig", env.kubeconfig}, args[1:]...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// eventually polls f every interval until it returns nil or timeout passes, and
// returns the last error.
func eventually(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(interval):
		}
	}
}

var deleteBackground = client.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)}

func ptrTo[T any](v T) *T { return &v }

func objKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }
