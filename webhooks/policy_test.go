package webhooks_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
)

// TestDefaultInboundPolicyThroughTheInjector: through a real API server, the injector
// decides the pod's default inbound policy from the namespace's and the pod's
// annotations within the Mesh's floor, says so in admission warnings when the floor
// narrowed the choice or an annotation named no policy, and hands the proxy the Mesh's
// cluster networks and the pod's probe paths.
func TestDefaultInboundPolicyThroughTheInjector(t *testing.T) {
	mesh := createEmptyMesh(t)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mesh) })
	mesh.Spec.Proxy.InboundPolicyFloor = meshv1alpha1.InboundAllAuthenticated
	mesh.Spec.ClusterNetworks = []string{"10.0.0.0/8", "fd00::/8"}
	if err := env.Client.Update(ctx(t), mesh); err != nil {
		t.Fatalf("updating the Mesh: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen meshv1alpha1.Mesh
		if err := env.Cached.Get(ctx(t), client.ObjectKeyFromObject(mesh), &seen); err == nil && seen.Spec.Proxy.InboundPolicyFloor != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the manager's cache never saw the updated Mesh")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// cluster-unauthenticated on a namespace: one of the values the injector did not
	// accept before, so the namespace webhook must let it through now.
	ns := namespace(t, map[string]string{
		inject.AnnotationInject:               inject.InjectEnabled,
		inject.AnnotationDefaultInboundPolicy: string(meshv1alpha1.InboundClusterUnauthenticated),
	}, nil)

	probed := appPod(ns.Name, "probed", nil, nil)
	probed.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}}
	probed.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/live?verbose=1", Port: intstr.FromInt32(8081)}}}

	cases := []struct {
		name        string
		pod         *corev1.Pod
		wantPolicy  string
		wantProbes  string
		wantWarning []string
	}{
		{"namespace's choice narrowed by the floor", appPod(ns.Name, "narrowed", nil, nil),
			"cluster-authenticated", "", []string{"inboundPolicyFloor=all-authenticated", "enforces cluster-authenticated"}},
		{"pod's invalid value ignored", appPod(ns.Name, "invalid", map[string]string{inject.AnnotationDefaultInboundPolicy: "open-sesame"}, nil),
			"cluster-authenticated", "", []string{`config.weft.dev/default-inbound-policy="open-sesame" is not an inbound policy`}},
		{"pod's deny needs no narrowing", appPod(ns.Name, "deny", map[string]string{inject.AnnotationDefaultInboundPolicy: "deny"}, nil),
			"deny", "", nil},
		{"probe paths with named ports resolved", probed,
			"cluster-authenticated", "8080:/healthz,8081:/live", []string{"inboundPolicyFloor"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, w := warningClient(t)
			if err := c.Create(ctx(t), tc.pod); err != nil {
				t.Fatal(err)
			}
			assertInjected(t, tc.pod)
			proxy := container(t, tc.pod, inject.ProxyContainerName)
			for name, want := range map[string]string{
				"WEFT_DEFAULT_INBOUND_POLICY": tc.wantPolicy,
				"WEFT_CLUSTER_NETWORKS":       "10.0.0.0/8,fd00::/8",
				"WEFT_INBOUND_PROBE_PATHS":    tc.wantProbes,
			} {
				if got := envValue(proxy, name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			got := strings.Join(w.take(), "\n")
			for _, want := range tc.wantWarning {
				if !strings.Contains(got, want) {
					t.Errorf("warnings = %q, want one containing %q", got, want)
				}
			}
			if len(tc.wantWarning) == 0 && got != "" {
				t.Errorf("unexpected warnings %q", got)
			}
		})
	}
}
