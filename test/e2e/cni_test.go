package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

const (
	cniNS = "weft-cni-e2e" // testdata/cni.yaml
	// The local cluster's containerd runs CNI plugins from Debian's directory
	// (hack/cluster/up.sh, bin_dir) and reads $CLUSTER_DIR/cni/net.d.
	localCNIBinDir = "/usr/lib/cni"
)

// localCNINetDir is the local cluster's CNI conf directory: up.sh writes the admin
// kubeconfig and the conflist under the same $CLUSTER_DIR.
func localCNINetDir() string { return filepath.Join(filepath.Dir(env.kubeconfig), "cni", "net.d") }

// TestCNI installs the weft-cni DaemonSet (config/cni with the local cluster's paths),
// switches the Mesh to redirectMode CNI, and runs the demo's shape (load -> web ->
// backend and grpc) in a meshed namespace enforcing Pod Security "baseline": every
// pod is admitted with only the unprivileged validator, traffic flows, and the
// proxies count it as mTLS. Then it removes the DaemonSet and shows the race the
// validator exists for: a meshed pod created without the plugin stays in Init with the
// validator's message, and its app never starts. The Mesh, the DaemonSet and the
// namespace are restored or removed afterwards, so the rest of the suite is unaffected.
func TestCNI(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	netDir := localCNINetDir()

	objs := cniObjects(t, netDir)
	t.Cleanup(func() { removeCNI(t, objs, netDir) })
	for _, o := range objs {
		if err := env.client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	tInstall := time.Now()
	if out, err := kubectl(ctx, "-n", controlPlane, "rollout", "status", "daemonset/weft-cni", "--timeout=120s"); err != nil {
		logs, _ := kubectl(ctx, "-n", controlPlane, "logs", "daemonset/weft-cni", "--tail=50")
		t.Fatalf("the weft-cni DaemonSet is not ready: %v\n%s\n%s", err, out, logs)
	}
	if err := eventually(ctx, time.Minute, 200*time.Millisecond, func() error { return chained(netDir, true) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("weft-cni installed and chained in %s", time.Since(tInstall).Round(100*time.Millisecond))

	// The Mesh: CNI mode for the pods created from now on; restored at the end.
	mesh := &meshv1alpha1.Mesh{}
	if err := env.client.Get(ctx, client.ObjectKey{Name: meshv1alpha1.MeshName}, mesh); err != nil {
		t.Fatal(err)
	}
	was := mesh.Spec.Proxy.RedirectMode
	setRedirectMode(ctx, t, meshv1alpha1.RedirectCNI)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		setRedirectMode(c, t, was)
	})

	// The injector reads the Mesh from its cache: wait until a dry-run pod in the
	// suite's meshed namespace comes back with the validator.
	if err := eventually(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cni-mode-probe", Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "weft-demo:dev"}}}}
		if err := env.client.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != inject.ValidatorContainerName {
			return fmt.Errorf("the injector still adds %v", p.Spec.InitContainers)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := kubectl(c, "delete", "namespace", cniNS, "--ignore-not-found", "--wait=true", "--timeout=150s"); err != nil {
			t.Errorf("deleting %s: %v\n%s", cniNS, err, out)
		}
	})
	tDeploy := time.Now()
	// The servers first, then the client: every request the client sends finds its
	// backends ready, so any failure is a finding.
	for _, f := range []string{"cni.yaml", "cni-load.yaml"} {
		if out, err := kubectl(ctx, "apply", "-f", filepath.Join(env.root, "test/e2e/testdata", f)); err != nil {
			t.Fatalf("applying testdata/%s: %v\n%s", f, err, out)
		}
		if out, err := kubectl(ctx, "-n", cniNS, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=180s"); err != nil {
			pods, _ := kubectl(ctx, "-n", cniNS, "get", "pods", "-o", "wide")
			events, _ := kubectl(ctx, "-n", cniNS, "get", "events", "--sort-by=.lastTimestamp")
			t.Fatalf("the CNI-mode workloads of %s are not available: %v\n%s\n%s\n%s", f, err, out, pods, events)
		}
	}
	t.Logf("4 CNI-mode deployments available in %s", time.Since(tDeploy).Round(100*time.Millisecond))

	pods := meshedPods(ctx, t, cniNS)
	if len(pods) != 4 {
		t.Fatalf("%d meshed pods in %s, want 4", len(pods), cniNS)
	}
	t.Run("pods carry the validator, not weft-init, and it passed", func(t *testing.T) {
		for _, p := range pods {
			var names []string
			for _, c := range p.Spec.InitContainers {
				names = append(names, c.Name)
				if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: init container %s adds capabilities %v", p.Name, c.Name, sc.Capabilities.Add)
				}
			}
			if slices.Contains(names, inject.InitContainerName) || len(names) < 2 || names[0] != inject.ValidatorContainerName {
				t.Errorf("%s: init containers %v, want weft-validate first and no weft-init", p.Name, names)
			}
			for _, s := range p.Status.InitContainerStatuses {
				if s.Name == inject.ValidatorContainerName && (s.State.Terminated == nil || s.State.Terminated.ExitCode != 0) {
					t.Errorf("%s: the validator did not pass: %+v", p.Name, s.State)
				}
			}
		}
	})

	t.Run("traffic flows over mTLS", func(t *testing.T) {
		load := podNamed(t, pods, "load")
		stats := func() (LoadStats, error) {
			var s LoadStats
			b, err := env.kube.CoreV1().Pods(cniNS).ProxyGet("http", load.Name, "9102", "stats", nil).DoRaw(ctx)
			if err != nil {
				return s, err
			}
			return s, json.Unmarshal(b, &s)
		}
		// 20 RPS from the moment the client is ready, its servers ready before it.
		var end LoadStats
		if err := eventually(ctx, 2*time.Minute, time.Second, func() error {
			s, err := stats()
			if err != nil {
				return err
			}
			if s.Requests < 120 {
				return fmt.Errorf("%d answered requests so far, want 120: %+v", s.Requests, s)
			}
			end = s
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("load: %d requests, %d failures, %d errors, by status %v", end.Requests, end.Failures, end.Errors, end.ByStatus)
		if end.Failures+end.Errors != 0 {
			t.Errorf("%d of %d requests failed, by send second %v (last: %s)", end.Failures+end.Errors, end.Requests,
				end.FailuresBySendSecond, end.LastError)
		}
		// Each hop is counted by the server's proxy as inbound mTLS from the client's
		// identity: load -> web, web -> backend, web -> grpc. What else arrives inbound
		// without TLS is the kubelet's readiness probes.
		for _, hop := range []struct{ server, client string }{{"web", "load"}, {"backend", "web"}, {"grpc", "web"}} {
			srv := podNamed(t, pods, hop.server)
			metrics := proxyMetrics(ctx, t, srv.Name)
			id := fmt.Sprintf(`client_id="spiffe://%s/ns/%s/sa/%s"`, mesh.Spec.TrustDomain, cniNS, hop.client)
			fromClient := sumSamples(metrics, "request_total", `direction="inbound"`, `tls="true"`, id)
			plain := sumSamples(metrics, "request_total", `direction="inbound"`, `tls="no_identity"`)
			t.Logf("%s's proxy: %.0f inbound requests over mTLS from %s's identity, %.0f inbound without TLS (probes)",
				hop.server, fromClient, hop.client, plain)
			if fromClient < 120 {
				t.Errorf("%s's proxy counted %.0f mTLS requests from %s, want at least the 120 answered (%s)", hop.server, fromClient, hop.client, id)
			}
		}
	})

	t.Run("without the plugin a meshed pod fails in the validator", func(t *testing.T) {
		removeCNI(t, objs, netDir)
		// containerd reloads the conf directory on a file event; give it a moment so the
		// new pod's sandbox is set up by the chain without weft-cni.
		time.Sleep(3 * time.Second)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "unprotected", Namespace: cniNS},
			Spec: corev1.PodSpec{
				ServiceAccountName:            "backend",
				TerminationGracePeriodSeconds: ptrTo[int64](1),
				Containers: []corev1.Container{{Name: "app", Image: "weft-demo:dev", ImagePullPolicy: corev1.PullIfNotPresent,
					Args: []string{"backend", "--addr=:8080"}}},
			},
		}
		if err := env.client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		var msg string
		if err := eventually(ctx, 2*time.Minute, time.Second, func() error {
			if err := env.client.Get(ctx, objKey(p), p); err != nil {
				return err
			}
			for _, s := range p.Status.InitContainerStatuses {
				if s.Name != inject.ValidatorContainerName {
					continue
				}
				for _, term := range []*corev1.ContainerStateTerminated{s.State.Terminated, s.LastTerminationState.Terminated} {
					if term != nil && term.ExitCode != 0 {
						msg = term.Message
						return nil
					}
				}
			}
			return fmt.Errorf("the validator has not failed yet: %+v", p.Status.InitContainerStatuses)
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("validator's termination message: %s", msg)
		if !strings.Contains(msg, "Traffic redirection is not in place") || !strings.Contains(msg, "weft-cni DaemonSet") {
			t.Errorf("the validator's message does not say what is wrong and what to do: %q", msg)
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "app" && (s.State.Running != nil || s.LastTerminationState.Terminated != nil) {
				t.Errorf("the app container ran without redirection: %+v", s.State)
			}
		}
	})
}

// cniObjects renders config/cni and points the DaemonSet at the local cluster's CNI
// directories.
func cniObjects(t *testing.T, netDir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.Kustomize("config/cni")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		ds := &appsv1.DaemonSet{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, ds); err != nil {
			t.Fatal(err)
		}
		for i, v := range ds.Spec.Template.Spec.Volumes {
			switch v.Name {
			case "cni-bin":
				ds.Spec.Template.Spec.Volumes[i].HostPath.Path = localCNIBinDir
			case "cni-net":
				ds.Spec.Template.Spec.Volumes[i].HostPath.Path = netDir
			}
		}
		c := &ds.Spec.Template.Spec.Containers[0]
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--host-net-dir=") {
				c.Args[i] = "--host-net-dir=" + netDir
			}
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ds)
		if err != nil {
			t.Fatal(err)
		}
		o.Object = m
	}
	return objs
}

// removeCNI deletes the DaemonSet and its RBAC and waits until the installer took the
// plugin out of the conflist (it does so when stopped). Safe to call twice.
func removeCNI(t *testing.T, objs []*unstructured.Unstructured, netDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, o := range objs {
		if err := env.client.Delete(ctx, o, &deleteBackground); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if err := eventually(ctx, 90*time.Second, 200*time.Millisecond, func() error { return chained(netDir, false) }); err != nil {
		t.Errorf("weft-cni was not removed from the conflist: %v", err)
	}
	if _, err := os.Stat(filepath.Join(localCNIBinDir, "weft-cni")); err == nil {
		t.Errorf("%s/weft-cni was left behind", localCNIBinDir)
	}
}

// chained reports whether the node's conflist chains weft-cni (want true) or not.
func chained(netDir string, want bool) error {
	entries, err := os.ReadDir(netDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".conflist") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(netDir, e.Name()))
		if err != nil {
			return err
		}
		var doc struct {
			Plugins []struct {
				Type string `json:"type"`
			} `json:"plugins"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		has := len(doc.Plugins) > 0 && doc.Plugins[len(doc.Plugins)-1].Type == "weft-cni"
		if has != want {
			return fmt.Errorf("%s: weft-cni chained last = %v, want %v: %s", e.Name(), has, want, b)
		}
		return nil
	}
	return fmt.Errorf("no conflist in %s", netDir)
}

func setRedirectMode(ctx context.Context, t *testing.T, mode meshv1alpha1.RedirectMode) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"proxy":{"redirectMode":%q}}}`, mode)
	if mode == "" {
		patch = `{"spec":{"proxy":{"redirectMode":null}}}`
	}
	if out, err := kubectl(ctx, "patch", "mesh", meshv1alpha1.MeshName, "--type=merge", "-p", patch); err != nil {
		t.Errorf("setting the Mesh's redirectMode to %q: %v\n%s", mode, err, out)
	}
}

func podNamed(t *testing.T, pods []corev1.Pod, app string) corev1.Pod {
	t.Helper()
	for _, p := range pods {
		if p.Labels["app"] == app {
			return p
		}
	}
	t.Fatalf("no pod of app %s", app)
	return corev1.Pod{}
}

// proxyMetrics reads a pod proxy's /metrics through the API server.
func proxyMetrics(ctx context.Context, t *testing.T, pod string) string {
	t.Helper()
	b, err := env.kube.CoreV1().Pods(cniNS).ProxyGet("http", pod, "4191", "metrics", nil).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading %s's proxy metrics: %v", pod, err)
	}
	return string(b)
}

// sumSamples adds the samples of metric whose labels contain every one of matches.
func sumSamples(text, metric string, matches ...string) float64 {
	var sum float64
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, metric+"{") {
			continue
		}
		labels := l[:strings.LastIndexByte(l, ' ')]
		if !all(matches, func(m string) bool { return strings.Contains(labels, m) }) {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func all[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}
