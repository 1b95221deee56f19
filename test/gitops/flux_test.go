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

package gitops_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestFluxInstallsWeft is the GitOps install as a Flux user runs it: Flux's own
// source-controller and kustomize-controller (built from the Go module proxy by
// hack/flux/build.sh, run as processes on this machine) pull a Git repository served on
// loopback that holds config/ and a Mesh, apply it to the local cluster with the
// Kustomization shipped in config/gitops/flux (its healthCheckExprs included), and must
// report it Ready: every object applied and judged healthy by Flux's own logic. Then a
// commit adds a ServiceProfile for a Service that does not exist, and Flux must fail the
// Kustomization naming it (its Stalled condition saying what to fix); reverting it makes
// the Kustomization Ready again.
//
// make flux-e2e (hack/flux-e2e.sh) brings up the cluster with cert-manager and runs it;
// without WEFT_FLUX_E2E_KUBECONFIG it is skipped.
func TestFluxInstallsWeft(t *testing.T) {
	kubeconfig := os.Getenv("WEFT_FLUX_E2E_KUBECONFIG")
	fluxDir := os.Getenv("WEFT_FLUX_BIN")
	version := os.Getenv("WEFT_FLUX_VERSION")
	if kubeconfig == "" || fluxDir == "" || version == "" {
		t.Skip("make flux-e2e runs this (WEFT_FLUX_E2E_KUBECONFIG, WEFT_FLUX_BIN, WEFT_FLUX_VERSION unset)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin []byte, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustKubectl := func(stdin []byte, args ...string) string {
		t.Helper()
		out, err := kubectl(stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// The repository: config/ as it is in this tree, and clusters/local, the path Flux
	// applies: Weft's install plus a Mesh.
	work := t.TempDir()
	repo := filepath.Join(work, "work")
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir, "-c", "user.name=weft-e2e", "-c", "user.email=e2e@weft.invalid"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(root, "config"), filepath.Join(repo, "config")).CombinedOutput(); err != nil {
		t.Fatalf("copying config/: %v\n%s", err, out)
	}
	cluster := filepath.Join(repo, "clusters", "local")
	writeFile(t, filepath.Join(cluster, "kustomization.yaml"), fluxClusterKustomization(t, root))
	writeFile(t, filepath.Join(cluster, "mesh.yaml"), string(readFile(t, filepath.Join(root, "config", "samples", "mesh.yaml"))))
	git(work, "init", "-q", "-b", "main", repo)
	git(repo, "add", ".")
	git(repo, "commit", "-q", "-m", "weft")
	bare := filepath.Join(work, "served", "weft.git")
	git(work, "clone", "-q", "--bare", repo, bare)
	push := func(msg string) {
		t.Helper()
		git(repo, "add", "-A")
		git(repo, "commit", "-q", "-m", msg)
		git(repo, "push", "-q", bare, "main")
	}

	// Git's own smart-HTTP server (git-http-backend) behind Go's CGI handler, on loopback.
	srv := httptest.NewServer(&cgi.Handler{
		Path: gitHTTPBackend(t),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(bare), "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer srv.Close()

	// Flux's CRDs, its namespace, then its two controllers.
	mustKubectl(nil, "apply", "--server-side", "-f", filepath.Join(fluxDir, "crds-"+version))
	mustKubectl(nil, "wait", "--for=condition=Established", "crd/gitrepositories.source.toolkit.fluxcd.io", "crd/kustomizations.kustomize.toolkit.fluxcd.io", "--timeout=60s")
	mustKubectl(nil, "create", "namespace", "flux-system")
	storagePort := port(t)
	artifacts := filepath.Join(work, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	sourceExited := startController(ctx, t, filepath.Join(fluxDir, "source-controller-"+version), kubeconfig,
		"--storage-path="+artifacts,
		fmt.Sprintf("--storage-addr=127.0.0.1:%d", storagePort),
		fmt.Sprintf("--storage-adv-addr=127.0.0.1:%d", storagePort),
		fmt.Sprintf("--health-addr=127.0.0.1:%d", port(t)),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", port(t)),
		"--enable-leader-election=false")
	kustomizeExited := startController(ctx, t, filepath.Join(fluxDir, "kustomize-controller-"+version), kubeconfig,
		fmt.Sprintf("--health-addr=127.0.0.1:%d", port(t)),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", port(t)),
		"--enable-leader-election=false")

	gitRepository := fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 5s
  url: %s/weft.git
  ref:
    branch: main
`, srv.URL)
	mustKubectl([]byte(gitRepository), "apply", "-f", "-")
	// The Kustomization exactly as shipped, pointed at the repository's cluster path.
	var ks map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "config", "gitops", "flux", "weft-kustomization.yaml")), &ks); err != nil {
		t.Fatal(err)
	}
	spec := ks["spec"].(map[string]any)
	spec["path"] = "./clusters/local"
	spec["interval"] = "5s"
	ksYAML, err := yaml.Marshal(ks)
	if err != nil {
		t.Fatal(err)
	}
	mustKubectl(ksYAML, "apply", "-f", "-")

	// ready waits until the Kustomization's Ready condition has the wanted status for the
	// repository's newest revision, and returns its message.
	ready := func(what string, want string, within time.Duration) string {
		t.Helper()
		start := time.Now()
		var last string
		for time.Since(start) < within {
			for name, exited := range map[string]<-chan struct{}{"source-controller": sourceExited, "kustomize-controller": kustomizeExited} {
				select {
				case <-exited:
					t.Fatalf("%s: %s exited (its log follows)", what, name)
				default:
				}
			}
			out, err := kubectl(nil, "-n", "flux-system", "get", "kustomization", "weft", "-o",
				`jsonpath={.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].reason}|{.status.conditions[?(@.type=="Ready")].message}|{.status.lastAttemptedRevision}`)
			if err == nil {
				last = out
				parts := strings.SplitN(out, "|", 4)
				if len(parts) == 4 && parts[0] == want && strings.HasSuffix(parts[3], headRevision(t, repo)) {
					t.Logf("%s: Kustomization Ready=%s after %s: %s: %s", what, want, time.Since(start).Round(time.Second), parts[1], parts[2])
					return parts[2]
				}
			}
			time.Sleep(2 * time.Second)
		}
		out, _ := kubectl(nil, "-n", "flux-system", "get", "gitrepository,kustomization", "-o", "wide")
		t.Fatalf("%s: the Kustomization is not Ready=%s within %s; last: %s\n%s", what, want, within, last, out)
		return ""
	}

	ready("install", "True", 6*time.Minute)
	mustKubectl(nil, "wait", "--for=condition=Ready", "mesh/default", "--timeout=10s")
	mustKubectl(nil, "-n", "weft-system", "rollout", "status", "deploy/weft-controller", "--timeout=10s")

	// A broken object: a ServiceProfile for a Service that does not exist. Weft reports
	// it Reconciling for the missing-reference grace, then Stalled, and Flux's health
	// check, with the shipped expressions, fails the Kustomization with Weft's message.
	writeFile(t, filepath.Join(cluster, "broken.yaml"), `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata:
  name: nothing.weft-system.svc.cluster.local
  namespace: weft-system
spec:
  routes:
  - name: all
    condition:
      pathRegex: "/.*"
`)
	kustomization := string(readFile(t, filepath.Join(cluster, "kustomization.yaml")))
	writeFile(t, filepath.Join(cluster, "kustomization.yaml"), kustomization+"- broken.yaml\n")
	push("a ServiceProfile for a missing Service")
	msg := ready("ServiceProfile for a missing Service", "False", 4*time.Minute)
	if !strings.Contains(msg, "ServiceProfile/weft-system/nothing.weft-system.svc.cluster.local") || !strings.Contains(msg, "Failed") {
		t.Errorf("Flux's message does not name the failed ServiceProfile: %s", msg)
	}
	// Flux names the object; the object's Stalled condition says what to fix.
	stalled := mustKubectl(nil, "-n", "weft-system", "get", "serviceprofile", "nothing.weft-system.svc.cluster.local", "-o",
		`jsonpath={.status.conditions[?(@.type=="Stalled")].message}`)
	if !strings.Contains(stalled, "does not exist") {
		t.Errorf("the ServiceProfile's Stalled message does not say what to fix: %q", stalled)
	}
	t.Logf("the ServiceProfile's Stalled message: %s", stalled)

	if err := os.Remove(filepath.Join(cluster, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cluster, "kustomization.yaml"), kustomization)
	push("revert the bad ServiceProfile")
	ready("reverted", "True", 4*time.Minute)
}

// fluxClusterKustomization is clusters/local/kustomization.yaml: what `kubectl apply -k
// config/default` plus the Gateway API CRDs install (when config/default leaves them out),
// and the Mesh.
func fluxClusterKustomization(t *testing.T, root string) string {
	t.Helper()
	resources := []string{"../../config/default"}
	def := string(readFile(t, filepath.Join(root, "config", "crd", "kustomization.yaml")))
	if !strings.Contains(def, "- gateway-api\n") {
		resources = append(resources, "../../config/crd/gateway-api")
	}
	resources = append(resources, "mesh.yaml")
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	for _, r := range resources {
		b.WriteString("- " + r + "\n")
	}
	return b.String()
}

// startController runs one of Flux's controllers until the test ends; the channel is
// closed when it exits.
func startController(ctx context.Context, t *testing.T, bin, kubeconfig string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(bin)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "RUNTIME_NAMESPACE=flux-system")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Dies with the test even when the test is killed, rather than outliving it with
	// the cluster in its hands.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				tail := b[max(0, len(b)-6000):]
				t.Logf("%s log (tail):\n%s", filepath.Base(bin), tail)
			}
		}
	})
	return exited
}

func gitHTTPBackend(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("git-http-backend: %v", err)
	}
	return p
}

func headRevision(t *testing.T, repo string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func port(t *testing.T) int {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
