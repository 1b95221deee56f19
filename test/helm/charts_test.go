// Package helm_test checks the Helm charts under config/helm against the kustomize
// install (config/default): both are rendered with the real libraries (Helm's install
// action in client-only dry-run, which is `helm template`; the kustomize API, which is
// `kubectl kustomize`) and must hold the same objects, field for field. It also checks
// the values schema and, when ./bin/helm is built (make helm), the real CLI.
//
// This is its own module because helm.sh/helm/v4 needs newer k8s.io modules than the
// main module builds with.
package helm_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the main module's directory (this test runs in test/helm).
var repoRoot = filepath.Join("..", "..")

const (
	crdsChart = "config/helm/weft-crds"
	weftChart = "config/helm/weft"
	namespace = "weft-system"
	// keepAnnotation is the one thing the charts add to what kustomize renders: the CRDs
	// survive `helm uninstall` (deleting a CRD deletes every object of its kind).
	keepAnnotation = "helm.sh/resource-policy"
)

// object is one rendered Kubernetes object.
type object = map[string]any

// key names an object the way the API server does: group/kind, namespace and name.
func key(o object) string {
	apiVersion, _ := o["apiVersion"].(string)
	group := ""
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	kind, _ := o["kind"].(string)
	meta, _ := o["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	return fmt.Sprintf("%s/%s %s/%s", group, kind, ns, name)
}

// parseDocs splits a multi-document YAML stream into objects, dropping empty documents
// (comment-only templates, disabled parts).
func parseDocs(t *testing.T, stream string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range splitYAML(stream) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("parse rendered document: %v\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		k := key(o)
		if _, dup := out[k]; dup {
			t.Fatalf("%s rendered twice", k)
		}
		out[k] = o
	}
	return out
}

func splitYAML(stream string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(stream, "\n") {
		if strings.TrimRight(line, "\r\n") == "---" || strings.HasPrefix(line, "--- ") {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// renderKustomize builds config/default with the kustomize API.
func renderKustomize(t *testing.T) map[string]object {
	t.Helper()
	return renderKustomizeDir(t, "config/default")
}

// renderKustomizeDir builds a kustomization of the repository with the kustomize API.
func renderKustomizeDir(t *testing.T, dir string) map[string]object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := map[string]object{}
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		// Round-trip through JSON so numbers and maps have the same Go types as the
		// Helm side's.
		out[key(o)] = normalize(t, o)
	}
	return out
}

func normalize(t *testing.T, o object) object {
	t.Helper()
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var n object
	if err := yaml.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// renderChart renders a chart as `helm template` does: the install action, client-only
// dry run, a memory release store and a kube client that never reaches a cluster.
func renderChart(chartDir, releaseName, ns string, vals map[string]any) (string, error) {
	ch, err := loader.Load(filepath.Join(repoRoot, chartDir))
	if err != nil {
		return "", err
	}
	return renderLoaded(ch, releaseName, ns, vals)
}

func renderLoaded(ch *chart.Chart, releaseName, ns string, vals map[string]any) (string, error) {
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: &bytes.Buffer{}},
		Capabilities: common.DefaultCapabilities,
	}
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = ns
	install.Replace = true
	install.IncludeCRDs = true
	rel, err := install.Run(ch, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("unexpected release type %T", rel)
	}
	return r.Manifest, nil
}

func mustRender(t *testing.T, chartDir, releaseName, ns string, vals map[string]any) map[string]object {
	t.Helper()
	manifest, err := renderChart(chartDir, releaseName, ns, vals)
	if err != nil {
		t.Fatalf("render %s: %v", chartDir, err)
	}
	return parseDocs(t, manifest)
}

// stripKeep removes the CRD charts' resource-policy annotation (and an annotations map
// it leaves empty), checking that it is there: a CRD without it would be deleted, with
// every object of its kind, by `helm uninstall weft-crds`.
func stripKeep(t *testing.T, objs map[string]object) {
	t.Helper()
	for k, o := range objs {
		meta := o["metadata"].(map[string]any)
		ann, _ := meta["annotations"].(map[string]any)
		if o["kind"] != "CustomResourceDefinition" {
			continue
		}
		if ann[keepAnnotation] != "keep" {
			t.Errorf("%s: no %s: keep annotation", k, keepAnnotation)
			continue
		}
		delete(ann, keepAnnotation)
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}
}

// diff lists the paths where a and b differ (at most a few, enough to see the cause).
func diff(path string, a, b any, out *[]string) {
	if len(*out) >= 8 {
		return
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diff(path+"."+k, am[k], bm[k], out)
		}
		return
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		for i := range as {
			diff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i], out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		ay, _ := yaml.Marshal(a)
		by, _ := yaml.Marshal(b)
		*out = append(*out, fmt.Sprintf("%s:\n  kustomize: %s  helm:      %s", path,
			strings.TrimSpace(string(ay))+"\n", strings.TrimSpace(string(by))+"\n"))
	}
}

// compare reports every object missing on one side and every field that differs.
func compare(t *testing.T, want, got map[string]object, what string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inGot:
			t.Errorf("%s: %s is in config/default but not in the charts", what, k)
		case !inWant:
			t.Errorf("%s: %s is in the charts but not in config/default", what, k)
		default:
			var d []string
			diff("", w, g, &d)
			if len(d) > 0 {
				t.Errorf("%s: %s differs:\n%s", what, k, strings.Join(d, "\n"))
			}
		}
	}
}

// renderChartsDefault renders what config/default holds with the charts: both charts
// with their default values (neither installs the Gateway API CRDs).
func renderChartsDefault(t *testing.T) map[string]object {
	t.Helper()
	got := mustRender(t, crdsChart, "weft-crds", namespace, nil)
	stripKeep(t, got)
	for k, o := range mustRender(t, weftChart, "weft", namespace, nil) {
		if _, dup := got[k]; dup {
			t.Fatalf("%s is in both charts", k)
		}
		got[k] = o
	}
	return got
}

// TestChartsMatchKustomize: the charts with their default values render exactly the
// objects of config/default.
func TestChartsMatchKustomize(t *testing.T) {
	want := renderKustomize(t)
	got := renderChartsDefault(t)
	if len(want) < 30 {
		t.Fatalf("config/default rendered only %d objects; the comparison would prove little", len(want))
	}
	compare(t, want, got, "helm library")
	if !t.Failed() {
		t.Logf("%d objects, identical", len(want))
	}
}

// TestGatewayAPIChannelsMatchKustomize: gatewayAPI.install=standard renders exactly the
// CRDs of config/crd/gateway-api, the kustomization a kustomize user applies. (The
// experimental channel is not in the chart: both channels exceed the 1 MiB a Helm
// release Secret may hold; TestValuesRefused refuses it by name.)
func TestGatewayAPIChannelsMatchKustomize(t *testing.T) {
	for channel, dir := range map[string]string{"standard": "config/crd/gateway-api"} {
		want := renderKustomizeDir(t, dir)
		got := mustRender(t, crdsChart, "weft-crds", namespace, map[string]any{"gatewayAPI": map[string]any{"install": channel}})
		stripKeep(t, got)
		for k, o := range got {
			if !strings.HasSuffix(o["metadata"].(map[string]any)["name"].(string), ".gateway.networking.k8s.io") {
				delete(got, k)
				continue
			}
			if c := o["metadata"].(map[string]any)["annotations"].(map[string]any)["gateway.networking.k8s.io/channel"]; c != channel {
				t.Errorf("gatewayAPI.install=%s renders %s of the %v channel", channel, k, c)
			}
		}
		if len(want) != 10 {
			t.Fatalf("%s renders %d CRDs, want 10", dir, len(want))
		}
		compare(t, want, got, "gatewayAPI.install="+channel)
	}
}

// TestCNIMatchesKustomize: cni.enabled=true adds exactly config/cni's objects (the
// weft-cni DaemonSet and its RBAC) to the default render, and nothing else changes.
func TestCNIMatchesKustomize(t *testing.T) {
	def := mustRender(t, weftChart, "weft", namespace, nil)
	on := mustRender(t, weftChart, "weft", namespace, map[string]any{"cni": map[string]any{"enabled": true}})
	added := map[string]object{}
	for k, o := range on {
		if d, ok := def[k]; ok {
			if !reflect.DeepEqual(d, o) {
				t.Errorf("cni.enabled=true changed %s", k)
			}
			continue
		}
		added[k] = o
	}
	want := renderKustomizeDir(t, "config/cni")
	if len(want) != 4 {
		t.Fatalf("config/cni rendered %d objects, want the DaemonSet, ServiceAccount, ClusterRole and binding", len(want))
	}
	compare(t, want, added, "cni.enabled=true")

	// The host paths move the hostPath volumes and the path written into the conflist
	// together.
	custom := mustRender(t, weftChart, "weft", namespace, map[string]any{"cni": map[string]any{
		"enabled": true, "binDir": "/usr/lib/cni", "netDir": "/var/lib/weft/net.d"}})
	ds, _ := yaml.Marshal(custom["apps/DaemonSet weft-system/weft-cni"])
	for _, w := range []string{"path: /usr/lib/cni", "path: /var/lib/weft/net.d", "--host-net-dir=/var/lib/weft/net.d"} {
		if !strings.Contains(string(ds), w) {
			t.Errorf("DaemonSet with custom paths lacks %q:\n%s", w, ds)
		}
	}
}

// TestGatewayAPICRDsOptIn: the Gateway API CRDs are not rendered unless asked for, and
// Weft's own CRDs always are.
func TestGatewayAPICRDsOptIn(t *testing.T) {
	def := mustRender(t, crdsChart, "weft-crds", namespace, nil)
	on := mustRender(t, crdsChart, "weft-crds", namespace, map[string]any{"gatewayAPI": map[string]any{"install": "standard"}})
	gateway := func(objs map[string]object) (n int) {
		for _, o := range objs {
			name := o["metadata"].(map[string]any)["name"].(string)
			if strings.HasSuffix(name, ".gateway.networking.k8s.io") {
				n++
			}
		}
		return n
	}
	if n := gateway(def); n != 0 {
		t.Errorf("default values render %d Gateway API CRDs, want none (opt-in)", n)
	}
	if n := gateway(on); n != 10 {
		t.Errorf("gatewayAPI.install=standard renders %d Gateway API CRDs, want 10", n)
	}
	if weft := renderKustomizeDir(t, "config/crd"); len(def) != len(weft) {
		t.Errorf("default values render %d CRDs, want Weft's %d (config/crd)", len(def), len(weft))
	}
}

// TestRenderIsStable: two renders are byte-identical (no random names, no generated
// secrets or their checksums), so GitOps tools see no change where there is none; and no
// render sets a caBundle, which cert-manager's cainjector owns.
func TestRenderIsStable(t *testing.T) {
	for _, c := range []struct {
		chart string
		vals  map[string]any
	}{
		{crdsChart, map[string]any{"gatewayAPI": map[string]any{"install": "standard"}}},
		{weftChart, nil},
	} {
		a, err := renderChart(c.chart, "r", namespace, c.vals)
		if err != nil {
			t.Fatal(err)
		}
		b, err := renderChart(c.chart, "r", namespace, c.vals)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s renders differently each time", c.chart)
		}
		for k, o := range parseDocs(t, a) {
			if hasKey(o, "caBundle") {
				t.Errorf("%s: %s sets a caBundle; cert-manager's cainjector owns that field", c.chart, k)
			}
		}
	}
}

// hasKey reports whether a map key named k occurs anywhere in v.
func hasKey(v any, k string) bool {
	switch v := v.(type) {
	case map[string]any:
		for kk, vv := range v {
			if kk == k || hasKey(vv, k) {
				return true
			}
		}
	case []any:
		for _, vv := range v {
			if hasKey(vv, k) {
				return true
			}
		}
	}
	return false
}

// TestValuesRefused: bad values fail the render with a message that names the key.
func TestValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chart string
		vals  string
		want  []string
	}{
		{"unknown top-level key", weftChart, "replica: 3\n", []string{"replica"}},
		{"unknown nested key", weftChart, "image:\n  tagg: v1\n", []string{"tagg"}},
		{"replicas zero", weftChart, "replicas: 0\n", []string{"replicas"}},
		{"replicas too many", weftChart, "replicas: 11\n", []string{"replicas"}},
		{"replicas not a number", weftChart, "replicas: two\n", []string{"replicas"}},
		{"pull policy", weftChart, "image:\n  pullPolicy: Sometimes\n", []string{"pullPolicy"}},
		{"duration", weftChart, "webhookCertificate:\n  duration: 90d\n", []string{"duration"}},
		{"memory quantity", weftChart, "resources:\n  limits:\n    memory: lots\n", []string{"memory"}},
		{"pdb not below replicas", weftChart, "replicas: 2\npodDisruptionBudget:\n  minAvailable: 2\n",
			[]string{"podDisruptionBudget.minAvailable", "replicas"}},
		{"renewBefore not below duration", weftChart, "webhookCertificate:\n  duration: 720h\n  renewBefore: 720h\n",
			[]string{"webhookCertificate.renewBefore", "webhookCertificate.duration"}},
		{"duration below an hour", weftChart, "webhookCertificate:\n  duration: 30m\n  renewBefore: 10m\n",
			[]string{"webhookCertificate.duration"}},
		{"cni unknown key", weftChart, "cni:\n  enable: true\n", []string{"enable"}},
		{"cni relative dir", weftChart, "cni:\n  netDir: etc/cni\n", []string{"netDir"}},
		{"dashboard prometheus not a URL", weftChart, "dashboard:\n  prometheusURL: prometheus:9090\n", []string{"prometheusURL"}},
		{"dashboard tap not a boolean", weftChart, "dashboard:\n  tap: \"no\"\n", []string{"tap"}},
		{"cni bad namespace", weftChart, "cni:\n  excludeNamespaces: [Kube_System]\n", []string{"excludeNamespaces"}},
		{"crds unknown key", crdsChart, "gatewayApi:\n  install: true\n", []string{"gatewayApi"}},
		{"crds wrong type", crdsChart, "gatewayAPI:\n  install: yes please\n", []string{"install"}},
		{"crds unknown channel", crdsChart, "gatewayAPI:\n  install: beta\n", []string{"install"}},
		{"crds experimental is not in the chart", crdsChart, "gatewayAPI:\n  install: experimental\n", []string{"install"}},
		{"crds true is not a channel", crdsChart, "gatewayAPI:\n  install: true\n", []string{"install"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tc.vals), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := renderChart(tc.chart, "r", namespace, vals)
			if err == nil {
				t.Fatalf("values %q rendered; want an error naming %v", tc.vals, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestWrongNamespaceRefused: the chart names weft-system everywhere, so a release in
// another namespace would half-work; it is refused with what to do.
func TestWrongNamespaceRefused(t *testing.T) {
	_, err := renderChart(weftChart, "weft", "default", nil)
	if err == nil || !strings.Contains(err.Error(), "--namespace weft-system") {
		t.Fatalf("render into default: err = %v, want a refusal naming --namespace weft-system", err)
	}
}

// TestValuesApplied: the values that change objects change them where they should.
func TestValuesApplied(t *testing.T) {
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(`
namespace: {create: false}
image: {repository: registry.example/weft/controller, tag: v1.2.3, pullPolicy: Always}
replicas: 3
podDisruptionBudget: {minAvailable: 2}
networkPolicy: {enabled: false}
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
webhookCertificate: {duration: 720h, renewBefore: 240h}
`), &vals); err != nil {
		t.Fatal(err)
	}
	objs := mustRender(t, weftChart, "weft", namespace, vals)
	if _, ok := objs["/Namespace /weft-system"]; ok {
		t.Error("namespace.create=false still renders the Namespace")
	}
	for k := range objs {
		if strings.HasPrefix(k, "networking.k8s.io/NetworkPolicy ") {
			t.Errorf("networkPolicy.enabled=false still renders %s", k)
		}
	}
	dep := objs["apps/Deployment weft-system/weft-controller"]
	if dep == nil {
		t.Fatal("no Deployment")
	}
	spec := dep["spec"].(map[string]any)
	pod := spec["template"].(map[string]any)["spec"].(map[string]any)
	ctr := pod["containers"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"replicas", spec["replicas"], float64(3)},
		{"image", ctr["image"], "registry.example/weft/controller:v1.2.3"},
		{"pullPolicy", ctr["imagePullPolicy"], "Always"},
		{"priorityClassName", pod["priorityClassName"], "system-cluster-critical"},
		{"nodeSelector", pod["nodeSelector"], map[string]any{"kubernetes.io/os": "linux"}},
		{"toleration", pod["tolerations"].([]any)[0].(map[string]any)["key"], "dedicated"},
		{"pdb", objs["policy/PodDisruptionBudget weft-system/weft-controller"]["spec"].(map[string]any)["minAvailable"], float64(2)},
		{"cert duration", objs["cert-manager.io/Certificate weft-system/weft-webhook-cert"]["spec"].(map[string]any)["duration"], "720h"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	objs = mustRender(t, weftChart, "weft", namespace, map[string]any{"dashboard": map[string]any{"prometheusURL": "http://prometheus.monitoring:9090"}})
	args := objs["apps/Deployment weft-system/weft-dashboard"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"]
	if !reflect.DeepEqual(args, []any{"--addr=127.0.0.1:8084", "--prometheus-url=http://prometheus.monitoring:9090"}) {
		t.Errorf("dashboard.prometheusURL: the dashboard's args = %v, want --prometheus-url", args)
	}
	objs = mustRender(t, weftChart, "weft", namespace, map[string]any{"dashboard": map[string]any{"tap": false}})
	args = objs["apps/Deployment weft-system/weft-dashboard"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"]
	if !reflect.DeepEqual(args, []any{"--addr=127.0.0.1:8084", "--tap=false"}) {
		t.Errorf("dashboard.tap=false: the dashboard's args = %v, want --tap=false", args)
	}
	for key := range objs {
		if strings.Contains(key, "weft-dashboard-tap") {
			t.Errorf("dashboard.tap=false renders %s", key)
		}
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs = mustRender(t, weftChart, "weft", namespace, map[string]any{"image": map[string]any{"tag": digest}})
	ctr = objs["apps/Deployment weft-system/weft-controller"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if ctr["image"] != "weft-controller@"+digest {
		t.Errorf("digest tag: image = %v, want weft-controller@%s", ctr["image"], digest)
	}
}

// helmCLI is ./bin/helm (make helm), or "" when it is not built.
func helmCLI(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(repoRoot, "bin", "helm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func runHelm(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	// No user configuration or cache of this machine leaks into the run.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG=/dev/null")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// TestHelmCLI: the real helm binary renders the same objects as config/default, lints
// both charts clean, and refuses a values file with an unknown key or an out-of-range
// value naming the key. Skipped (and says so) when ./bin/helm is not built.
func TestHelmCLI(t *testing.T) {
	bin := helmCLI(t)
	if bin == "" {
		t.Skip("bin/helm not built (make helm); the library tests above still ran")
	}
	crds, err := runHelm(t, bin, "template", "weft-crds", crdsChart, "--namespace", namespace)
	if err != nil {
		t.Fatal(err)
	}
	got := parseDocs(t, crds)
	stripKeep(t, got)
	weft, err := runHelm(t, bin, "template", "weft", weftChart, "--namespace", namespace)
	if err != nil {
		t.Fatal(err)
	}
	for k, o := range parseDocs(t, weft) {
		got[k] = o
	}
	compare(t, renderKustomize(t), got, "helm template")

	for _, c := range []string{crdsChart, weftChart} {
		if out, err := runHelm(t, bin, "lint", "--strict", "--namespace", namespace, c); err != nil {
			t.Errorf("helm lint %s: %v\n%s", c, err, out)
		}
	}

	dir := t.TempDir()
	for _, tc := range []struct{ vals, want string }{
		{"replicas: 3\nimage:\n  tagg: v1\n", "tagg"},
		{"replicas: 0\n", "replicas"},
	} {
		f := filepath.Join(dir, "values.yaml")
		if err := os.WriteFile(f, []byte(tc.vals), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := runHelm(t, bin, "template", "weft", weftChart, "--namespace", namespace, "-f", f)
		var exitErr *exec.ExitError
		if err == nil || !errors.As(err, &exitErr) {
			t.Errorf("helm template -f with %q: err = %v, want a failure", tc.vals, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template -f with %q: the error does not name %q:\n%v", tc.vals, tc.want, err)
		}
	}
}
