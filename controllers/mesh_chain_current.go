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

package controllers

import (
	"context"
	"encoding/json"
	"reflect"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmacv1 "github.com/cert-manager/cert-manager/pkg/client/applyconfigurations/certmanager/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// chainApplied reports whether the cached chain object already holds every field the
// apply configuration sets, with the same values, so the apply would change nothing.
// The reconciler runs on every meshed pod's readiness change; four no-op applies per
// run were most of its API writes. A stale cache only delays an apply to the event
// that refreshes it (the reconciler watches the chain's objects); any doubt (not
// cached, being deleted, a field missing or different) applies.
func (r *MeshReconciler) chainApplied(ctx context.Context, desired runtime.ApplyConfiguration) bool {
	var live client.Object
	var name, namespace *string
	switch d := desired.(type) {
	case *cmacv1.CertificateApplyConfiguration:
		live, name, namespace = &cmv1.Certificate{}, d.Name, d.Namespace
	case *cmacv1.IssuerApplyConfiguration:
		live, name, namespace = &cmv1.Issuer{}, d.Name, d.Namespace
	default:
		return false
	}
	if name == nil || namespace == nil {
		return false
	}
	if err := r.Get(ctx, types.NamespacedName{Namespace: *namespace, Name: *name}, live); err != nil || !live.GetDeletionTimestamp().IsZero() {
		return false
	}
	want, err1 := toJSONMap(desired)
	got, err2 := toJSONMap(live)
	if err1 != nil || err2 != nil {
		return false
	}
	// The cache's typed objects may carry no TypeMeta; the type switch checked the kind.
	delete(want, "apiVersion")
	delete(want, "kind")
	return jsonSubset(want, got)
}

func toJSONMap(v any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

// jsonSubset reports whether every field of want is in got with the same value; lists
// must have the same length and match element by element.
func jsonSubset(want, got any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if !jsonSubset(v, g[k]) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !jsonSubset(w[i], g[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(want, got)
	}
}
