package inject_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestDefaultsMatchCRD proves that the Go-side defaults (used by `weft inject` and by
// the webhook when no Mesh exists) are what the API server gives an empty Mesh from the
// CRD's default markers.
func TestDefaultsMatchCRD(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cases := []struct {
		name string
		spec map[string]any // nil: no spec at all
	}{
		{"no spec", nil},
		{"empty spec", map[string]any{}},
		{"empty proxy and identity", map[string]any{"proxy": map[string]any{}, "identity": map[string]any{}}},
		{"empty proxy ports", map[string]any{"proxy": map[string]any{"ports": map[string]any{}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := map[string]any{
				"apiVersion": meshv1alpha1.GroupVersion.String(),
				"kind":       "Mesh",
				"metadata":   map[string]any{"name": meshv1alpha1.MeshName},
			}
			if tc.spec != nil {
				obj["spec"] = tc.spec
			}
			u := &unstructured.Unstructured{Object: obj}
			if err := c.Create(ctx, u); err != nil {
				t.Fatalf("creating the Mesh: %v", err)
			}
			defer func() {
				if err := c.Delete(ctx, u); err != nil {
					t.Errorf("deleting the Mesh: %v", err)
				}
			}()
			var got meshv1alpha1.Mesh
			if err := c.Get(ctx, client.ObjectKey{Name: meshv1alpha1.MeshName}, &got); err != nil {
				t.Fatal(err)
			}
			if want := inject.DefaultMeshSpec(); !apiequality.Semantic.DeepEqual(got.Spec, want) {
				g, _ := json.MarshalIndent(got.Spec, "", "  ")
				w, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("the API server defaulted an empty Mesh to\n%s\nbut DefaultMeshSpec is\n%s", g, w)
			}
			// WithDefaults must not change a complete spec.
			if !apiequality.Semantic.DeepEqual(inject.WithDefaults(got.Spec.Proxy), got.Spec.Proxy) {
				t.Errorf("WithDefaults changed a complete proxy spec")
			}
		})
	}
}
