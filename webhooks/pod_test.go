package webhooks

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/inject"
)

// Fields this binary's types do not know (from a newer API server) survive injection,
// because only what injection changed is written back.
func TestMergeInjectedKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{
	  "apiVersion": "v1", "kind": "Pod",
	  "metadata": {"name": "web", "namespace": "shop", "futureMeta": "m"},
	  "spec": {
	    "futureSpec": {"x": 1},
	    "initContainers": [{"name": "migrate", "image": "m:1", "futureInit": true}],
	    "containers": [{"name": "app", "image": "a:1", "futureContainer": "c"}],
	    "volumes": [{"name": "data", "emptyDir": {}, "futureVolume": 2}]
	  }
	}`)
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		t.Fatal(err)
	}
	before := corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	after := *before.DeepCopy()
	ns := inject.Namespace{Name: "shop", Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}
	if errs := inject.Inject(&after, ns, inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	merged, err := mergeInjected(raw, &before, &after)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(merged, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	inits := spec["initContainers"].([]any)
	vols := spec["volumes"].([]any)

	cases := []struct {
		name string
		ok   bool
	}{
		{"metadata field", m["metadata"].(map[string]any)["futureMeta"] == "m"},
		{"spec field", spec["futureSpec"] != nil},
		{"app container field", spec["containers"].([]any)[0].(map[string]any)["futureContainer"] == "c"},
		{"existing init container field", len(inits) == 3 && inits[2].(map[string]any)["futureInit"] == true},
		{"existing volume field", len(vols) == 3 && vols[0].(map[string]any)["futureVolume"] == float64(2)},
		{"proxy added second", len(inits) == 3 && inits[1].(map[string]any)["name"] == inject.ProxyContainerName},
		{"status annotation", m["metadata"].(map[string]any)["annotations"].(map[string]any)[inject.AnnotationInjected] != nil},
		{"service account defaulted", spec["serviceAccountName"] == "default"},
	}
	for _, tc := range cases {
		if !tc.ok {
			t.Errorf("%s: lost or wrong in %s", tc.name, merged)
		}
	}

	// And the typed result equals what injection produced.
	var got corev1.Pod
	if err := json.Unmarshal(merged, &got); err != nil {
		t.Fatal(err)
	}
	if g, w := mustJSON(t, got.Spec), mustJSON(t, after.Spec); g != w {
		t.Errorf("merged spec differs from the injected one:\n%s\n%s", g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
