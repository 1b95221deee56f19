package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/webhooks/webhooktest"
)

// manifestWorkload is one pod template found in a manifest.
type manifestWorkload struct {
	id        string // kind/name
	namespace string
	template  corev1.PodTemplateSpec
}

// workloads reads the pod templates of a YAML stream independently of the CLI's YAML
// editing (plain decoding into maps), and the Namespaces the stream defines.
func workloads(t *testing.T, stream string) ([]manifestWorkload, map[string]map[string]string) {
	t.Helper()
	var out []manifestWorkload
	namespaces := map[string]map[string]string{}
	var visit func(obj map[string]any)
	visit = func(obj map[string]any) {
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		ns, _ := meta["namespace"].(string)
		if ns == "" {
			ns = "default"
		}
		if kind == "List" {
			items, _ := obj["items"].([]any)
			for _, it := range items {
				visit(it.(map[string]any))
			}
			return
		}
		if kind == "Namespace" {
			ann := map[string]string{}
			if a, ok := meta["annotations"].(map[string]any); ok {
				for k, v := range a {
					ann[k] = v.(string)
				}
			}
			namespaces[name] = ann
			return
		}
		path, ok := inject.TemplatePath(obj["apiVersion"].(string), kind)
		if !ok {
			return
		}
		node := any(obj)
		for _, k := range path {
			node = node.(map[string]any)[k]
		}
		raw, err := json.Marshal(node)
		if err != nil {
			t.Fatal(err)
		}
		var tpl corev1.PodTemplateSpec
		if err := json.Unmarshal(raw, &tpl); err != nil {
			t.Fatalf("%s/%s: %v", kind, name, err)
		}
		// A StatefulSet's pods get a volume per claim template; stand in for them with
		// emptyDirs, placed first so that injection's volumes follow them in both pods.
		if kind == "StatefulSet" {
			claims, _ := obj["spec"].(map[string]any)["volumeClaimTemplates"].([]any)
			for i := len(claims) - 1; i >= 0; i-- {
				cn := claims[i].(map[string]any)["metadata"].(map[string]any)["name"].(string)
				tpl.Spec.Volumes = append([]corev1.Volume{{Name: cn, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, tpl.Spec.Volumes...)
			}
		}
		out = append(out, manifestWorkload{id: strings.ToLower(kind) + "/" + name, namespace: ns, template: tpl})
	}
	for _, d := range decodeAll(t, stream) {
		visit(d.(map[string]any))
	}
	return out, namespaces
}

// The webhook and the CLI produce identical pods: for every workload of the golden
// inputs, a pod created from the original template in a meshed namespace (injected by
// the webhook, called over TLS by a real API server) has the same spec and the same
// weft annotations as a pod created from `weft inject`'s output in a namespace the
// webhook never sees. Both go through the API server, so both get its defaults.
func TestWebhookAndCLIAgree(t *testing.T) {
	env, err := webhooktest.Start()
	if err != nil {
		t.Fatalf("starting the test environment: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the test environment: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}
	if err := env.Client.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	meshed := func(t *testing.T, name string, annotations map[string]string) {
		if created[name] {
			return
		}
		created[name] = true
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
		if annotations == nil {
			ns.Labels = map[string]string{inject.AnnotationInject: inject.InjectEnabled}
		}
		if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	compared := 0
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			original, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			code, injected, stderr := weft(t, "", "inject", in)
			if code != 0 {
				t.Fatalf("weft inject: exit %d: %s", code, stderr)
			}
			before, namespaces := workloads(t, string(original))
			after, _ := workloads(t, injected)
			if len(before) != len(after) {
				t.Fatalf("%d workloads before injection, %d after", len(before), len(after))
			}
			for i, w := range before {
				if !inject.IsInjected(&after[i].template) {
					continue // skipped by the CLI (disabled, host network); the webhook tests cover those
				}
				// Each input gets its own namespaces, with the annotations its Namespace
				// documents give them, so inputs do not see each other's settings.
				nsName := strings.TrimSuffix(filepath.Base(in), ".yaml") + "-" + w.namespace
				meshed(t, nsName, namespaces[w.namespace])
				podName := strings.ReplaceAll(w.id, "/", "-")

				viaWebhook := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: podName,
					Labels: w.template.Labels, Annotations: w.template.Annotations}, Spec: w.template.Spec}
				if err := env.Client.Create(ctx, viaWebhook); err != nil {
					t.Fatalf("%s: creating the pod for the webhook: %v", w.id, err)
				}
				viaCLI := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: plain.Name, Name: podName,
					Labels: after[i].template.Labels, Annotations: after[i].template.Annotations}, Spec: after[i].template.Spec}
				if err := env.Client.Create(ctx, viaCLI); err != nil {
					t.Fatalf("%s: creating the CLI's pod: %v", w.id, err)
				}
				if !inject.IsInjected(&corev1.PodTemplateSpec{ObjectMeta: viaWebhook.ObjectMeta, Spec: viaWebhook.Spec}) {
					t.Fatalf("%s: the webhook did not inject", w.id)
				}
				if !apiequality.Semantic.DeepEqual(viaWebhook.Spec, viaCLI.Spec) {
					a, _ := json.MarshalIndent(viaWebhook.Spec, "", " ")
					b, _ := json.MarshalIndent(viaCLI.Spec, "", " ")
					t.Errorf("%s: pod specs differ:\n%s", w.id, lineDiff(string(a), string(b)))
				}
				for _, k := range []string{inject.AnnotationInjected, inject.AnnotationProxyVersion} {
					if viaWebhook.Annotations[k] != viaCLI.Annotations[k] {
						t.Errorf("%s: annotation %s: webhook %q, CLI %q", w.id, k, viaWebhook.Annotations[k], viaCLI.Annotations[k])
					}
				}
				compared++
			}
		})
	}
	if compared < 6 {
		t.Errorf("compared %d workloads, want at least 6", compared)
	}
	t.Logf("webhook and CLI agree on %d workloads", compared)
}
