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

package gitops_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// TestJudgesFollowTheirTools checks that the harness is as strict as the tools it
// stands for, so that a script or an expression passing here does not fail there.
func TestJudgesFollowTheirTools(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.weft.dev/v1alpha1", "kind": "ServiceProfile",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "generation": int64(2)},
		"status": map[string]any{"observedGeneration": int64(1), "conditions": []any{
			map[string]any{"type": "Ready", "status": "True", "reason": "Ready", "message": "Ready", "observedGeneration": int64(1)},
		}},
	}}

	t.Run("Argo CD: no string library in argocd-cm scripts", func(t *testing.T) {
		if _, _, err := argoHealth(obj, `return { status = string.format("%s", "Healthy") }`); err == nil {
			t.Error("a script using string.format ran; Argo CD runs argocd-cm scripts without the string library")
		}
	})
	t.Run("Argo CD: only its health codes", func(t *testing.T) {
		if _, _, err := argoHealth(obj, `return { status = "Ready" }`); err == nil || !strings.Contains(err.Error(), "Unknown") {
			t.Errorf("status Ready accepted (err %v); Argo CD turns it into Unknown", err)
		}
	})
	t.Run("Argo CD: obj is the object, numbers are numbers", func(t *testing.T) {
		st, msg, err := argoHealth(obj, `return { status = "Healthy", message = obj.metadata.namespace .. "/" .. (obj.metadata.generation + 1) }`)
		if err != nil || st != "Healthy" || msg != "shop/3" {
			t.Errorf("got %q %q %v, want Healthy shop/3", st, msg, err)
		}
	})

	fc, err := newFluxCheck(fluxExprs{Current: "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("Flux: a stale observedGeneration is InProgress before any expression", func(t *testing.T) {
		if st, _ := fc.evaluate(obj); st != status.InProgressStatus {
			t.Errorf("stale object: %s, want InProgress although current is true", st)
		}
	})
	t.Run("Flux: an expression that cannot be evaluated is Unknown", func(t *testing.T) {
		bare := obj.DeepCopy()
		unstructured.RemoveNestedField(bare.Object, "status")
		if st, _ := fc.evaluate(bare); st != status.UnknownStatus {
			t.Errorf("object without status: %s, want Unknown", st)
		}
	})
	t.Run("Flux: current is required", func(t *testing.T) {
		if _, err := newFluxCheck(fluxExprs{Failed: "true"}); err == nil {
			t.Error("expressions without current accepted; Flux refuses them")
		}
	})
}
