package inject_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

func template(annotations, labels map[string]string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: annotations, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
}

func enabledNS(name string) inject.Namespace {
	return inject.Namespace{Name: name, Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}
}

func TestDecide(t *testing.T) {
	injected := template(nil, nil)
	if errs := inject.Inject(injected, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	hostNet := template(nil, nil)
	hostNet.Spec.HostNetwork = true
	on := map[string]string{inject.AnnotationInject: inject.InjectEnabled}
	off := map[string]string{inject.AnnotationInject: inject.InjectDisabled}

	cases := []struct {
		name   string
		tpl    *corev1.PodTemplateSpec
		ns     inject.Namespace
		want   bool
		reason string
	}{
		{"namespace annotated", template(nil, nil), enabledNS("shop"), true, "namespace"},
		{"namespace labelled", template(nil, nil), inject.Namespace{Name: "shop", Labels: on}, true, "namespace"},
		{"plain namespace", template(nil, nil), inject.Namespace{Name: "shop"}, false, "neither"},
		{"namespace disabled", template(nil, nil), inject.Namespace{Name: "shop", Annotations: off}, false, "neither"},
		{"pod annotation disabled wins", template(off, nil), enabledNS("shop"), false, "disabled"},
		{"pod label disabled wins", template(nil, off), enabledNS("shop"), false, "disabled"},
		{"pod annotation wins over pod label", template(on, off), inject.Namespace{Name: "shop"}, true, "pod"},
		{"pod enabled in a disabled namespace", template(on, nil), inject.Namespace{Name: "shop", Annotations: off}, true, "pod"},
		{"host network", hostNet, enabledNS("shop"), false, "host network"},
		{"control-plane namespace", template(on, nil), enabledNS("weft-system"), false, "control-plane"},
		{"custom control-plane namespace is plain elsewhere", template(nil, nil), enabledNS("weft-system-2"), true, "namespace"},
		{"already injected", injected, enabledNS("shop"), false, "already injected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := inject.Decide(tc.tpl, tc.ns, inject.Env{})
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("Decide = %v, %q; want %v and a reason mentioning %q", got, reason, tc.want, tc.reason)
			}
		})
	}
}

func proxyOf(t *testing.T, tpl *corev1.PodTemplateSpec) (corev1.Container, corev1.Container) {
	t.Helper()
	if len(tpl.Spec.InitContainers) < 2 {
		t.Fatalf("init containers: %v", tpl.Spec.InitContainers)
	}
	return tpl.Spec.InitContainers[0], tpl.Spec.InitContainers[1]
}

func arg(c corev1.Container, flag string) string {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return "<unset>"
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return "<unset>"
}

func TestAnnotationsShapeTheProxy(t *testing.T) {
	cases := []struct {
		name  string
		ns    map[string]string
		pod   map[string]string
		check func(t *testing.T, initc, proxy corev1.Container)
	}{
		{"defaults", nil, nil, func(t *testing.T, initc, proxy corev1.Container) {
			// Only the proxy's admin and tap ports: a skipped port without the proxy
			// behind it is a side door past policy.
			if got := arg(initc, "--skip-inbound-ports"); got != "4191,4190" {
				t.Errorf("skip inbound = %q, want only the admin and tap ports 4191,4190", got)
			}
			// The tap server answers the control plane's tap identity only, in the
			// Mesh's trust domain and the control plane's namespace.
			if got, want := env(proxy, "WEFT_TAP_IDENTITY"), meshdefaults.TapIdentity(inject.DefaultMeshSpec().TrustDomain, meshdefaults.ControlPlaneNamespace); got != want {
				t.Errorf("WEFT_TAP_IDENTITY = %q, want %q", got, want)
			}
			if !slices.ContainsFunc(proxy.Ports, func(p corev1.ContainerPort) bool { return p.Name == "weft-tap" && p.ContainerPort == 4190 }) {
				t.Errorf("proxy ports %v, want weft-tap 4190", proxy.Ports)
			}
			if got := arg(proxy, "--identity-renew-at-percent"); got != "70" {
				t.Errorf("--identity-renew-at-percent = %q, want the Mesh default 70", got)
			}
			if got := arg(initc, "--skip-outbound-ports"); got != "<unset>" {
				t.Errorf("skip outbound = %q", got)
			}
			if got := env(proxy, "WEFT_OPAQUE_PORTS"); got != "25,587,3306,4444,5432,6379,9300,11211" {
				t.Errorf("opaque = %q", got)
			}
		}},
		{"pod wins over namespace", map[string]string{inject.AnnotationLogLevel: "warn", inject.AnnotationDetectTimeout: "3s"},
			map[string]string{inject.AnnotationLogLevel: "error"}, func(t *testing.T, _, proxy corev1.Container) {
				if got := arg(proxy, "--log-level"); got != "error" {
					t.Errorf("log level = %q", got)
				}
				if got := env(proxy, "WEFT_DETECT_TIMEOUT"); got != "3s" {
					t.Errorf("detect timeout = %q (from the namespace)", got)
				}
			}},
		{"ports move everywhere", nil, map[string]string{inject.AnnotationInboundPort: "5143", inject.AnnotationAdminPort: "5191",
			inject.AnnotationOutboundPort: "5140"}, func(t *testing.T, initc, proxy corev1.Container) {
			if arg(initc, "--inbound-port") != "5143" || arg(initc, "--outbound-port") != "5140" || arg(initc, "--skip-inbound-ports") != "5191,4190" {
				t.Errorf("weft-init args = %v", initc.Args)
			}
			if arg(proxy, "--admin-port") != "5191" || proxy.StartupProbe.HTTPGet.Port.IntValue() != 5191 {
				t.Errorf("proxy args %v, startup probe port %v", proxy.Args, proxy.StartupProbe.HTTPGet.Port)
			}
		}},
		{"skip ports covered by a range are not repeated", nil, map[string]string{inject.AnnotationSkipInboundPorts: "4000-4200,22"},
			func(t *testing.T, initc, _ corev1.Container) {
				if got := arg(initc, "--skip-inbound-ports"); got != "4000-4200,22" {
					t.Errorf("skip inbound = %q", got)
				}
			}},
		{"mesh TLS mode: the Mesh's default", nil, nil, func(t *testing.T, _, proxy corev1.Container) {
			if got := env(proxy, "WEFT_MESH_TLS_MODE"); got != "Opportunistic" {
				t.Errorf("WEFT_MESH_TLS_MODE = %q, want the Mesh default Opportunistic", got)
			}
		}},
		{"mesh TLS mode from the namespace", map[string]string{inject.AnnotationMeshTLSMode: "Strict"}, nil, func(t *testing.T, _, proxy corev1.Container) {
			if got := env(proxy, "WEFT_MESH_TLS_MODE"); got != "Strict" {
				t.Errorf("WEFT_MESH_TLS_MODE = %q, want the namespace's Strict", got)
			}
		}},
		{"mesh TLS mode from the pod", map[string]string{inject.AnnotationMeshTLSMode: "Strict"}, map[string]string{inject.AnnotationMeshTLSMode: "Opportunistic"},
			func(t *testing.T, _, proxy corev1.Container) {
				if got := env(proxy, "WEFT_MESH_TLS_MODE"); got != "Opportunistic" {
					t.Errorf("WEFT_MESH_TLS_MODE = %q, want the pod's Opportunistic", got)
				}
			}},
		{"empty opaque ports clear the Mesh's", nil, map[string]string{inject.AnnotationOpaquePorts: ""},
			func(t *testing.T, _, proxy corev1.Container) {
				if got := env(proxy, "WEFT_OPAQUE_PORTS"); got != "" {
					t.Errorf("opaque = %q", got)
				}
			}},
		{"resources", nil, map[string]string{inject.AnnotationProxyCPURequest: "50m", inject.AnnotationProxyCPULimit: "1"},
			func(t *testing.T, _, proxy corev1.Container) {
				r := proxy.Resources
				if r.Requests.Cpu().String() != "50m" || r.Limits.Cpu().String() != "1" || r.Limits.Memory().String() != "250Mi" {
					t.Errorf("resources = %+v", r)
				}
			}},
		{"trust domain and identity", nil, nil, func(t *testing.T, _, proxy corev1.Container) {
			if got := env(proxy, "WEFT_IDENTITY_LOCAL_NAME"); got != "spiffe://cluster.local/ns/$(POD_NAMESPACE)/sa/$(SERVICE_ACCOUNT)" {
				t.Errorf("local name = %q", got)
			}
			if got := env(proxy, "WEFT_IDENTITY_TOKEN_FILE"); got != "/var/run/weft/identity/token" {
				t.Errorf("token file = %q", got)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.pod, nil)
			ns := inject.Namespace{Name: "shop", Annotations: tc.ns}
			if errs := inject.Inject(tpl, ns, inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
				t.Fatal(errs)
			}
			initc, proxy := proxyOf(t, tpl)
			tc.check(t, initc, proxy)
		})
	}
}

func TestInjectErrorsNameTheAnnotation(t *testing.T) {
	cases := []struct {
		name string
		ns   map[string]string
		pod  map[string]string
		port int32
		want []string
	}{
		{"bad uid", nil, map[string]string{inject.AnnotationProxyUID: "-1"}, 0, []string{`metadata.annotations[config.weft.dev/proxy-uid]`}},
		{"bad namespace value names the namespace", map[string]string{inject.AnnotationLogLevel: "loud"}, nil, 0,
			[]string{`namespace shop.metadata.annotations[config.weft.dev/log-level]`}},
		{"unknown knob lists the known ones", nil, map[string]string{"config.weft.dev/nope": "1"}, 0, []string{"config.weft.dev/nope", "config.weft.dev/log-level"}},
		{"request above limit", nil, map[string]string{inject.AnnotationProxyMemoryRequest: "1Gi"}, 0, []string{"config.weft.dev/proxy-memory-request", "limit"}},
		{"out-of-range timeout", nil, map[string]string{inject.AnnotationConnectTimeout: "5m"}, 0, []string{"config.weft.dev/connect-timeout"}},
		{"app port clashes with the proxy", nil, nil, 4143, []string{"spec.containers[0].ports[1].containerPort"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.pod, nil)
			if tc.port != 0 {
				tpl.Spec.Containers[0].Ports = append(tpl.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: tc.port})
			}
			before := tpl.DeepCopy()
			errs := inject.Inject(tpl, inject.Namespace{Name: "shop", Annotations: tc.ns}, inject.DefaultMeshSpec(), inject.Env{})
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			msg := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if !apiequality.Semantic.DeepEqual(before, tpl) {
				t.Error("a failed injection changed the template")
			}
		})
	}
}

func TestValidateAnnotations(t *testing.T) {
	cases := []struct {
		name string
		ann  map[string]string
		want int
	}{
		{"none", nil, 0},
		{"valid", map[string]string{inject.AnnotationInject: "enabled", inject.AnnotationSkipSubnets: "10.0.0.0/8,fd00::/8"}, 0},
		{"unrelated annotations are ignored", map[string]string{"example.com/x": "y"}, 0},
		{"bad inject value", map[string]string{inject.AnnotationInject: "true"}, 1},
		{"two bad knobs", map[string]string{inject.AnnotationImagePullPolicy: "Sometimes", inject.AnnotationAdminPort: "70000"}, 2},
		{"image annotations are refused", map[string]string{inject.AnnotationProxyImage: "x:1", inject.AnnotationInitImage: "x:1"}, 2},
		{"tap port is refused", map[string]string{inject.AnnotationTapPort: "4190"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := inject.ValidateAnnotations(tc.ann, field.NewPath("metadata", "annotations"))
			if len(errs) != tc.want {
				t.Errorf("%d errors (%v), want %d", len(errs), errs, tc.want)
			}
		})
	}
}

func TestInjectIsIdempotentAndUninjectRestores(t *testing.T) {
	tpl := template(map[string]string{"keep": "me"}, map[string]string{"app": "web"})
	tpl.Spec.ServiceAccountName = "web"
	tpl.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m:1"}}
	tpl.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	original := tpl.DeepCopy()

	if errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	var names []string
	for _, c := range tpl.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"weft-init", "weft-proxy", "migrate"}) {
		t.Errorf("init containers = %v", names)
	}
	var st inject.Status
	if err := json.Unmarshal([]byte(tpl.Annotations[inject.AnnotationInjected]), &st); err != nil || st.ProxyVersion != "dev" || st.ProxyImage != "weft-proxy:dev" {
		t.Errorf("status annotation %q: %v", tpl.Annotations[inject.AnnotationInjected], err)
	}
	once := tpl.DeepCopy()
	if errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 || !apiequality.Semantic.DeepEqual(once, tpl) {
		t.Errorf("a second injection changed the template (%v)", errs)
	}
	if !inject.Uninject(tpl) {
		t.Fatal("Uninject found nothing")
	}
	if !apiequality.Semantic.DeepEqual(original, tpl) {
		t.Errorf("uninjection did not restore the template:\n got %+v\nwant %+v", tpl, original)
	}
	if inject.Uninject(tpl) {
		t.Error("a second Uninject reported a change")
	}
}

func TestImageVersion(t *testing.T) {
	cases := map[string]string{
		"weft-proxy:dev":                            "dev",
		"registry.example:5000/weft/proxy:1.2.3":    "1.2.3",
		"registry.example:5000/weft/proxy":          "latest",
		"weft-proxy@sha256:0123abcd":                "sha256:0123abcd",
		"registry.example/weft-proxy:1.0@sha256:ab": "sha256:ab",
	}
	for image, want := range cases {
		if got := inject.ImageVersion(image); got != want {
			t.Errorf("ImageVersion(%q) = %q, want %q", image, got, want)
		}
	}
}

// TestPodsCannotChooseImages: the images of the injected containers come from the Mesh
// only. Before, config.weft.dev/init-image let any pod author run any image as root
// with NET_ADMIN and NET_RAW.
func TestPodsCannotChooseImages(t *testing.T) {
	cases := []struct {
		name    string
		ns, pod map[string]string
		want    string
	}{
		{"pod init-image", nil, map[string]string{inject.AnnotationInitImage: "evil.example/root:1"},
			"metadata.annotations[config.weft.dev/init-image]: Forbidden: pods may not choose the weft-init image"},
		{"pod proxy-image", nil, map[string]string{inject.AnnotationProxyImage: "evil.example/proxy:1"},
			"metadata.annotations[config.weft.dev/proxy-image]: Forbidden: pods may not choose the proxy image"},
		{"namespace init-image", map[string]string{inject.AnnotationInitImage: "evil.example/root:1"}, nil,
			"namespace shop.metadata.annotations[config.weft.dev/init-image]: Forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.pod, nil)
			errs := inject.Inject(tpl, inject.Namespace{Name: "shop", Annotations: tc.ns}, inject.DefaultMeshSpec(), inject.Env{})
			if msg := errs.ToAggregate(); msg == nil || !strings.Contains(msg.Error(), tc.want) || !strings.Contains(msg.Error(), "spec.proxy") {
				t.Fatalf("errors %v, want one containing %q and naming the Mesh field", msg, tc.want)
			}
			if inject.IsInjected(tpl) {
				t.Fatal("injected with a pod-chosen image annotation")
			}
		})
	}
}

// TestProxyUIDIsRefused: an app container running as the proxy's UID would have its
// outbound traffic exempted from redirection (iptables --uid-owner), bypassing the
// proxy. Such pods are refused, naming the field and what to do.
func TestProxyUIDIsRefused(t *testing.T) {
	uid := func(n int64) *int64 { return &n }
	cases := []struct {
		name   string
		ann    map[string]string
		mutate func(*corev1.PodSpec)
		want   string // "" means injected
	}{
		{"container runAsUser 2102", nil, func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: uid(2102)}
		}, "spec.containers[0].securityContext.runAsUser: Forbidden: the container runs as UID 2102, the proxy's UID"},
		{"pod runAsUser 2102 inherited", nil, func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{RunAsUser: uid(2102)}
		}, `spec.securityContext.runAsUser: Forbidden: container(s) app inherit it`},
		{"init container runAsUser 2102", nil, func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "migrate", Image: "m:1", SecurityContext: &corev1.SecurityContext{RunAsUser: uid(2102)}}}
		}, "spec.initContainers[0].securityContext.runAsUser: Forbidden"},
		{"proxy UID moved onto the app's", map[string]string{inject.AnnotationProxyUID: "1000"}, func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: uid(1000)}
		}, "runs as UID 1000, the proxy's UID"},
		{"pod 2102 overridden by the container", nil, func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{RunAsUser: uid(2102)}
			s.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: uid(1000)}
		}, ""},
		{"other UID", nil, func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{RunAsUser: uid(1000)}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.ann, nil)
			tc.mutate(&tpl.Spec)
			errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{})
			if tc.want == "" {
				if len(errs) > 0 || !inject.IsInjected(tpl) {
					t.Fatalf("not injected: %v", errs)
				}
				return
			}
			msg := errs.ToAggregate()
			if msg == nil || !strings.Contains(msg.Error(), tc.want) || !strings.Contains(msg.Error(), "config.weft.dev/proxy-uid") {
				t.Fatalf("errors %v, want one containing %q and saying what to do", msg, tc.want)
			}
			if inject.IsInjected(tpl) {
				t.Fatal("a refused pod was injected")
			}
		})
	}
}

// TestRenewAtPercentReachesTheProxy: the Mesh's spec.identity.workload.renewAtPercent
// becomes the proxy's --identity-renew-at-percent (it used to be accepted and ignored).
func TestRenewAtPercentReachesTheProxy(t *testing.T) {
	mesh := inject.DefaultMeshSpec()
	mesh.Identity.Workload.RenewAtPercent = 55
	tpl := template(nil, nil)
	if errs := inject.Inject(tpl, enabledNS("shop"), mesh, inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, proxy := proxyOf(t, tpl); arg(proxy, "--identity-renew-at-percent") != "55" {
		t.Errorf("proxy args %v lack --identity-renew-at-percent=55", proxy.Args)
	}
}
