package helm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// startAPIServer starts a real kube-apiserver and etcd (hack/kube-binaries.sh) with
// cert-manager's CRDs, the only thing the charts need that they do not install, and
// returns a kubeconfig file for it and a dynamic client.
func startAPIServer(t *testing.T) (string, dynamic.Interface) {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command(filepath.Join(repoRoot, "hack", "kube-binaries.sh")).Output()
		if err != nil {
			t.Fatalf("hack/kube-binaries.sh: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		assets = lines[len(lines)-1]
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "cert-manager", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return path, dyn
}

// helmConfig is an action configuration against the API server, storing releases as
// Secrets in ns, as the CLI does.
func helmConfig(t *testing.T, kubeconfig, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func installOrUpgrade(t *testing.T, cfg *action.Configuration, name, chartDir, ns string, vals map[string]any, upgrade bool) error {
	t.Helper()
	ch, err := loader.Load(filepath.Join(repoRoot, chartDir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if upgrade {
		up := action.NewUpgrade(cfg)
		up.Namespace = ns
		up.WaitStrategy = kube.HookOnlyStrategy
		up.Timeout = time.Minute
		_, err = up.RunWithContext(ctx, name, ch, vals)
		return err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName = name
	in.Namespace = ns
	in.WaitStrategy = kube.HookOnlyStrategy
	in.Timeout = time.Minute
	_, err = in.RunWithContext(ctx, ch, vals)
	return err
}

// gatewayCRD reads one of the chart's Gateway API CRDs, with its annotations changed.
func gatewayCRD(t *testing.T, file string, ann map[string]string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, crdsChart, "files", "gateway-api", file))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	a := u.GetAnnotations()
	for k, v := range ann {
		a[k] = v
	}
	u.SetAnnotations(a)
	return u
}

func getCRD(t *testing.T, dyn dynamic.Interface, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := dyn.Resource(crdGVR).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get CRD %s: %v", name, err)
	}
	return u
}

// setCRDAnnotation sets one annotation of a CRD as another tool would, retrying on a
// conflict: the API server's own controllers write a new CRD's status meanwhile.
func setCRDAnnotation(ctx context.Context, t *testing.T, dyn dynamic.Interface, name, key, value string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crd := getCRD(t, dyn, name)
		ann := crd.GetAnnotations()
		ann[key] = value
		crd.SetAnnotations(ann)
		_, err := dyn.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("annotating CRD %s: %v", name, err)
	}
}

// TestInstallOnAPIServer installs and upgrades both charts with the Helm library on a
// real kube-apiserver (every object must pass its validation, server-side apply), and
// checks the Gateway API rules: a newer, an experimental-channel and a foreign CRD are
// left alone; the release's own CRDs are never downgraded; uninstalling keeps every CRD.
func TestInstallOnAPIServer(t *testing.T) {
	kubeconfig, dyn := startAPIServer(t)
	ctx := context.Background()
	const bundle = "gateway.networking.k8s.io/bundle-version"
	const channel = "gateway.networking.k8s.io/channel"

	// What other tools installed before Weft: a newer HTTPRoute CRD, an experimental
	// GRPCRoute CRD, and a ReferenceGrant CRD of the same version but not Helm's.
	for _, c := range []*unstructured.Unstructured{
		gatewayCRD(t, "gateway.networking.k8s.io_httproutes.yaml", map[string]string{bundle: "v1.99.0"}),
		gatewayCRD(t, "gateway.networking.k8s.io_grpcroutes.yaml", map[string]string{channel: "experimental"}),
		gatewayCRD(t, "gateway.networking.k8s.io_referencegrants.yaml", nil),
	} {
		if _, err := dyn.Resource(crdGVR).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", c.GetName(), err)
		}
	}

	crdsCfg := helmConfig(t, kubeconfig, "default")
	on := map[string]any{"gatewayAPI": map[string]any{"install": "standard"}}
	if err := installOrUpgrade(t, crdsCfg, "weft-crds", crdsChart, "default", on, false); err != nil {
		t.Fatalf("install weft-crds: %v", err)
	}
	owner := func(name string) string {
		return getCRD(t, dyn, name).GetAnnotations()["meta.helm.sh/release-name"]
	}
	if v := getCRD(t, dyn, "httproutes.gateway.networking.k8s.io").GetAnnotations()[bundle]; v != "v1.99.0" || owner("httproutes.gateway.networking.k8s.io") != "" {
		t.Errorf("the newer HTTPRoute CRD was replaced: bundle-version %s, owner %q", v, owner("httproutes.gateway.networking.k8s.io"))
	}
	if c := getCRD(t, dyn, "grpcroutes.gateway.networking.k8s.io").GetAnnotations()[channel]; c != "experimental" {
		t.Errorf("the experimental GRPCRoute CRD was replaced (channel %s)", c)
	}
	if o := owner("referencegrants.gateway.networking.k8s.io"); o != "" {
		t.Errorf("the foreign ReferenceGrant CRD was taken over by %q", o)
	}
	for _, name := range []string{"gateways.gateway.networking.k8s.io", "tcproutes.gateway.networking.k8s.io", "meshes.mesh.weft.dev", "servers.policy.weft.dev"} {
		if o := owner(name); o != "weft-crds" {
			t.Errorf("%s: owner %q, want weft-crds", name, o)
		}
	}

	// Another tool upgrades a CRD this release installed: the next upgrade of the chart
	// leaves it (no downgrade) and does not delete it.
	gw := getCRD(t, dyn, "gateways.gateway.networking.k8s.io")
	gwAnn := gw.GetAnnotations()
	if gwAnn["meta.helm.sh/release-name"] != "weft-crds" || gwAnn[keepAnnotation] != "keep" {
		t.Fatalf("Gateway CRD annotations %v: not this release's, or not kept", gwAnn)
	}
	setCRDAnnotation(ctx, t, dyn, "gateways.gateway.networking.k8s.io", bundle, "v1.99.0")
	// And one whose version is not a version at all: left alone too, not a failed render.
	setCRDAnnotation(ctx, t, dyn, "tcproutes.gateway.networking.k8s.io", bundle, "main")
	if err := installOrUpgrade(t, crdsCfg, "weft-crds", crdsChart, "default", on, true); err != nil {
		t.Fatalf("upgrade weft-crds: %v", err)
	}
	if v := getCRD(t, dyn, "tcproutes.gateway.networking.k8s.io").GetAnnotations()[bundle]; v != "main" {
		t.Errorf("upgrade replaced the TCPRoute CRD of version %q with %s", "main", v)
	}
	if v := getCRD(t, dyn, "gateways.gateway.networking.k8s.io").GetAnnotations()[bundle]; v != "v1.99.0" {
		t.Errorf("upgrade downgraded the newer Gateway CRD to %s", v)
	}

	// The control plane: the namespace first (Helm stores the release there), as
	// hack/helm-install.sh does, then install and upgrade.
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": namespace}}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	weftCfg := helmConfig(t, kubeconfig, namespace)
	if err := installOrUpgrade(t, weftCfg, "weft", weftChart, namespace, map[string]any{"namespace": map[string]any{"create": false}}, false); err != nil {
		t.Fatalf("install weft: %v", err)
	}
	deployGVR := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if err := installOrUpgrade(t, weftCfg, "weft", weftChart, namespace, map[string]any{"namespace": map[string]any{"create": false}, "replicas": 3}, true); err != nil {
		t.Fatalf("upgrade weft: %v", err)
	}
	dep, err := dyn.Resource(deployGVR).Namespace(namespace).Get(ctx, "weft-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 3 {
		t.Errorf("after upgrade with replicas=3 the Deployment has %d", r)
	}
	// cert-manager's cainjector writes caBundle; an upgrade must leave it.
	whGVR := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	patch := []byte(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"Y2E="}]`)
	if _, err := dyn.Resource(whGVR).Patch(ctx, "weft-injector", types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "cert-manager-cainjector"}); err != nil {
		t.Fatal(err)
	}
	if err := installOrUpgrade(t, weftCfg, "weft", weftChart, namespace, map[string]any{"namespace": map[string]any{"create": false}}, true); err != nil {
		t.Fatalf("second upgrade of weft: %v", err)
	}
	wh, err := dyn.Resource(whGVR).Get(ctx, "weft-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	if ca, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle"); ca != "Y2E=" {
		t.Errorf("helm upgrade removed the injected caBundle (now %q)", ca)
	}

	// Uninstalling the CRDs chart keeps every CRD (and so every object of their kinds).
	un := action.NewUninstall(crdsCfg)
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = time.Minute
	if _, err := un.Run("weft-crds"); err != nil {
		t.Fatalf("uninstall weft-crds: %v", err)
	}
	for _, name := range []string{"meshes.mesh.weft.dev", "trafficsplits.split.smi-spec.io", "gateways.gateway.networking.k8s.io", "tcproutes.gateway.networking.k8s.io"} {
		c, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && c.GetDeletionTimestamp() != nil) {
			t.Errorf("helm uninstall weft-crds deleted %s", name)
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// TestHelmInstallScript runs hack/helm-install.sh, with the real bin/helm and kubectl,
// against a real API server, twice (install, then upgrade). There is no kubelet, so
// Helm does not wait for readiness (HELM_WAIT=hookOnly) and `weft check`, which needs
// running pods, is replaced by a recorder of its arguments; the cluster e2e runs the
// real one.
func TestHelmInstallScript(t *testing.T) {
	bin := helmCLI(t)
	if bin == "" {
		t.Skip("bin/helm not built (make helm)")
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	kubeconfig, dyn := startAPIServer(t)
	dir := t.TempDir()
	record := filepath.Join(dir, "weft-args")
	weft := filepath.Join(dir, "weft")
	if err := os.WriteFile(weft, []byte("#!/bin/sh\necho \"$@\" >>"+record+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		cmd := exec.Command(filepath.Join(repoRoot, "hack", "helm-install.sh"), "--set", "replicas=3")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HELM="+bin, "WEFT="+weft, "HELM_WAIT=hookOnly",
			"HELM_CONFIG_HOME="+dir, "HELM_CACHE_HOME="+dir, "HELM_DATA_HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d of hack/helm-install.sh: %v\n%s", run, err, out)
		}
	}
	args, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(args); got != "check --wait 5m\ncheck --wait 5m\n" {
		t.Errorf("weft was run with %q, want check --wait 5m once per run", got)
	}
	ctx := context.Background()
	ns, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.GetLabels()["weft.dev/inject"] != "disabled" {
		t.Errorf("namespace labels %v: no weft.dev/inject=disabled", ns.GetLabels())
	}
	if o := ns.GetAnnotations()["meta.helm.sh/release-name"]; o != "" {
		t.Errorf("the namespace belongs to release %q; uninstalling it would delete the namespace", o)
	}
	dep, err := dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace(namespace).Get(ctx, "weft-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 3 {
		t.Errorf("the script's extra flags did not reach the weft chart: replicas %d", r)
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "mesh.weft.dev", Version: "v1alpha1", Resource: "meshes"}).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("the sample Mesh was not applied: %v", err)
	}
	for _, name := range []string{"meshes.mesh.weft.dev", "httproutes.gateway.networking.k8s.io"} {
		_, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if name == "httproutes.gateway.networking.k8s.io" {
			if !apierrors.IsNotFound(err) {
				t.Errorf("without --gateway-api the script installed %s (err %v)", name, err)
			}
		} else if err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}
}
