package webhooks_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/iptables"
)

// restrictedApp is an app pod that meets Pod Security "restricted" on its own, so that
// whatever the level refuses comes from what injection added.
func restrictedApp(ns, name string) *corev1.Pod {
	p := appPod(ns, name, nil, nil)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   new(true),
		RunAsUser:      new(int64(1000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return p
}

// TestCNIModePassesPodSecurity runs the injector behind the API server's own Pod
// Security admission: with the Mesh's redirectMode CNI an injected pod carries no
// weft-init, only the unprivileged validator, and is admitted in namespaces enforcing
// "baseline" and "restricted"; with the default InitContainer mode the same pod is
// refused by "baseline" (which shows the level is really enforced here).
func TestCNIModePassesPodSecurity(t *testing.T) {
	mesh := createEmptyMesh(t)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mesh) })
	meshedNS := func(level string) *corev1.Namespace {
		return namespace(t, nil, map[string]string{
			inject.AnnotationInject:              inject.InjectEnabled,
			"pod-security.kubernetes.io/enforce": level,
		})
	}
	baseline, restricted := meshedNS("baseline"), meshedNS("restricted")
	seq := 0
	dryRun := func(p *corev1.Pod) error {
		seq++
		p.Name = fmt.Sprintf("%s-%d", p.Name, seq)
		return env.Client.Create(ctx(t), p, client.DryRunAll)
	}

	t.Run("InitContainer mode is refused by baseline", func(t *testing.T) {
		err := dryRun(restrictedApp(baseline.Name, "init-mode"))
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity \"baseline") || !strings.Contains(err.Error(), "NET_ADMIN") {
			t.Fatalf("a pod with weft-init in a baseline namespace: %v, want refused by PodSecurity for NET_ADMIN", err)
		}
	})

	mesh.Spec.Proxy.RedirectMode = meshv1alpha1.RedirectCNI
	if err := env.Client.Update(ctx(t), mesh); err != nil {
		t.Fatal(err)
	}
	// The injector reads the Mesh on each request; wait until the update is visible.
	var admitted *corev1.Pod
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := restrictedApp(baseline.Name, "cni-mode")
		err := dryRun(p)
		if err == nil && slices.Contains(initNames(p), inject.ValidatorContainerName) {
			admitted = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CNI mode never took effect: err %v, init containers %v", err, initNames(p))
		}
		time.Sleep(100 * time.Millisecond)
	}

	t.Run("CNI mode: validator, no weft-init, unprivileged", func(t *testing.T) {
		if got := initNames(admitted); !slices.Equal(got[:2], []string{inject.ValidatorContainerName, inject.ProxyContainerName}) ||
			slices.Contains(got, inject.InitContainerName) {
			t.Fatalf("init containers %v, want weft-validate then weft-proxy and no weft-init", got)
		}
		v := container(t, admitted, inject.ValidatorContainerName)
		sc := v.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || *sc.RunAsUser == mesh.Spec.Proxy.UID ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("validator security context %+v: want non-root, not the proxy's UID, no capability", sc)
		}
		if v.Image != mesh.Spec.Proxy.InitImage {
			t.Errorf("validator image %q, want the Mesh's initImage %q", v.Image, mesh.Spec.Proxy.InitImage)
		}
		// Its arguments are the rule flags the weft-cni plugin reads.
		cfg, err := iptables.ParseRuleArgs(v.Args, "validate")
		if err != nil || cfg.ProxyUID != int(mesh.Spec.Proxy.UID) || !slices.Contains(v.Args, "--validate") {
			t.Errorf("validator args %v: %+v, %v", v.Args, cfg, err)
		}
		if raw := admitted.Annotations[inject.AnnotationInjected]; !strings.Contains(raw, inject.ValidatorContainerName) {
			t.Errorf("injection status %s does not record the validator (uninjection would leave it)", raw)
		}
	})

	t.Run("CNI mode passes restricted", func(t *testing.T) {
		if err := dryRun(restrictedApp(restricted.Name, "cni-restricted")); err != nil {
			t.Fatalf("refused in a restricted namespace: %v", err)
		}
	})

	t.Run("a pod cannot bring its own weft-validate", func(t *testing.T) {
		p := restrictedApp(baseline.Name, "own-validate")
		p.Spec.InitContainers = []corev1.Container{{Name: inject.ValidatorContainerName, Image: "evil.example/x:1"}}
		if err := dryRun(p); err == nil || !strings.Contains(err.Error(), inject.ValidatorContainerName) {
			t.Fatalf("a pod with its own weft-validate container: %v, want refused naming it", err)
		}
	})
}
