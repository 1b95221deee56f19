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
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/trustbundle"
)

// InjectAnnotation marks a namespace (label or annotation) whose pods are meshed; the
// trust bundle is published into each such namespace.
const InjectAnnotation = meshdefaults.AnnotationInject

// reconcileBundle computes the trust bundle from the current anchor, the issuer and the
// bundle published so far, publishes it in the control-plane namespace and every meshed
// namespace, and drives anchor rotation: once a new anchor has been published for
// BundlePropagation, the issuer is re-issued under it.
func (r *MeshReconciler) reconcileBundle(ctx context.Context, mesh *meshv1alpha1.Mesh, conds conditions, st *meshState) error {
	if st.anchor == nil {
		return nil
	}
	log := ctrl.LoggerFrom(ctx)
	now := r.now()

	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: TrustRootsName}, cm)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading the published trust bundle: %w", err)
	}
	published, err := trustbundle.Decode([]byte(cm.Data[TrustRootsKey]), cm.Annotations[bundleRetentionAnnot])
	if err != nil {
		// A corrupted record: start over from the current anchor, but keep what can be
		// parsed so no anchor in use is lost.
		log.Error(err, "The published trust bundle record is corrupt; rebuilding it")
		certs, _ := trustbundle.ParsePEM([]byte(cm.Data[TrustRootsKey]))
		published = nil
		for _, c := range certs {
			published = append(published, trustbundle.Entry{Cert: c})
		}
	}
	var issuerCert *x509.Certificate
	if st.issuer != nil {
		issuerCert = st.issuer.Cert
	}
	res, err := trustbundle.Compute(trustbundle.Input{
		Now:          now,
		Published:    published,
		Anchor:       st.anchor,
		Issuer:       issuerCert,
		LeafLifetime: mesh.Spec.Identity.Workload.Duration.Duration,
		Grace:        r.RetentionGrace,
	})
	untrusted := errors.Is(err, trustbundle.ErrIssuerUntrusted)
	if err != nil && !untrusted {
		return fmt.Errorf("computing the trust bundle: %w", err)
	}

	// When did the current anchor first appear in the bundle?
	anchorFP := trustbundle.Fingerprint(st.anchor)
	since := now
	if fp, ts, ok := strings.Cut(cm.Annotations[bundleAnchorSinceNote], "="); ok && fp == anchorFP {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			since = t
		}
	}

	bundlePEM := string(trustbundle.PEM(res.Entries))
	annotations := map[string]string{
		bundleRetentionAnnot:  trustbundle.EncodeRetention(res.Entries),
		bundleAnchorSinceNote: anchorFP + "=" + since.UTC().Format(time.RFC3339Nano),
	}
	if !bundleCopyCurrent(cm, mesh, bundlePEM, annotations) {
		if err := r.Apply(ctx, corev1ac.ConfigMap(TrustRootsName, r.Namespace).
			WithLabels(managedLabels()).
			WithAnnotations(annotations).
			WithOwnerReferences(meshOwnerRef(mesh)).
			WithData(map[string]string{TrustRootsKey: bundlePEM}),
			client.FieldOwner(meshFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("publishing the trust bundle: %w", err)
		}
	}
	if cm.Data[TrustRootsKey] != bundlePEM {
		fps := make([]string, 0, len(res.Entries))
		for _, e := range res.Entries {
			fps = append(fps, trustbundle.Fingerprint(e.Cert)[:16])
		}
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, ReasonTrustBundleUpdated, "Publish",
			"Published a trust bundle of %d anchor(s) (SHA-256 %s); %d dropped", len(res.Entries), strings.Join(fps, ", "), len(res.Dropped))
	}
	if err := r.publishCopies(ctx, mesh, bundlePEM); err != nil {
		return err
	}
	st.bundle = res.Entries
	st.wakeAt(res.NextChange)

	switch {
	case untrusted:
		conds.set(meshv1alpha1.ConditionIssuerReady, false, ReasonUntrusted,
			fmt.Sprintf("The identity issuer in Secret %s/%s is not signed by any published trust anchor; delete that Secret so cert-manager re-issues it from %s",
				r.Namespace, IdentityIssuerName, TrustAnchorName))
	case res.IssuerStale:
		renewAt := since.Add(r.BundlePropagation)
		if now.Before(renewAt) {
			st.wakeAt(renewAt)
			conds.set(meshv1alpha1.ConditionIssuerReady, true, ReasonRotating,
				fmt.Sprintf("The trust anchor was renewed; the identity issuer is re-issued under it at %s, once every proxy has the new bundle", renewAt.UTC().Format(time.RFC3339)))
			return nil
		}
		if err := r.triggerIssuerRenewal(ctx, mesh); err != nil {
			return err
		}
		st.wakeAt(now.Add(5 * time.Second))
		conds.set(meshv1alpha1.ConditionIssuerReady, true, ReasonRotating,
			"The trust anchor was renewed; cert-manager is re-issuing the identity issuer under it")
	}
	return nil
}

// triggerIssuerRenewal asks cert-manager to re-issue the identity issuer now, the way
// `cmctl renew` does: by setting the Certificate's Issuing condition.
func (r *MeshReconciler) triggerIssuerRenewal(ctx context.Context, mesh *meshv1alpha1.Mesh) error {
	crt := &cmv1.Certificate{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: IdentityIssuerName}, crt); err != nil {
		return fmt.Errorf("getting the identity issuer Certificate: %w", err)
	}
	if cmapiutil.CertificateHasCondition(crt, cmv1.CertificateCondition{Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}) {
		return nil
	}
	cmapiutil.SetCertificateCondition(crt, crt.Generation, cmv1.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Weft re-issues the identity issuer under the renewed trust anchor")
	if err := r.Status().Update(ctx, crt); err != nil {
		return fmt.Errorf("triggering the identity issuer renewal: %w", err)
	}
	r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, ReasonIssuerRenewalTriggered, "Rotate",
		"The trust anchor was renewed and the new bundle published; asked cert-manager to re-issue the identity issuer under it")
	return nil
}

// publishCopies writes the bundle into every namespace where injected pods may run (every
// meshed namespace, and every namespace holding an injected pod, which is how a pod opted
// in by its own weft.dev/inject label outside a meshed namespace gets its trust roots) and
// removes copies from namespaces that have neither any more.
//
// The apply takes ownership of the ConfigMap's data by force: a ConfigMap of the same name
// created by someone else in such a namespace (before the first injected pod, or by
// hand) is overwritten with the real bundle and marked as Weft's (managed-by label,
// owner reference to the Mesh), never trusted as it was.
func (r *MeshReconciler) publishCopies(ctx context.Context, mesh *meshv1alpha1.Mesh, bundlePEM string) error {
	var nss corev1.NamespaceList
	if err := r.List(ctx, &nss); err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	published, err := r.publishedCopies(ctx)
	if err != nil {
		return err
	}
	withPods, err := r.namespacesWithInjectedPods(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{r.Namespace: true}
	for _, ns := range nss.Items {
		if ns.Name == r.Namespace || !ns.DeletionTimestamp.IsZero() {
			continue
		}
		if ns.Labels[InjectAnnotation] != "enabled" && ns.Annotations[InjectAnnotation] != "enabled" && !withPods[ns.Name] {
			continue
		}
		keep[ns.Name] = true
		if bundleCopyCurrent(published[ns.Name], mesh, bundlePEM, nil) {
			continue
		}
		if err := r.Apply(ctx, corev1ac.ConfigMap(TrustRootsName, ns.Name).
			WithLabels(managedLabels()).
			WithOwnerReferences(meshOwnerRef(mesh)).
			WithData(map[string]string{TrustRootsKey: bundlePEM}),
			client.FieldOwner(meshFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("publishing the trust bundle in namespace %s: %w", ns.Name, err)
		}
	}
	return r.deleteBundles(ctx, keep)
}

// namespacesWithInjectedPods names the namespaces holding a pod the injector marked
// (label weft.dev/injected=true), from the slimmed pod cache, which keeps that label.
func (r *MeshReconciler) namespacesWithInjectedPods(ctx context.Context) (map[string]bool, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.MatchingLabels{inject.LabelInjected: "true"}); err != nil {
		return nil, fmt.Errorf("listing injected pods: %w", err)
	}
	out := map[string]bool{}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp.IsZero() {
			out[p.Namespace] = true
		}
	}
	return out, nil
}

// deleteBundles deletes the bundle ConfigMaps Weft published in namespaces not in keep
// (all of them when keep is nil).
func (r *MeshReconciler) deleteBundles(ctx context.Context, keep map[string]bool) error {
	var cms corev1.ConfigMapList
	// By name too: RBAC lets the controller list ConfigMaps only with that field selector.
	if err := r.APIReader.List(ctx, &cms, client.MatchingLabels(managedLabels()),
		client.MatchingFields{"metadata.name": TrustRootsName}); err != nil {
		return fmt.Errorf("listing published trust bundles: %w", err)
	}
	for i := range cms.Items {
		cm := &cms.Items[i]
		if cm.Name != TrustRootsName || keep[cm.Namespace] {
			continue
		}
		if err := client.IgnoreNotFound(r.Delete(ctx, cm)); err != nil {
			return fmt.Errorf("deleting the trust bundle in namespace %s: %w", cm.Namespace, err)
		}
	}
	return nil
}
