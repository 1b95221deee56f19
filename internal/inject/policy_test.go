package inject

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

func httpProbe(path string, port intstr.IntOrString) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port}}}
}

func TestProbePaths(t *testing.T) {
	app := func(mod func(c *corev1.Container)) corev1.Container {
		c := corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9000}}}
		mod(&c)
		return c
	}
	cases := []struct {
		name        string
		spec        corev1.PodSpec
		want        string
		wantSkipped []string
	}{
		{"no probes", corev1.PodSpec{Containers: []corev1.Container{app(func(*corev1.Container) {})}}, "", nil},
		{"named and numbered, sorted, deduplicated, query dropped, slash added", corev1.PodSpec{Containers: []corev1.Container{app(func(c *corev1.Container) {
			c.LivenessProbe = httpProbe("/live?full=1", intstr.FromString("admin"))
			c.ReadinessProbe = httpProbe("ready", intstr.FromInt32(8080))
			c.StartupProbe = httpProbe("/ready", intstr.FromString("http"))
		})}}, "8080:/ready,9000:/live", nil},
		{"empty path is /", corev1.PodSpec{Containers: []corev1.Container{app(func(c *corev1.Container) {
			c.ReadinessProbe = httpProbe("", intstr.FromInt32(8080))
		})}}, "8080:/", nil},
		{"native sidecar probed, plain init container not", corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "migrate", ReadinessProbe: httpProbe("/never", intstr.FromInt32(7000))},
				{Name: "sidecar", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), ReadinessProbe: httpProbe("/side", intstr.FromInt32(7001))},
			},
		}, "7001:/side", nil},
		{"skipped with reasons", corev1.PodSpec{Containers: []corev1.Container{app(func(c *corev1.Container) {
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/tls", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS}}}
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromInt32(80), Host: "example.com"}}}
			c.StartupProbe = httpProbe("/a,b", intstr.FromInt32(8080))
		}), {Name: "other", ReadinessProbe: httpProbe("/r", intstr.FromString("nope"))}}},
			"", []string{"uses HTTPS", "another host (example.com)", `path "/a,b"`, "names port nope"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := ProbePaths(&tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ProbePaths = %q, want %q", got, tc.want)
			}
			if len(skipped) != len(tc.wantSkipped) {
				t.Fatalf("skipped = %q, want %d entries", skipped, len(tc.wantSkipped))
			}
			for i, w := range tc.wantSkipped {
				if !strings.Contains(skipped[i], w) {
					t.Errorf("skipped[%d] = %q, want it to contain %q", i, skipped[i], w)
				}
			}
		})
	}
}

// A pod with more probe paths than the proxy takes is refused, not given a proxy that
// would deny the probes past the bound.
func TestProbePathsBounded(t *testing.T) {
	var cs []corev1.Container
	for i := range maxProbePaths + 1 {
		cs = append(cs, corev1.Container{Name: fmt.Sprintf("c%d", i), ReadinessProbe: httpProbe(fmt.Sprintf("/p%d", i), intstr.FromInt32(8080))})
	}
	if _, _, err := ProbePaths(&corev1.PodSpec{Containers: cs}); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("error = %v, want one naming the bound", err)
	}
	long := []corev1.Container{{Name: "c", ReadinessProbe: httpProbe("/"+strings.Repeat("a", maxProbePathsBytes), intstr.FromInt32(8080))}}
	if _, _, err := ProbePaths(&corev1.PodSpec{Containers: long}); err == nil {
		t.Error("a probe path over the byte bound was accepted")
	}
}

func TestDefaultInboundPolicyWarnings(t *testing.T) {
	floor := meshv1alpha1.ProxySpec{DefaultInboundPolicy: meshv1alpha1.InboundAllUnauthenticated, InboundPolicyFloor: meshv1alpha1.InboundClusterUnauthenticated}
	cases := []struct {
		name      string
		proxy     meshv1alpha1.ProxySpec
		ns, pod   string
		wantEnv   meshv1alpha1.InboundPolicy
		wantWarns []string
	}{
		{"mesh default, no floor", meshv1alpha1.ProxySpec{}, "", "", meshv1alpha1.InboundAllUnauthenticated, nil},
		{"every value accepted: audit", meshv1alpha1.ProxySpec{}, "", "audit", meshv1alpha1.InboundAudit, nil},
		{"namespace value applies", meshv1alpha1.ProxySpec{}, "cluster-authenticated", "", meshv1alpha1.InboundClusterAuthenticated, nil},
		{"floor narrows the mesh default", floor, "", "", meshv1alpha1.InboundClusterUnauthenticated, []string{"chosen by the mesh", "inboundPolicyFloor=cluster-unauthenticated"}},
		{"floor narrows audit", floor, "", "audit", meshv1alpha1.InboundClusterUnauthenticated, []string{"audit (chosen by the pod)"}},
		{"invalid namespace and pod values", meshv1alpha1.ProxySpec{}, "nope", "open", meshv1alpha1.InboundAllUnauthenticated,
			[]string{`namespace shop's annotation config.weft.dev/default-inbound-policy="nope"`, `pod's annotation config.weft.dev/default-inbound-policy="open"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := map[string]string{AnnotationDefaultInboundPolicy: tc.ns}
			pod := map[string]string{AnnotationDefaultInboundPolicy: tc.pod}
			if got := DefaultInboundPolicy(tc.proxy, ns, pod).Policy.Name(); got != tc.wantEnv {
				t.Errorf("policy = %s, want %s", got, tc.wantEnv)
			}
			warns := DefaultInboundPolicyWarnings(tc.proxy, "shop", ns, pod)
			if (len(warns) == 0) != (len(tc.wantWarns) == 0) {
				t.Fatalf("warnings = %q, want ones containing %q", warns, tc.wantWarns)
			}
			all := strings.Join(warns, "\n")
			for _, w := range tc.wantWarns {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q lack %q", warns, w)
				}
			}
		})
	}
}
