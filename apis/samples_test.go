/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package apis_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/testenv"
)

// TestSamplesAreValid sends every sample in config/samples to the API server (dry run),
// so the documentation users copy from is always accepted as written.
func TestSamplesAreValid(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bookstore"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating the samples' namespace: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 samples, found %d (err %v)", len(files), err)
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range strings.Split(string(data), "\n---\n") {
				obj := decode(t, doc)
				if err := k8sClient.Create(context.Background(), obj, client.DryRunAll); err != nil {
					t.Errorf("the API server rejects the sample %s: %v", obj.GetName(), err)
				}
			}
		})
	}
}

// TestDefaultInstallApplies server-side applies everything `kubectl apply -k
// config/default` would (as a dry run, except the namespace), so the install path is
// known to be accepted by an API server that has cert-manager's CRDs.
func TestDefaultInstallApplies(t *testing.T) {
	objs, err := testenv.Kustomize(filepath.Join("config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, obj := range objs {
		kinds[obj.GetKind()]++
		opts := []client.PatchOption{client.FieldOwner("weft-install-test"), client.ForceOwnership}
		if obj.GetKind() != "Namespace" {
			opts = append(opts, client.DryRunAll)
		}
		if err := k8sClient.Patch(context.Background(), obj, client.Apply, opts...); err != nil {
			t.Errorf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	for _, kind := range []string{"CustomResourceDefinition", "Namespace", "Deployment", "Service", "ClusterRole",
		"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Certificate", "Issuer",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if kinds[kind] == 0 {
			t.Errorf("config/default renders no %s (rendered: %v)", kind, kinds)
		}
	}
}
