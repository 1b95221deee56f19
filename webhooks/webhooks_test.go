package webhooks_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/webhooks/webhooktest"
)

var env *webhooktest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = webhooktest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test environment:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the test environment:", err)
	}
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var nsSeq struct {
	sync.Mutex
	n int
}

// namespace creates a namespace with a unique name and the given annotations and labels.
func namespace(t *testing.T, annotations, labels map[string]string) *corev1.Namespace {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("ns-%d", nsSeq.n)
	nsSeq.Unlock()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels}}
	if err := env.Client.Create(ctx(t), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return ns
}

func appPod(ns, name string, annotations, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "example.com/app:1.0",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}},
		},
	}
}

func create(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := env.Client.Create(ctx(t), pod); err != nil {
		t.Fatalf("creating pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return pod
}

func initNames(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Name)
	}
	return out
}

func container(t *testing.T, p *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("pod %s has no init container %s (has %v)", p.Name, name, initNames(p))
	return corev1.Container{}
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// assertInjected checks the shape of an injected pod against what issue 6 asks.
func assertInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if got := initNames(p); len(got) < 2 || got[0] != inject.InitContainerName || got[1] != inject.ProxyContainerName {
		t.Fatalf("init containers = %v, want weft-init then weft-proxy first", got)
	}
	initc := container(t, p, inject.InitContainerName)
	sc := initc.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.Privileged == nil || *sc.Privileged ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("weft-init security context = %+v, want root, not privileged, NET_ADMIN and NET_RAW only", sc)
	}
	proxy := container(t, p, inject.ProxyContainerName)
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("weft-proxy restartPolicy = %v, want Always (native sidecar)", proxy.RestartPolicy)
	}
	if sp := proxy.StartupProbe; sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/ready" || sp.HTTPGet.Port.IntValue() != 4191 {
		t.Errorf("weft-proxy startupProbe = %+v, want GET /ready on 4191", sp)
	}
	if proxy.ReadinessProbe == nil || proxy.LivenessProbe == nil {
		t.Errorf("weft-proxy lacks readiness or liveness probe")
	}
	var token, trust bool
	for _, v := range p.Spec.Volumes {
		if v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil {
			st := v.Projected.Sources[0].ServiceAccountToken
			token = st.Audience == "identity.weft.dev" && st.ExpirationSeconds != nil && *st.ExpirationSeconds == 3600
		}
		if v.ConfigMap != nil && v.ConfigMap.Name == "weft-trust-roots" {
			trust = true
		}
	}
	if !token || !trust {
		t.Errorf("volumes = %+v: identity token %v, trust roots %v", p.Spec.Volumes, token, trust)
	}
	if got := envValue(proxy, "WEFT_IDENTITY_ADDR"); got != "weft-identity.weft-system.svc.cluster.local:8080" {
		t.Errorf("WEFT_IDENTITY_ADDR = %q", got)
	}
	if p.Annotations[inject.AnnotationInjected] == "" || p.Annotations[inject.AnnotationProxyVersion] == "" {
		t.Errorf("annotations = %v, want %s and %s", p.Annotations, inject.AnnotationInjected, inject.AnnotationProxyVersion)
	}
}

func assertUntouched(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if len(p.Spec.InitContainers) != 0 || len(p.Spec.Volumes) != 0 {
		t.Errorf("pod %s was changed: init containers %v, volumes %v", p.Name, initNames(p), p.Spec.Volumes)
	}
	if _, ok := p.Annotations[inject.AnnotationInjected]; ok {
		t.Errorf("pod %s has %s", p.Name, inject.AnnotationInjected)
	}
}

func TestInjection(t *testing.T) {
	annotated := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	plain := namespace(t, nil, nil)
	cp := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: webhooktest.ControlPlaneNamespace,
		Labels: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}}
	// Other tests may have created it (for its trust bundle) without the label.
	err := env.Client.Create(ctx(t), cp)
	if apierrors.IsAlreadyExists(err) {
		err = env.Client.Update(ctx(t), cp)
	}
	if err != nil {
		t.Fatalf("creating %s: %v", cp.Name, err)
	}

	// The namespace labeler makes an annotated namespace visible to the selectors.
	if got := annotated.Labels[inject.AnnotationInject]; got != inject.InjectEnabled {
		t.Fatalf("annotated namespace labels = %v, want weft.dev/inject=enabled copied from the annotation", annotated.Labels)
	}

	cases := []struct {
		name        string
		pod         *corev1.Pod
		wantInjects bool
	}{
		{"annotated namespace", appPod(annotated.Name, "web", nil, nil), true},
		{"plain namespace", appPod(plain.Name, "web", nil, nil), false},
		{"pod annotated disabled", appPod(annotated.Name, "off-annotation", map[string]string{inject.AnnotationInject: "disabled"}, nil), false},
		{"pod labelled disabled", appPod(annotated.Name, "off-label", nil, map[string]string{inject.AnnotationInject: "disabled"}), false},
		{"pod labelled enabled in a plain namespace", appPod(plain.Name, "on-label", nil, map[string]string{inject.AnnotationInject: "enabled"}), true},
		{"pod only annotated enabled in a plain namespace never reaches the webhook", appPod(plain.Name, "on-annotation", map[string]string{inject.AnnotationInject: "enabled"}, nil), false},
		{"control-plane namespace", appPod(cp.Name, "controller", nil, nil), false},
		{"host network", func() *corev1.Pod {
			p := appPod(annotated.Name, "hostnet", nil, nil)
			p.Spec.HostNetwork = true
			return p
		}(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := create(t, tc.pod)
			if tc.wantInjects {
				assertInjected(t, p)
			} else {
				assertUntouched(t, p)
			}
		})
	}
}

func TestExistingInitContainersRunAfterTheProxy(t *testing.T) {
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	p := appPod(ns.Name, "migrate", nil, nil)
	p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1"}}
	create(t, p)
	if got, want := initNames(p), []string{"weft-init", "weft-proxy", "migrate"}; !slices.Equal(got, want) {
		t.Fatalf("init containers = %v, want %v", got, want)
	}
}

// Re-applying an injected pod must change nothing: creating a pod from an injected
// spec gives the same spec, and updating an injected pod leaves its spec alone.
func TestReapplyIsIdempotent(t *testing.T) {
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	first := create(t, appPod(ns.Name, "first", nil, nil))
	assertInjected(t, first)

	again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "again",
		Labels: first.Labels, Annotations: first.Annotations}, Spec: *first.Spec.DeepCopy()}
	create(t, again)
	if !apiequality.Semantic.DeepEqual(first.Spec, again.Spec) {
		t.Errorf("re-creating an injected pod changed its spec:\nfirst: %+v\nagain: %+v", first.Spec.InitContainers, again.Spec.InitContainers)
	}
	if !apiequality.Semantic.DeepEqual(first.Annotations, again.Annotations) {
		t.Errorf("annotations changed: %v -> %v", first.Annotations, again.Annotations)
	}

	updated := first.DeepCopy()
	updated.Labels["touched"] = "yes"
	if err := env.Client.Update(ctx(t), updated); err != nil {
		t.Fatalf("updating an injected pod: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(first.Spec, updated.Spec) {
		t.Errorf("updating an injected pod changed its spec")
	}
}

// The Mesh's proxy defaults apply; a namespace's config.weft.dev/* annotations override
// them, and a pod's override the namespace's.
func TestOverrides(t *testing.T) {
	mesh := createEmptyMesh(t)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mesh) })
	mesh.Spec.Proxy.LogLevel = "debug"
	mesh.Spec.Proxy.Image = "registry.example/weft-proxy:1.2.3"
	mesh.Spec.Proxy.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("300Mi")
	mesh.Spec.Identity.Workload.RenewAtPercent = 80
	if err := env.Client.Update(ctx(t), mesh); err != nil {
		t.Fatalf("updating the Mesh: %v", err)
	}
	// The injector reads the Mesh through the manager's cache; wait until it has it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen meshv1alpha1.Mesh
		if err := env.Cached.Get(ctx(t), client.ObjectKeyFromObject(mesh), &seen); err == nil && seen.Spec.Proxy.LogLevel == "debug" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the manager's cache never saw the updated Mesh")
		}
		time.Sleep(50 * time.Millisecond)
	}

	ns := namespace(t, map[string]string{
		inject.AnnotationInject:         inject.InjectEnabled,
		inject.AnnotationLogLevel:       "warn",
		inject.AnnotationProxyCPULimit:  "500m",
		inject.AnnotationOpaquePorts:    "5432",
		inject.AnnotationSkipSubnets:    "10.1.0.0/16",
		inject.AnnotationConnectTimeout: "2s",
	}, nil)

	cases := []struct {
		name        string
		annotations map[string]string
		logLevel    string
		memLimit    string
		cpuLimit    string
		opaque      string
		uid         string
		image       string
	}{
		{"mesh and namespace", nil, "warn", "300Mi", "500m", "5432", "2102", "registry.example/weft-proxy:1.2.3"},
		{"pod overrides namespace and mesh", map[string]string{
			inject.AnnotationLogLevel:         "trace",
			inject.AnnotationProxyMemoryLimit: "100Mi",
			inject.AnnotationOpaquePorts:      "",
			inject.AnnotationProxyUID:         "3000",
		}, "2", "100Mi", "500m", "", "3000", "registry.example/weft-proxy:1.2.3"}, // trace is verbosity 2 for weft-proxy
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := create(t, appPod(ns.Name, fmt.Sprintf("pod-%d", i), tc.annotations, nil))
			assertInjected(t, p)
			proxy := container(t, p, inject.ProxyContainerName)
			if got, _ := argValue(proxy.Args, "--log-level"); got != tc.logLevel {
				t.Errorf("log level = %q, want %q", got, tc.logLevel)
			}
			if got := proxy.Resources.Limits[corev1.ResourceMemory]; got.String() != tc.memLimit {
				t.Errorf("memory limit = %s, want %s", got.String(), tc.memLimit)
			}
			if got := proxy.Resources.Limits[corev1.ResourceCPU]; got.String() != tc.cpuLimit {
				t.Errorf("cpu limit = %s, want %s", got.String(), tc.cpuLimit)
			}
			if got := proxy.Resources.Requests[corev1.ResourceMemory]; got.String() != "20Mi" {
				t.Errorf("memory request = %s, want the Mesh default 20Mi", got.String())
			}
			if got := envValue(proxy, "WEFT_OPAQUE_PORTS"); got != tc.opaque {
				t.Errorf("opaque ports = %q, want %q", got, tc.opaque)
			}
			if got, _ := argValue(container(t, p, inject.InitContainerName).Args, "--proxy-uid"); got != tc.uid {
				t.Errorf("weft-init --proxy-uid = %q, want %q", got, tc.uid)
			}
			if got, _ := argValue(container(t, p, inject.InitContainerName).Args, "--skip-subnets"); got != "10.1.0.0/16" {
				t.Errorf("weft-init --skip-subnets = %q", got)
			}
			if got, _ := argValue(proxy.Args, "--connect-timeout"); got != "2s" {
				t.Errorf("--connect-timeout = %q, want 2s", got)
			}
			// The Mesh's renewAtPercent reaches the proxy (it used to be ignored).
			if got, _ := argValue(proxy.Args, "--identity-renew-at-percent"); got != "80" {
				t.Errorf("--identity-renew-at-percent = %q, want the Mesh's 80", got)
			}
			if proxy.Image != tc.image {
				t.Errorf("image = %q, want %q", proxy.Image, tc.image)
			}
			if got := p.Annotations[inject.AnnotationProxyVersion]; got != inject.ImageVersion(tc.image) {
				t.Errorf("proxy version annotation = %q", got)
			}
		})
	}
}

// Malformed annotations are rejected with a message naming the annotation.
func TestMalformedAnnotations(t *testing.T) {
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)

	podCases := []struct {
		name        string
		annotations map[string]string
		want        []string
	}{
		{"unparsable uid", map[string]string{inject.AnnotationProxyUID: "root"}, []string{"config.weft.dev/proxy-uid", "root"}},
		{"bad port list", map[string]string{inject.AnnotationSkipOutboundPorts: "80,http"}, []string{"config.weft.dev/skip-outbound-ports"}},
		{"unknown knob", map[string]string{"config.weft.dev/proxy-colour": "blue"}, []string{"config.weft.dev/proxy-colour"}},
		{"port clash", map[string]string{inject.AnnotationAdminPort: "4143"}, []string{"config.weft.dev/admin-port"}},
		{"two bad annotations, both named", map[string]string{inject.AnnotationLogLevel: "loud", inject.AnnotationDetectTimeout: "forever"},
			[]string{"config.weft.dev/log-level", "config.weft.dev/detect-timeout"}},
		// Images come from the Mesh only: weft-init runs as root with NET_ADMIN and
		// NET_RAW, so a pod choosing its image could run anything with them.
		{"pod-chosen init image", map[string]string{inject.AnnotationInitImage: "evil.example/root:1"},
			[]string{"config.weft.dev/init-image", "pods may not choose the weft-init image", "spec.proxy.initImage"}},
		{"pod-chosen proxy image", map[string]string{inject.AnnotationProxyImage: "evil.example/proxy:1"},
			[]string{"config.weft.dev/proxy-image", "pods may not choose the proxy image", "spec.proxy.image"}},
		{"tap port", map[string]string{inject.AnnotationTapPort: "4190"}, []string{"config.weft.dev/tap-port", "fixed at 4190"}},
	}
	for i, tc := range podCases {
		t.Run("pod/"+tc.name, func(t *testing.T) {
			err := env.Client.Create(ctx(t), appPod(ns.Name, fmt.Sprintf("bad-%d", i), tc.annotations, nil))
			if err == nil {
				t.Fatal("the pod was admitted")
			}
			t.Logf("rejected: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}

	nsCases := []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"bad inject value", map[string]string{inject.AnnotationInject: "yes"}, "weft.dev/inject"},
		{"bad memory", map[string]string{inject.AnnotationProxyMemoryRequest: "lots"}, "config.weft.dev/proxy-memory-request"},
		{"bad subnet", map[string]string{inject.AnnotationSkipSubnets: "10.0.0.0/33"}, "config.weft.dev/skip-subnets"},
		{"namespace-chosen init image", map[string]string{inject.AnnotationInitImage: "evil.example/root:1"}, "pods may not choose the weft-init image"},
	}
	for _, tc := range nsCases {
		t.Run("namespace/"+tc.name, func(t *testing.T) {
			target := namespace(t, nil, nil)
			target.Annotations = tc.annotations
			err := env.Client.Update(ctx(t), target)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("updating the namespace: error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// warningClient records the API server's warnings (admission warnings arrive as
// HTTP Warning headers).
func warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

type warnings struct {
	sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.Lock()
	defer w.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.Lock()
	defer w.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func profile(ns, name string, routes ...meshv1alpha1.RouteSpec) *meshv1alpha1.ServiceProfile {
	return &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1alpha1.ServiceProfileSpec{Routes: routes}}
}

func route(name, re string) meshv1alpha1.RouteSpec {
	return meshv1alpha1.RouteSpec{Name: name, Condition: meshv1alpha1.RequestMatch{PathRegex: re}}
}

func TestServiceProfileValidation(t *testing.T) {
	ns := namespace(t, nil, nil)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if err := env.Client.Create(ctx(t), svc); err != nil {
		t.Fatal(err)
	}
	c, w := warningClient(t)
	nested := route("nested", "")
	nested.Condition = meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{{Method: "GET"},
		{Any: []meshv1alpha1.RequestMatch{{PathRegex: "/ok"}, {PathRegex: "/bad/[z-a]"}}}}}

	cases := []struct {
		name    string
		sp      *meshv1alpha1.ServiceProfile
		wantErr string
		warn    string
	}{
		{"service FQDN of an existing Service", profile(ns.Name, "web."+ns.Name+".svc.cluster.local", route("books", "/books/[^/]*")), "", ""},
		{"external DNS name", profile(ns.Name, "api.example.com", route("all", "/.*")), "", ""},
		{"missing Service is only a warning", profile(ns.Name, "later."+ns.Name+".svc.cluster.local"), "", "does not exist"},
		{"too many labels before .svc", profile(ns.Name, "a.web."+ns.Name+".svc.cluster.local"), "metadata.name", ""},
		{"svc without the cluster domain", profile(ns.Name, "web."+ns.Name+".svc"), "metadata.name", ""},
		{"pathRegex that does not compile", profile(ns.Name, "web2."+ns.Name+".svc.cluster.local", route("r", "/books/(")), "spec.routes[0].condition.pathRegex", ""},
		{"dstOverride to a missing Service is only a warning", withOverride(profile(ns.Name, "web4."+ns.Name+".svc.cluster.local"), "web-v2."+ns.Name+".svc.cluster.local:80"), "", "spec.dstOverrides[0].authority"},
		{"dstOverride with a bad port", withOverride(profile(ns.Name, "web5."+ns.Name+".svc.cluster.local"), "web-v2:http"), "spec.dstOverrides[0].authority", ""},
		{"nested pathRegex that does not compile", profile(ns.Name, "web3."+ns.Name+".svc.cluster.local", nested), "spec.routes[0].condition.all[1].any[1].pathRegex", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.take()
			err := c.Create(ctx(t), tc.sp)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one naming %s", err, tc.wantErr)
			}
			got := strings.Join(w.take(), "\n")
			if tc.warn != "" && !strings.Contains(got, tc.warn) {
				t.Errorf("warnings = %q, want %q", got, tc.warn)
			}
			if tc.warn == "" && got != "" {
				t.Errorf("unexpected warnings %q", got)
			}
		})
	}
}

func TestTrafficSplitValidation(t *testing.T) {
	ns := namespace(t, nil, nil)
	c, w := warningClient(t)
	split := func(name, service string, backends ...string) *splitv1alpha2.TrafficSplit {
		ts := &splitv1alpha2.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: splitv1alpha2.TrafficSplitSpec{Service: service}}
		for _, b := range backends {
			ts.Spec.Backends = append(ts.Spec.Backends, splitv1alpha2.TrafficSplitBackend{Service: b, Weight: 50})
		}
		return ts
	}
	first := split("web-canary", "web", "web-v1", "web-v2")
	if err := c.Create(ctx(t), first); err != nil {
		t.Fatalf("first split rejected: %v", err)
	}
	if got := strings.Join(w.take(), "\n"); !strings.Contains(got, "Service "+ns.Name+"/web does not exist") || !strings.Contains(got, "web-v2") {
		t.Errorf("warnings = %q, want the missing root and backend Services named", got)
	}

	err := c.Create(ctx(t), split("web-other", "web", "web-v3"))
	if err == nil || !strings.Contains(err.Error(), "spec.service") || !strings.Contains(err.Error(), "web-canary") {
		t.Fatalf("conflicting split: error %v, want one naming spec.service and web-canary", err)
	}
	// Updating the first split is not a conflict with itself.
	first.Spec.Backends[1].Weight = 10
	if err := c.Update(ctx(t), first); err != nil {
		t.Fatalf("updating the split: %v", err)
	}
	// Another root Service is fine.
	if err := c.Create(ctx(t), split("api-canary", "api", "api-v1")); err != nil {
		t.Fatalf("split of another Service rejected: %v", err)
	}
}

// createEmptyMesh creates the Mesh with an empty spec, so that the API server fills in
// every default (a typed Mesh would send zero durations), and returns it as stored.
func createEmptyMesh(t *testing.T) *meshv1alpha1.Mesh {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(),
		"kind":       "Mesh",
		"metadata":   map[string]any{"name": meshv1alpha1.MeshName},
	}}
	if err := env.Client.Create(ctx(t), u); err != nil {
		t.Fatalf("creating the Mesh: %v", err)
	}
	mesh := &meshv1alpha1.Mesh{}
	if err := env.Client.Get(ctx(t), client.ObjectKey{Name: meshv1alpha1.MeshName}, mesh); err != nil {
		t.Fatalf("reading the Mesh: %v", err)
	}
	return mesh
}

func withOverride(sp *meshv1alpha1.ServiceProfile, authority string) *meshv1alpha1.ServiceProfile {
	sp.Spec.DstOverrides = []meshv1alpha1.WeightedDst{{Authority: authority, Weight: resource.MustParse("1")}}
	return sp
}

// A workload whose pod template carries a malformed annotation is rejected when it is
// written, naming the annotation under the template's path.
func TestWorkloadValidation(t *testing.T) {
	ns := namespace(t, nil, nil)
	deployment := func(name string, annotations, labels map[string]string) *appsv1.Deployment {
		sel := map[string]string{"app": name}
		tplLabels := map[string]string{"app": name}
		for k, v := range labels {
			tplLabels[k] = v
		}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tplLabels, Annotations: annotations},
					Spec: appPod("", "", nil, nil).Spec}}}
	}
	cases := []struct {
		name string
		obj  client.Object
		want string
	}{
		{"valid", deployment("ok", map[string]string{inject.AnnotationLogLevel: "debug"}, nil), ""},
		{"bad annotation", deployment("bad", map[string]string{inject.AnnotationProxyUID: "root"}, nil),
			"spec.template.metadata.annotations[config.weft.dev/proxy-uid]"},
		{"bad inject label", deployment("bad-label", nil, map[string]string{inject.AnnotationInject: "on"}),
			"spec.template.metadata.labels[weft.dev/inject]"},
		{"cronjob", &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "nightly"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inject.AnnotationDetectTimeout: "1h"}},
					Spec: func() corev1.PodSpec {
						s := appPod("", "", nil, nil).Spec
						s.RestartPolicy = corev1.RestartPolicyNever
						return s
					}()}}}}},
			"spec.jobTemplate.spec.template.metadata.annotations[config.weft.dev/detect-timeout]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := env.Client.Create(ctx(t), tc.obj)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// Without a Mesh the injector uses the built-in defaults and says so in a warning.
func TestNoMeshWarns(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m meshv1alpha1.Mesh
		err := env.Cached.Get(ctx(t), client.ObjectKey{Name: meshv1alpha1.MeshName}, &m)
		if apierrors.IsNotFound(err) {
			break
		}
		if err == nil {
			_ = env.Client.Delete(ctx(t), &m)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Mesh is still there: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	c, w := warningClient(t)
	p := appPod(ns.Name, "no-mesh", nil, nil)
	if err := c.Create(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	assertInjected(t, p)
	if got := strings.Join(w.take(), "\n"); !strings.Contains(got, "no Mesh named default") {
		t.Errorf("warnings = %q, want one saying no Mesh exists", got)
	}
}

// The label follows the annotation: set when it is set, removed when it is removed; a
// label set by hand is left alone.
func TestNamespaceLabelFollowsAnnotation(t *testing.T) {
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	steps := []struct {
		name        string
		annotations map[string]string
		labels      map[string]string
		wantLabel   string // "" means absent
	}{
		{"annotation switched to disabled", map[string]string{inject.AnnotationInject: inject.InjectDisabled}, nil, inject.InjectDisabled},
		{"annotation removed", map[string]string{}, nil, ""},
		{"label set by hand without annotation", nil, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, inject.InjectEnabled},
		{"unrelated update keeps the hand-set label", map[string]string{"team": "shop"}, nil, inject.InjectEnabled},
	}
	for _, st := range steps {
		if st.annotations != nil {
			ns.Annotations = st.annotations
		}
		if st.labels != nil {
			for k, v := range st.labels {
				ns.Labels[k] = v
			}
		}
		if err := env.Client.Update(ctx(t), ns); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := ns.Labels[inject.AnnotationInject]; got != st.wantLabel {
			t.Errorf("%s: label = %q, want %q", st.name, got, st.wantLabel)
		}
	}
}

// TestProxyUIDRefused: the API server refuses, through the injector, a pod whose app
// container runs as the proxy's UID (its traffic would bypass the proxy), with a
// message that names the field and says what to do.
func TestProxyUIDRefused(t *testing.T) {
	ns := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, nil)
	uid := int64(2102)
	p := appPod(ns.Name, "as-proxy", nil, nil)
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
	err := env.Client.Create(ctx(t), p)
	if err == nil {
		t.Fatal("a pod whose app runs as the proxy's UID was admitted")
	}
	for _, w := range []string{"spec.containers[0].securityContext.runAsUser", "the proxy's UID", "config.weft.dev/proxy-uid"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	p = appPod(ns.Name, "as-pod-uid", nil, nil)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
	if err := env.Client.Create(ctx(t), p); err == nil || !strings.Contains(err.Error(), "spec.securityContext.runAsUser") {
		t.Errorf("pod-level runAsUser 2102: error %v, want a refusal naming spec.securityContext.runAsUser", err)
	}
}
