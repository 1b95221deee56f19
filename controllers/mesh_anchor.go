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
	"fmt"
	"strconv"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/trustbundle"
)

// loadAnchor returns the trust anchor Certificate (nil if absent) and the anchor
// certificate cert-manager issued for it (nil, with a message saying what is missing,
// while it is not issued yet).
//
// The anchor's Secret is never read: it holds the anchor's private key, the root of
// every identity in the mesh, and RBAC does not let the controller get it (config/rbac).
// The certificate itself is public, and cert-manager leaves it in two places the
// controller may read: the CertificateRequest of the Certificate's current revision
// (status.certificate: the anchor, then any chain of an external issuer), which exists
// from the moment the anchor is issued, so a renewed anchor is published before the
// identity issuer moves to it; and, as a fallback for a deleted request, the identity
// issuer's Secret, whose chain (or ca.crt, when the anchor is a self-signed root that
// cert-manager keeps out of the chain) is the anchor that signed the issuer.
func (r *MeshReconciler) loadAnchor(ctx context.Context) (*cmv1.Certificate, *x509.Certificate, string, error) {
	crt := &cmv1.Certificate{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: TrustAnchorName}, crt); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Sprintf("Certificate %s/%s does not exist yet", r.Namespace, TrustAnchorName), nil
		}
		return nil, nil, "", fmt.Errorf("getting Certificate %s: %w", TrustAnchorName, err)
	}
	if crt.Status.Revision == nil {
		return crt, nil, fmt.Sprintf("cert-manager is issuing Certificate %s/%s: %s", r.Namespace, TrustAnchorName, certManagerMessage(crt)), nil
	}
	pemData, err := r.anchorRequestCertificate(ctx, crt)
	if err != nil {
		return crt, nil, "", err
	}
	if pemData == nil {
		if pemData, err = r.anchorFromIssuerSecret(ctx); err != nil {
			return crt, nil, "", err
		}
	}
	certs, err := trustbundle.ParsePEM(pemData)
	if err != nil || len(certs) == 0 || !certs[0].IsCA {
		return crt, nil, fmt.Sprintf("No CA certificate of revision %d of Certificate %s/%s found in its CertificateRequest or the identity issuer's chain; if cert-manager deleted the request, renew the anchor (cmctl renew -n %s %s): %s",
			*crt.Status.Revision, r.Namespace, TrustAnchorName, r.Namespace, TrustAnchorName, certManagerMessage(crt)), nil
	}
	return crt, certs[0], "", nil
}

// anchorRequestCertificate returns status.certificate of the CertificateRequest that
// issued the Certificate's current revision, or nil when there is none.
func (r *MeshReconciler) anchorRequestCertificate(ctx context.Context, crt *cmv1.Certificate) ([]byte, error) {
	var reqs cmv1.CertificateRequestList
	if err := r.List(ctx, &reqs, client.InNamespace(r.Namespace)); err != nil {
		return nil, fmt.Errorf("listing CertificateRequests: %w", err)
	}
	revision := strconv.Itoa(*crt.Status.Revision)
	for i := range reqs.Items {
		req := &reqs.Items[i]
		if ref := metav1.GetControllerOf(req); ref == nil || ref.UID != crt.UID {
			continue
		}
		if req.Annotations[cmv1.CertificateRequestRevisionAnnotationKey] == revision && len(req.Status.Certificate) > 0 {
			return req.Status.Certificate, nil
		}
	}
	return nil, nil
}

// anchorFromIssuerSecret returns the anchor the identity issuer chains to, or nil.
func (r *MeshReconciler) anchorFromIssuerSecret(ctx context.Context) ([]byte, error) {
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: IdentityIssuerName}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting Secret %s: %w", IdentityIssuerName, err)
	}
	chain, err := trustbundle.ParsePEM(secret.Data[corev1.TLSCertKey])
	if err == nil && len(chain) > 1 {
		return trustbundle.PEM([]trustbundle.Entry{{Cert: chain[1]}}), nil
	}
	return secret.Data[cmmeta.TLSCAKey], nil
}
