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

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmacv1 "github.com/cert-manager/cert-manager/pkg/client/applyconfigurations/certmanager/v1"
	cmmetaac "github.com/cert-manager/cert-manager/pkg/client/applyconfigurations/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/identity"
)

// Names of the cert-manager objects the Mesh reconciler owns in the control-plane
// namespace (fixed by the contracts between Weft's parts).
const (
	SelfSignedIssuerName  = "weft-selfsigned"
	TrustAnchorName       = "weft-trust-anchor" // Certificate, its Secret, and the CA Issuer
	IdentityIssuerName    = identity.IssuerSecretName
	TrustRootsName        = identity.TrustRootsConfigMapName
	TrustRootsKey         = identity.TrustRootsKey
	meshFieldOwner        = "weft-controller"
	managedByLabel        = "app.kubernetes.io/managed-by"
	managedByValue        = "weft-controller"
	bundleRetentionAnnot  = "mesh.weft.dev/anchor-retention"
	bundleAnchorSinceNote = "mesh.weft.dev/anchor-published-at"
)

func meshOwnerRef(mesh *meshv1alpha1.Mesh) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(meshv1alpha1.GroupVersion.String()).
		WithKind("Mesh").
		WithName(mesh.Name).
		WithUID(mesh.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

func managedLabels() map[string]string {
	return map[string]string{managedByLabel: managedByValue}
}

// applyChain server-side applies the cert-manager objects of the chain: one apply per
// object, so a spec change reaches exactly the fields Weft owns and nothing else.
func (r *MeshReconciler) applyChain(ctx context.Context, mesh *meshv1alpha1.Mesh) error {
	ns := r.Namespace
	id := mesh.Spec.Identity
	apply := func(obj runtime.ApplyConfiguration, what string) error {
		if r.chainApplied(ctx, obj) {
			return nil
		}
		if err := r.Apply(ctx, obj, client.FieldOwner(meshFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s: %w", what, err)
		}
		return nil
	}

	anchorIssuer := cmmetaac.IssuerReference().WithName(SelfSignedIssuerName).WithKind(cmv1.IssuerKind).WithGroup("cert-manager.io")
	if ref := id.ExternalIssuerRef; ref != nil {
		kind, group := ref.Kind, ref.Group
		if kind == "" {
			kind = cmv1.IssuerKind
		}
		if group == "" {
			group = "cert-manager.io"
		}
		anchorIssuer = cmmetaac.IssuerReference().WithName(ref.Name).WithKind(kind).WithGroup(group)
		// Bring-your-own-CA: the bootstrap issuer is not needed.
		if err := client.IgnoreNotFound(r.Delete(ctx, &cmv1.Issuer{ObjectMeta: objectMeta(SelfSignedIssuerName, ns)})); err != nil {
			return fmt.Errorf("deleting the self-signed issuer: %w", err)
		}
	} else {
		if err := apply(cmacv1.Issuer(SelfSignedIssuerName, ns).
			WithLabels(managedLabels()).
			WithOwnerReferences(meshOwnerRef(mesh)).
			WithSpec(cmacv1.IssuerSpec().WithSelfSigned(cmacv1.SelfSignedIssuer())), "Issuer "+SelfSignedIssuerName); err != nil {
			return err
		}
	}

	caKey := cmacv1.CertificatePrivateKey().
		WithAlgorithm(cmv1.ECDSAKeyAlgorithm).
		WithSize(256).
		WithRotationPolicy(cmv1.RotationPolicyAlways)
	if err := apply(cmacv1.Certificate(TrustAnchorName, ns).
		WithLabels(managedLabels()).
		WithOwnerReferences(meshOwnerRef(mesh)).
		WithSpec(cmacv1.CertificateSpec().
			WithIsCA(true).
			WithCommonName("root."+mesh.Spec.TrustDomain).
			WithDuration(id.TrustAnchor.Duration).
			WithRenewBefore(id.TrustAnchor.RenewBefore).
			WithSecretName(TrustAnchorName).
			WithPrivateKey(caKey).
			WithUsages(cmv1.UsageCertSign, cmv1.UsageCRLSign, cmv1.UsageDigitalSignature).
			WithIssuerRef(anchorIssuer)), "Certificate "+TrustAnchorName); err != nil {
		return err
	}

	if err := apply(cmacv1.Issuer(TrustAnchorName, ns).
		WithLabels(managedLabels()).
		WithOwnerReferences(meshOwnerRef(mesh)).
		WithSpec(cmacv1.IssuerSpec().WithCA(cmacv1.CAIssuer().WithSecretName(TrustAnchorName))), "Issuer "+TrustAnchorName); err != nil {
		return err
	}

	return apply(cmacv1.Certificate(IdentityIssuerName, ns).
		WithLabels(managedLabels()).
		WithOwnerReferences(meshOwnerRef(mesh)).
		WithSpec(cmacv1.CertificateSpec().
			WithIsCA(true).
			WithCommonName("identity."+mesh.Spec.TrustDomain).
			WithDuration(id.Issuer.Duration).
			WithRenewBefore(id.Issuer.RenewBefore).
			WithSecretName(IdentityIssuerName).
			WithPrivateKey(caKey).
			WithUsages(cmv1.UsageCertSign, cmv1.UsageCRLSign, cmv1.UsageDigitalSignature).
			WithIssuerRef(cmmetaac.IssuerReference().WithName(TrustAnchorName).WithKind(cmv1.IssuerKind).WithGroup("cert-manager.io"))),
		"Certificate "+IdentityIssuerName)
}
