package webhooks_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestTrustRootsWrittenOnlyByController runs config/trustroots' policy in a real API
// server: a user who may write ConfigMaps cannot create weft-trust-roots or change its
// data (the namespace's proxies would trust their CA); weft-controller's ServiceAccount
// can; metadata-only updates, deletions and other ConfigMaps are untouched.
func TestTrustRootsWrittenOnlyByController(t *testing.T) {
	objs, err := testenv.Kustomize(filepath.Join("config", "trustroots"))
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, nil, nil)
	probe := func() error {
		return env.Client.Create(ctx(t), trustRoots(ns.Name, "probe"), client.DryRunAll)
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
		for probe() != nil && c.Err() == nil { // the API server drops a policy asynchronously
			time.Sleep(100 * time.Millisecond)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for probe() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the policy never took effect")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// weft-controller, impersonated (system:masters keeps RBAC out of the way: the
	// policy decides by user name).
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:weft-system:weft-controller", Groups: []string{"system:masters"}}
	controller, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	user := env.Client // the test's admin: any other writer

	rogue := selfSignedPEM(t, "rogue")
	err = user.Create(ctx(t), trustRoots(ns.Name, rogue))
	if err == nil || !strings.Contains(err.Error(), "only weft-controller may write its data") {
		t.Fatalf("a user creating weft-trust-roots: %v, want a refusal", err)
	}
	cm := trustRoots(ns.Name, selfSignedPEM(t, "anchor"))
	if err := controller.Create(ctx(t), cm); err != nil {
		t.Fatalf("weft-controller creating weft-trust-roots: %v", err)
	}
	changed := cm.DeepCopy()
	changed.Data[inject.TrustRootsKey] = rogue
	if err := user.Update(ctx(t), changed); err == nil || !strings.Contains(err.Error(), "only weft-controller") {
		t.Fatalf("a user changing the bundle: %v, want a refusal", err)
	}
	labelled := cm.DeepCopy()
	labelled.Labels = map[string]string{"team": "shop"}
	if err := user.Update(ctx(t), labelled); err != nil {
		t.Fatalf("a metadata-only update: %v", err)
	}
	if err := user.Create(ctx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "other"},
		Data: map[string]string{inject.TrustRootsKey: rogue}}); err != nil {
		t.Fatalf("another ConfigMap: %v", err)
	}
	if err := user.Delete(ctx(t), labelled); err != nil {
		t.Fatalf("deleting weft-trust-roots (namespace teardown must work): %v", err)
	}
}
