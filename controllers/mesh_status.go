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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/trustbundle"
)

// meshState carries what one reconcile learnt from phase to phase.
type meshState struct {
	// next is when to reconcile again without an event.
	next time.Time
	// anchorBlocked says why the anchor cannot be issued (external issuer missing).
	anchorBlocked string
	anchor        *x509.Certificate
	issuer        *identity.Issuer
	bundle        []trustbundle.Entry
}

func (st *meshState) wakeAt(t time.Time) {
	if !t.IsZero() && t.Before(st.next) {
		st.next = t
	}
}

// Reasons specific to the Mesh's conditions (see also conditions.go).
const (
	ReasonIssued    = "Issued"
	ReasonRotating  = "Rotating"
	ReasonUntrusted = "Untrusted"
)

// loadCertificate reads a Certificate and its Secret. It returns the Certificate (nil if
// absent), the Secret (nil if absent) and a message saying what is missing.
func (r *MeshReconciler) loadCertificate(ctx context.Context, name string) (*cmv1.Certificate, *corev1.Secret, string, error) {
	crt := &cmv1.Certificate{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: name}, crt); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Sprintf("Certificate %s/%s does not exist yet", r.Namespace, name), nil
		}
		return nil, nil, "", fmt.Errorf("getting Certificate %s: %w", name, err)
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: crt.Spec.SecretName}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return crt, nil, fmt.Sprintf("cert-manager is issuing Certificate %s/%s: %s", r.Namespace, name, certManagerMessage(crt)), nil
		}
		return crt, nil, "", fmt.Errorf("getting Secret %s: %w", crt.Spec.SecretName, err)
	}
	return crt, secret, "", nil
}

// certManagerMessage is the message of the Certificate's Ready condition, or a default.
func certManagerMessage(crt *cmv1.Certificate) string {
	for _, c := range crt.Status.Conditions {
		if c.Type == cmv1.CertificateConditionReady && c.Message != "" {
			return c.Message
		}
	}
	return "no status yet"
}

func certStatus(crt *cmv1.Certificate, cert *x509.Certificate) *meshv1alpha1.CertificateStatus {
	na := metav1.NewTime(cert.NotAfter)
	return &meshv1alpha1.CertificateStatus{
		NotAfter:     &na,
		RenewalTime:  crt.Status.RenewalTime,
		SerialNumber: cert.SerialNumber.Text(16),
	}
}

// reconcileTrustAnchor reads the issued anchor and sets TrustAnchorReady.
func (r *MeshReconciler) reconcileTrustAnchor(ctx context.Context, mesh *meshv1alpha1.Mesh, conds conditions, st *meshState) error {
	// The anchor's certificate only: its Secret, with the key, is never read.
	crt, anchor, missing, err := r.loadAnchor(ctx)
	if err != nil {
		return err
	}
	if anchor == nil {
		if st.anchorBlocked != "" {
			conds.set(meshv1alpha1.ConditionTrustAnchorReady, false, meshv1alpha1.ReasonRefNotFound, st.anchorBlocked)
		} else {
			conds.set(meshv1alpha1.ConditionTrustAnchorReady, false, meshv1alpha1.ReasonPending, missing)
		}
		return nil
	}
	st.anchor = anchor
	prev := mesh.Status.TrustAnchor
	mesh.Status.TrustAnchor = certStatus(crt, anchor)
	r.recordIssuance(mesh, prev, mesh.Status.TrustAnchor, "trust anchor", ReasonTrustAnchorIssued, ReasonTrustAnchorRotated)
	reason, msg := r.checkRenewal(mesh, st, "The trust anchor", TrustAnchorName, crt, anchor, 0)
	if st.anchorBlocked != "" {
		// The anchor cert-manager issued before stays published (the bundle phase
		// keeps it), so workloads keep working; the one the spec asks for cannot be
		// issued, nor this one renewed.
		conds.set(meshv1alpha1.ConditionTrustAnchorReady, false, meshv1alpha1.ReasonRefNotFound,
			fmt.Sprintf("%s; cert-manager cannot issue the trust anchor the spec asks for, and anchor %s stays in use until it can",
				st.anchorBlocked, mesh.Status.TrustAnchor.SerialNumber))
		return nil
	}
	if reason != "" {
		conds.set(meshv1alpha1.ConditionTrustAnchorReady, false, reason, msg)
		return nil
	}
	conds.set(meshv1alpha1.ConditionTrustAnchorReady, true, ReasonIssued,
		fmt.Sprintf("Trust anchor %s is valid until %s", mesh.Status.TrustAnchor.SerialNumber, anchor.NotAfter.UTC().Format(time.RFC3339)))
	return nil
}

// reconcileIssuer reads the identity issuer and its key and sets IssuerReady;
// reconcileBundle refines it once it knows which anchor the issuer chains to.
func (r *MeshReconciler) reconcileIssuer(ctx context.Context, mesh *meshv1alpha1.Mesh, conds conditions, st *meshState) error {
	crt, secret, missing, err := r.loadCertificate(ctx, IdentityIssuerName)
	if err != nil {
		return err
	}
	if secret == nil {
		conds.set(meshv1alpha1.ConditionIssuerReady, false, meshv1alpha1.ReasonPending, missing)
		return nil
	}
	iss, err := identity.ParseIssuer(secret)
	if err != nil {
		conds.set(meshv1alpha1.ConditionIssuerReady, false, meshv1alpha1.ReasonPending,
			fmt.Sprintf("The identity issuer is not usable yet (%v): %s", err, certManagerMessage(crt)))
		return nil
	}
	st.issuer = iss
	prev := mesh.Status.Issuer
	mesh.Status.Issuer = certStatus(crt, iss.Cert)
	r.recordIssuance(mesh, prev, mesh.Status.Issuer, "identity issuer", ReasonIssuerIssued, ReasonIssuerRotated)
	if reason, msg := r.checkRenewal(mesh, st, "The identity issuer", IdentityIssuerName, crt, iss.Cert, leafLifetime(mesh)); reason != "" {
		conds.set(meshv1alpha1.ConditionIssuerReady, false, reason, msg)
		return nil
	}
	conds.set(meshv1alpha1.ConditionIssuerReady, true, ReasonIssued,
		fmt.Sprintf("Identity issuer %s is valid until %s", mesh.Status.Issuer.SerialNumber, iss.Cert.NotAfter.UTC().Format(time.RFC3339)))
	return nil
}

// recordIssuance emits an Event when a certificate first appears or is replaced.
func (r *MeshReconciler) recordIssuance(mesh *meshv1alpha1.Mesh, prev, cur *meshv1alpha1.CertificateStatus, what, issued, rotated string) {
	switch {
	case prev == nil || prev.SerialNumber == "":
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, issued, "Issue",
			"cert-manager issued the %s (serial %s, valid until %s)", what, cur.SerialNumber, cur.NotAfter.UTC().Format(time.RFC3339))
	case prev.SerialNumber != cur.SerialNumber:
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, rotated, "Rotate",
			"cert-manager renewed the %s: serial %s replaces %s, valid until %s", what, cur.SerialNumber, prev.SerialNumber, cur.NotAfter.UTC().Format(time.RFC3339))
	}
}

// checkRenewal says what is wrong with a CA certificate that cert-manager keeps
// renewed (see renewalProblem), emits a Warning Event when something is, and otherwise
// wakes the reconciler when something next can be.
func (r *MeshReconciler) checkRenewal(mesh *meshv1alpha1.Mesh, st *meshState, what, certName string, crt *cmv1.Certificate, cert *x509.Certificate, minLife time.Duration) (string, string) {
	hint := fmt.Sprintf("check that cert-manager is running and read the status and events of Certificate %s/%s (kubectl -n %s describe certificate %s)",
		r.Namespace, certName, r.Namespace, certName)
	reason, msg, wake := renewalProblem(crt, cert, minLife, r.now(), what, hint)
	if reason == "" {
		st.wakeAt(wake)
		return "", ""
	}
	r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, ReasonCertificateRenewalOverdue, "CheckRenewal", msg)
	return reason, msg
}

// renewalProblem is the pure part of checkRenewal. In order: not valid yet (clocks);
// expired; less than minLife left (for the identity issuer: the workload lifetime, below
// which the identity service refuses to sign, see identity.IssuerUsable); renewal
// overdue, that is cert-manager's renewal time for this very certificate (notAfter
// minus renewBefore, as cert-manager computes it) passed by more than renewalGrace.
// A certificate before its renewal time raises nothing, however close to its end: the
// old rule (the last 20% of its life) warned about a healthy one-year anchor for 13 days
// before cert-manager was even due to renew it. It returns the condition reason and
// message, or "" and when to look again.
func renewalProblem(crt *cmv1.Certificate, cert *x509.Certificate, minLife time.Duration, now time.Time, what, hint string) (reason, msg string, wake time.Time) {
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case now.Before(cert.NotBefore):
		return ReasonNotYetValid, fmt.Sprintf("%s is not valid before %s: check the clocks of the control-plane nodes", what, at(cert.NotBefore)), time.Time{}
	case !now.Before(cert.NotAfter):
		return ReasonExpired, fmt.Sprintf("%s expired at %s and was not renewed, so no workload gets a certificate: %s", what, at(cert.NotAfter), hint), time.Time{}
	case minLife > 0 && cert.NotAfter.Sub(now) < minLife:
		return ReasonTooCloseToExpiry, fmt.Sprintf("%s expires at %s, less than one workload certificate lifetime (%s) from now, so the identity service signs no more certificates (running workloads keep theirs until they expire): %s",
			what, at(cert.NotAfter), minLife, hint), time.Time{}
	}
	if minLife > 0 {
		wake = cert.NotAfter.Add(-minLife)
	} else {
		wake = cert.NotAfter
	}
	var spec cmv1.CertificateSpec
	if crt != nil {
		spec = crt.Spec
	}
	renewal, err := pki.RenewalTime(cert.NotBefore, cert.NotAfter, spec.RenewBefore, spec.RenewBeforePercentage, spec.Renewal)
	if err != nil || renewal == nil {
		// Renewal disabled (or a policy this cert-manager version does not know):
		// only expiry can be reported.
		return "", "", wake
	}
	due := renewal.Add(renewalGrace(cert.NotAfter.Sub(renewal.Time)))
	if now.Before(due) {
		if due.Before(wake) {
			wake = due
		}
		return "", "", wake
	}
	return ReasonRenewalOverdue, fmt.Sprintf("%s should have been renewed by cert-manager at %s and was not; it expires at %s: %s",
		what, at(renewal.Time), at(cert.NotAfter), hint), time.Time{}
}

// renewalGrace is how late a renewal may be before it is called overdue: cert-manager
// renews within seconds of the renewal time when it runs, and retries a failed
// issuance with backoff; an hour late (or a tenth of the time left between renewal time
// and expiry, for short-lived certificates) is not a hiccup any more.
func renewalGrace(renewBefore time.Duration) time.Duration {
	return min(time.Hour, renewBefore/10)
}

// leafLifetime is the workload certificate lifetime the Mesh asks for.
func leafLifetime(mesh *meshv1alpha1.Mesh) time.Duration {
	if d := mesh.Spec.Identity.Workload.Duration.Duration; d > 0 {
		return d
	}
	return 24 * time.Hour
}

// reconcileIdentity proves that a leaf signed with the loaded issuer key verifies
// against the published bundle: what the identity service does, end to end, minus the
// network.
func (r *MeshReconciler) reconcileIdentity(ctx context.Context, mesh *meshv1alpha1.Mesh, conds conditions, st *meshState) error {
	if st.issuer == nil || len(st.bundle) == 0 {
		conds.set(meshv1alpha1.ConditionIdentityReady, false, meshv1alpha1.ReasonPending,
			"Waiting for the identity issuer and the trust bundle")
		return nil
	}
	// The identity service's own rule: it refuses to sign with an issuer that is not
	// valid yet or has less than a leaf lifetime left.
	if reason, msg := identity.IssuerUsable(st.issuer.Cert, leafLifetime(mesh), r.now()); reason != "" {
		conds.set(meshv1alpha1.ConditionIdentityReady, false, ReasonSigningStopped, "The identity service refuses to sign: "+msg)
		return nil
	}
	id := identity.SPIFFEID(mesh.Spec.TrustDomain, r.Namespace, "weft-selftest")
	if err := selfTest(st.issuer, st.bundle, id, r.now()); err != nil {
		conds.set(meshv1alpha1.ConditionIdentityReady, false, ReasonUntrusted,
			fmt.Sprintf("A test leaf signed by the identity issuer does not verify against the trust bundle: %v", err))
		return nil
	}
	conds.set(meshv1alpha1.ConditionIdentityReady, true, meshv1alpha1.ReasonReady,
		fmt.Sprintf("Workload certificates signed by issuer %s verify against the %d-anchor trust bundle", mesh.Status.Issuer.SerialNumber, len(st.bundle)))
	return nil
}

func selfTest(iss *identity.Issuer, bundle []trustbundle.Entry, id string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	u, err := url.Parse(id)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Minute),
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, &key.PublicKey, iss.Key)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, e := range bundle {
		roots.AddCert(e.Cert)
	}
	for _, c := range iss.Chain {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// reconcileProxies counts the pods with a weft-proxy sidecar, and the ready ones.
func (r *MeshReconciler) reconcileProxies(ctx context.Context, mesh *meshv1alpha1.Mesh, _ conditions, _ *meshState) error {
	var pods corev1.PodList
	if err := r.List(ctx, &pods); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	var counts meshv1alpha1.ProxyCounts
	for i := range pods.Items {
		p := &pods.Items[i]
		if !hasProxy(p) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		counts.Injected++
		if podReady(p) {
			counts.Ready++
		}
	}
	mesh.Status.Proxies = counts
	return nil
}

func hasProxy(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name == inject.ProxyContainerName {
				return true
			}
		}
	}
	return false
}

// podReady reports whether the pod's proxy container is ready.
func podReady(o client.Object) bool {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, ss := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range ss {
			if s.Name == inject.ProxyContainerName {
				return s.Ready
			}
		}
	}
	return false
}
