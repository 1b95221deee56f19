package webhooks_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

// installPodSecurity applies config/podsecurity (the ValidatingAdmissionPolicy and its
// bindings, as config/default ships them) and removes it when the test ends, waiting
// until the API server no longer enforces it so later tests see the cluster as before.
func installPodSecurity(t *testing.T, probe func() error) {
	t.Helper()
	objs, err := testenv.Kustomize(filepath.Join("config", "podsecurity"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("config/podsecurity has %d objects, want the policy and two bindings", len(objs))
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx(t), o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, o := range objs {
			_ = env.Client.Delete(c, o)
		}
		// The API server drops a deleted policy asynchronously.
		for probe() != nil && c.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestPodSecurityBaselineWithWeftInit runs config/podsecurity's policy in a real API
// server, behind the injector: in a meshed namespace only weft-init with the Mesh's image
// may add NET_ADMIN and NET_RAW; an app container adding NET_ADMIN, or a pod's own
// "weft-init" with another image, is refused, and an injected pod is admitted.
func TestPodSecurityBaselineWithWeftInit(t *testing.T) {
	mesh := createEmptyMesh(t)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mesh) })
	meshed := namespace(t, map[string]string{inject.AnnotationInject: inject.InjectEnabled}, map[string]string{inject.AnnotationInject: inject.InjectEnabled})
	optOut := namespace(t, nil, map[string]string{inject.AnnotationInject: inject.InjectEnabled, "weft.dev/pod-security": "privileged"})
	plain := namespace(t, nil, nil)

	addCaps := func(p *corev1.Pod, caps ...corev1.Capability) *corev1.Pod {
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: caps}}
		return p
	}
	seq := 0
	dryRun := func(p *corev1.Pod) error {
		seq++
		p.Name = fmt.Sprintf("%s-%d", p.Name, seq)
		return env.Client.Create(ctx(t), p, client.DryRunAll)
	}
	netAdminApp := func() error { return dryRun(addCaps(appPod(meshed.Name, "net-admin-app", nil, nil), "NET_ADMIN")) }
	installPodSecurity(t, netAdminApp)
	// Policies take effect when the API server's informer sees them: wait for the first
	// refusal (a deadline, not a sleep).
	deadline := time.Now().Add(30 * time.Second)
	for netAdminApp() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the policy never took effect")
		}
		time.Sleep(100 * time.Millisecond)
	}

	ownInit := func(ns, image string, labels map[string]string) *corev1.Pod {
		p := appPod(ns, "own-init", nil, labels)
		p.Spec.InitContainers = []corev1.Container{{Name: inject.InitContainerName, Image: image,
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}}}}
		return p
	}
	disabled := map[string]string{inject.AnnotationInject: inject.InjectDisabled}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want []string // nil: admitted
	}{
		{"app adds NET_ADMIN", addCaps(appPod(meshed.Name, "app", nil, nil), "NET_ADMIN"),
			[]string{"ValidatingAdmissionPolicy 'weft-baseline'", "container(s) app add capabilities beyond the baseline", "weft-init:dev"}},
		{"app adds NET_RAW", addCaps(appPod(meshed.Name, "app", nil, nil), "NET_RAW"), []string{"container(s) app"}},
		{"own weft-init with another image", ownInit(meshed.Name, "evil.example/init:1", disabled), []string{"container(s) weft-init add"}},
		{"privileged app", func() *corev1.Pod {
			p := appPod(meshed.Name, "priv", nil, nil)
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
			return p
		}(), []string{"are privileged"}},
		{"hostPath", func() *corev1.Pod {
			p := appPod(meshed.Name, "hostpath", nil, nil)
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			return p
		}(), []string{"hostPath"}},
		{"per-pod opt-in with NET_RAW on the app", addCaps(appPod(plain.Name, "optin", nil,
			map[string]string{inject.AnnotationInject: inject.InjectEnabled}), "NET_RAW"), []string{"container(s) app"}},
		// Admitted: the injected pod itself (weft-init with the Mesh's image), baseline
		// capabilities, the Mesh's own image outside injection, and the opt-out label.
		{"injected pod", appPod(meshed.Name, "plain", nil, nil), nil},
		{"baseline capability", addCaps(appPod(meshed.Name, "bind", nil, nil), "NET_BIND_SERVICE"), nil},
		{"own weft-init with the Mesh image", ownInit(meshed.Name, mesh.Spec.Proxy.InitImage, disabled), nil},
		{"namespace opted out", addCaps(appPod(optOut.Name, "app", nil, nil), "NET_ADMIN"), nil},
		{"unmeshed namespace is not Weft's business", addCaps(appPod(plain.Name, "app", nil, nil), "NET_ADMIN"), nil},
	}
	t.Run("updates: metadata passes, a new weft-init image is refused", func(t *testing.T) {
		// Admitted before its namespace was meshed, with a capability baseline forbids.
		ns := namespace(t, nil, nil)
		p := addCaps(appPod(ns.Name, "old", nil, nil), "SYS_ADMIN")
		p.Spec.InitContainers = []corev1.Container{{Name: inject.InitContainerName, Image: mesh.Spec.Proxy.InitImage,
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}}}
		create(t, p)
		ns.Labels = map[string]string{inject.AnnotationInject: inject.InjectEnabled}
		if err := env.Client.Update(ctx(t), ns); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.Labels = map[string]string{"touched": time.Now().Format("150405.000000")}
			err := env.Client.Update(ctx(t), p)
			if err != nil {
				t.Fatalf("a metadata update of a pod admitted earlier was refused: %v", err)
			}
			// Changing weft-init's image in place (it would run again with the
			// capabilities when the pod's sandbox restarts) is a spec change: refused,
			// once the namespace's new label reached the policy's matcher.
			p.Spec.InitContainers[0].Image = "evil.example/init:1"
			err = env.Client.Update(ctx(t), p)
			if err != nil && strings.Contains(err.Error(), "container(s) weft-init, app add") {
				return
			}
			if err == nil {
				t.Fatal("the image of weft-init was changed in a meshed namespace")
			}
			if time.Now().After(deadline) {
				t.Fatalf("updating weft-init's image: %v", err)
			}
			if err := env.Client.Get(ctx(t), client.ObjectKeyFromObject(p), p); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dryRun(tc.pod)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if tc.name == "injected pod" {
					assertInjected(t, tc.pod) // the policy saw weft-init with its capabilities
				}
				return
			}
			if err == nil || !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
				t.Fatalf("error %v, want a refusal", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
