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

package install

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// UninstallOptions say how far `weft uninstall` goes.
type UninstallOptions struct {
	// GatewayAPI also removes the Gateway API CRDs, and only those `weft install`
	// applied (field manager FieldManager): others belong to someone else.
	GatewayAPI bool
	// Force removes even while Meshes or meshed pods exist, and deletes CRDs that still
	// hold user objects (which deletes those objects).
	Force bool
	// DryRun says what would be deleted and deletes nothing.
	DryRun bool
	// Timeout bounds the wait for Meshes to go (their finalizer is the controller's).
	Timeout time.Duration
}

// Blockers names what must go before Weft can be removed without breaking workloads:
// Meshes (the controller's finalizer cleans up after them) and pods with the proxy
// (they would lose their control plane and their certificates would expire).
func Blockers(ctx context.Context, c client.Reader) ([]string, error) {
	var out []string
	meshes := &meshv1alpha1.MeshList{}
	switch err := c.List(ctx, meshes); {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("listing Meshes: %w", err)
	default:
		for _, m := range meshes.Items {
			out = append(out, fmt.Sprintf("Mesh %s (kubectl delete mesh %s)", m.Name, m.Name))
		}
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	meshed := map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if hasProxy(p) {
			meshed[p.Namespace]++
		}
	}
	nss := make([]string, 0, len(meshed))
	for ns := range meshed {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	for _, ns := range nss {
		out = append(out, fmt.Sprintf("%d meshed pods in namespace %s (remove the %s annotation and restart them)", meshed[ns], ns, meshdefaults.AnnotationInject))
	}
	return out, nil
}

func hasProxy(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name == meshdefaults.ProxyContainerName {
				return true
			}
		}
	}
	return false
}

// Uninstall removes what Install applied: the webhook configurations first (a
// fail-closed injector without its server would refuse every pod in meshed namespaces),
// then the other objects, then Weft's CRDs, each only when it holds no user object
// (or Force). It refuses while Blockers finds something, unless Force.
func Uninstall(ctx context.Context, c client.Client, o UninstallOptions, log io.Writer) error {
	blockers, err := Blockers(ctx, c)
	if err != nil {
		return err
	}
	if len(blockers) > 0 && !o.Force {
		return fmt.Errorf("refusing to uninstall while the mesh is in use: %s; remove them first, or pass --force", strings.Join(blockers, "; "))
	}
	verb := "deleted"
	if o.DryRun {
		verb = "would delete"
	}
	if o.Force && !o.DryRun {
		if err := deleteMeshes(ctx, c, o.Timeout, log); err != nil {
			return err
		}
	}
	p, err := NewPlan(nil, gatewayapi.None)
	if err != nil {
		return err
	}
	objs := slices.Clone(p.Objects)
	slices.Reverse(objs)
	for _, obj := range objs {
		gone, err := remove(ctx, c, obj, o.DryRun)
		if err != nil {
			return err
		}
		if !gone {
			fmt.Fprintf(log, "%s %s\n", verb, describe(obj))
		}
	}
	crds := slices.Clone(p.CRDs)
	if o.GatewayAPI {
		in, err := gatewayapi.Inspect(ctx, c)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(in.CRDs))
		for n := range in.CRDs {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			crd := in.CRDs[n]
			if !ManagedBy(crd, FieldManager) {
				fmt.Fprintf(log, "kept CustomResourceDefinition %s: weft install did not install it\n", n)
				continue
			}
			u, err := toUnstructured(crd)
			if err != nil {
				return err
			}
			u.SetGroupVersionKind(crdGVK)
			crds = append(crds, u)
		}
	}
	for _, obj := range crds {
		n, kind, err := countObjects(ctx, c, obj.GetName())
		if err != nil {
			return err
		}
		if n > 0 && !o.Force {
			fmt.Fprintf(log, "kept CustomResourceDefinition %s: %d %s objects remain (delete them, or pass --force to delete them with it)\n", obj.GetName(), n, kind)
			continue
		}
		gone, err := remove(ctx, c, obj, o.DryRun)
		if err != nil {
			return err
		}
		if !gone {
			fmt.Fprintf(log, "%s %s\n", verb, describe(obj))
		}
	}
	return nil
}

// remove deletes an object; gone reports that it was not there.
func remove(ctx context.Context, c client.Client, obj *unstructured.Unstructured, dryRun bool) (gone bool, err error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	switch err := c.Get(ctx, client.ObjectKeyFromObject(obj), live); {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading %s: %w", describe(obj), err)
	}
	if dryRun || live.GetDeletionTimestamp() != nil {
		return false, nil
	}
	if err := c.Delete(ctx, live, client.PropagationPolicy("Background")); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %s: %w", describe(obj), err)
	}
	return false, nil
}

// countObjects counts the objects of a CRD's kind, across namespaces.
func countObjects(ctx context.Context, c client.Reader, crdName string) (int, string, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: crdName}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, "", nil
		}
		return 0, "", fmt.Errorf("reading CustomResourceDefinition %s: %w", crdName, err)
	}
	var served string
	for _, v := range crd.Spec.Versions {
		if v.Storage || (served == "" && v.Served) {
			served = v.Name
		}
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: crd.Spec.Group, Version: served, Kind: crd.Spec.Names.ListKind})
	if err := c.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return 0, crd.Spec.Names.Kind, nil
		}
		return 0, "", fmt.Errorf("listing %s: %w", crd.Spec.Names.Plural, err)
	}
	return len(list.Items), crd.Spec.Names.Kind, nil
}

// deleteMeshes deletes every Mesh and waits until they are gone: the controller's
// finalizer removes what it created for them, and it must still be running to do so.
func deleteMeshes(ctx context.Context, c client.Client, timeout time.Duration, log io.Writer) error {
	meshes := &meshv1alpha1.MeshList{}
	if err := c.List(ctx, meshes); err != nil {
		if meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("listing Meshes: %w", err)
	}
	for i := range meshes.Items {
		if err := c.Delete(ctx, &meshes.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Mesh %s: %w", meshes.Items[i].Name, err)
		}
		fmt.Fprintf(log, "deleted Mesh %s\n", meshes.Items[i].Name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for len(meshes.Items) > 0 {
		if err := c.List(ctx, meshes); err != nil {
			return fmt.Errorf("listing Meshes: %w", err)
		}
		if len(meshes.Items) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Mesh %s is still there after %s: is weft-controller running to remove its finalizer %s? (kubectl describe mesh %s)",
				meshes.Items[0].Name, timeout, meshes.Items[0].Finalizers, meshes.Items[0].Name)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}
