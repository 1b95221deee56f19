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
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// publishedCopies returns the trust bundle ConfigMaps by namespace, from the manager's
// cache (which holds ConfigMaps of that one name only, CacheOptions). A stale entry only
// costs a redundant apply, or an apply one event later: the reconciler watches them.
func (r *MeshReconciler) publishedCopies(ctx context.Context) (map[string]*corev1.ConfigMap, error) {
	var cms corev1.ConfigMapList
	if err := r.List(ctx, &cms); err != nil {
		return nil, fmt.Errorf("listing published trust bundles: %w", err)
	}
	out := make(map[string]*corev1.ConfigMap, len(cms.Items))
	for i := range cms.Items {
		if cm := &cms.Items[i]; cm.Name == TrustRootsName {
			out[cm.Namespace] = cm
		}
	}
	return out, nil
}

// bundleCopyCurrent reports whether cm already holds exactly what an apply would write:
// the bundle as its only key, Weft's label, the Mesh as controller, and the given
// annotations (nil: none are written). The reconciler runs on every proxy's readiness
// change; re-applying every meshed namespace's copy each time was one API write per
// namespace per pod event, for nothing.
func bundleCopyCurrent(cm *corev1.ConfigMap, mesh *meshv1alpha1.Mesh, bundlePEM string, annotations map[string]string) bool {
	if cm == nil || !cm.DeletionTimestamp.IsZero() || len(cm.Data) != 1 || cm.Data[TrustRootsKey] != bundlePEM || len(cm.BinaryData) != 0 {
		return false
	}
	for k, v := range managedLabels() {
		if cm.Labels[k] != v {
			return false
		}
	}
	for k, v := range annotations {
		if cm.Annotations[k] != v {
			return false
		}
	}
	ref := metav1.GetControllerOf(cm)
	return ref != nil && ref.UID == mesh.UID && ref.Kind == "Mesh" && ref.APIVersion == meshv1alpha1.GroupVersion.String()
}
