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

package controllers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/trustbundle"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

const (
	appNS  = "shop"
	appSA  = "web"
	meshTD = "cluster.local"
)

// TestMeshIdentity walks the life of a mesh's identity chain against a real API server
// and the real cert-manager controllers: apply, issue, refuse, renew, rotate, change,
// clean up. The steps share one Mesh (a cluster has exactly one) and run in order.
func TestMeshIdentity(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS, Labels: map[string]string{controllers.InjectAnnotation: "enabled"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: appSA}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "other"}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	wantID := identity.SPIFFEID(meshTD, appNS, appSA)

	// Shared across the steps.
	var (
		oldLeafResp   *api.CertifyResponse
		oldIssuer     *x509.Certificate
		anchorsBefore []*x509.Certificate
	)

	t.Run("a Mesh named other is refused", func(t *testing.T) {
		err := c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "Mesh", "metadata": map[string]any{"name": "other"},
		}})
		if err == nil || !strings.Contains(err.Error(), "must be named 'default'") {
			t.Fatalf("creating Mesh other: err = %v, want the one-mesh rule", err)
		}
	})

	t.Run("apply a Mesh: Ready within seconds, issuer verifies against the anchor", func(t *testing.T) {
		start := time.Now()
		// Unstructured, as kubectl sends it: a typed Go object would send zero
		// durations instead of leaving the schema's defaults to the API server.
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": meshv1alpha1.GroupVersion.String(),
			"kind":       "Mesh",
			"metadata":   map[string]any{"name": meshv1alpha1.MeshName},
			"spec":       map[string]any{"trustDomain": meshTD},
		}}
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		mesh := waitMeshReady(t, c, 30*time.Second)
		t.Logf("Mesh Ready=True %v after creation", time.Since(start).Round(time.Millisecond))
		for _, ct := range []string{meshv1alpha1.ConditionAccepted, meshv1alpha1.ConditionTrustAnchorReady, meshv1alpha1.ConditionIssuerReady, meshv1alpha1.ConditionIdentityReady} {
			if cond := meta.FindStatusCondition(mesh.Status.Conditions, ct); cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != mesh.Generation {
				t.Errorf("condition %s = %+v, want True at generation %d", ct, cond, mesh.Generation)
			}
		}
		if !slices.Contains(mesh.Finalizers, controllers.MeshFinalizer) {
			t.Errorf("finalizers = %v, want %s", mesh.Finalizers, controllers.MeshFinalizer)
		}
		if mesh.Status.TrustAnchor == nil || mesh.Status.TrustAnchor.NotAfter == nil || mesh.Status.Issuer == nil || mesh.Status.Issuer.NotAfter == nil {
			t.Fatalf("status lacks notAfter: trustAnchor=%+v issuer=%+v", mesh.Status.TrustAnchor, mesh.Status.Issuer)
		}
		// Defaults: anchor about a year, issuer 30 days.
		if d := time.Until(mesh.Status.TrustAnchor.NotAfter.Time); d < 8759*time.Hour || d > 8761*time.Hour {
			t.Errorf("anchor lives %v, want 8760h", d)
		}
		if d := time.Until(mesh.Status.Issuer.NotAfter.Time); d < 719*time.Hour || d > 721*time.Hour {
			t.Errorf("issuer lives %v, want 720h", d)
		}

		// The chain objects exist, owned by the Mesh, with the contracted names.
		crt := &cmv1.Certificate{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, crt); err != nil {
			t.Fatal(err)
		}
		if !crt.Spec.IsCA || crt.Spec.RenewBefore.Duration != 480*time.Hour || crt.Spec.PrivateKey.RotationPolicy != cmv1.RotationPolicyAlways ||
			crt.Spec.PrivateKey.Algorithm != cmv1.ECDSAKeyAlgorithm || crt.Spec.PrivateKey.Size != 256 {
			t.Errorf("identity issuer Certificate spec = %+v", crt.Spec)
		}
		if len(crt.OwnerReferences) != 1 || crt.OwnerReferences[0].UID != mesh.UID {
			t.Errorf("identity issuer owners = %+v, want the Mesh", crt.OwnerReferences)
		}

		anchors, err := m.bundle(ctx, controlPlaneNS)
		if err != nil {
			t.Fatal(err)
		}
		if len(anchors) != 1 {
			t.Fatalf("bundle has %d anchors, want 1", len(anchors))
		}
		if copyAnchors, err := m.bundle(ctx, appNS); err != nil || len(copyAnchors) != 1 || !copyAnchors[0].Equal(anchors[0]) {
			t.Fatalf("bundle in meshed namespace %s = %d anchors, %v; want the same anchor", appNS, len(copyAnchors), err)
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, secret); err != nil {
			t.Fatal(err)
		}
		iss, err := identity.ParseIssuer(secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: pool(anchors...), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("the identity issuer does not verify against the anchor: %v", err)
		}
		if fmt.Sprintf("%x", iss.Cert.SerialNumber) != mesh.Status.Issuer.SerialNumber {
			t.Errorf("status.issuer.serialNumber = %s, the Secret holds %x", mesh.Status.Issuer.SerialNumber, iss.Cert.SerialNumber)
		}
		for _, reason := range []string{controllers.ReasonTrustAnchorIssued, controllers.ReasonIssuerIssued, controllers.ReasonTrustBundleUpdated} {
			waitEvent(t, c, reason)
		}
		oldIssuer = iss.Cert
		anchorsBefore = anchors
	})

	t.Run("a CSR with a real ServiceAccount token gets a leaf with exactly its SPIFFE ID", func(t *testing.T) {
		cl, presented := m.identityClient(t, ctx)
		// The service's own certificate comes from the same chain.
		if _, err := presented[0].Verify(x509.VerifyOptions{Roots: pool(anchorsBefore...), Intermediates: pool(presented[1:]...),
			DNSName: identity.ServiceName + "." + controlPlaneNS + ".svc"}); err != nil {
			t.Fatalf("the serving certificate does not verify against the bundle: %v", err)
		}
		issuedBefore := testutil.ToFloat64(identity.IssuedTotal)
		resp, err := cl.Certify(ctx, &api.CertifyRequest{
			Identity:                  wantID,
			Token:                     []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
			CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
		})
		if err != nil {
			t.Fatalf("Certify: %v", err)
		}
		leaf, chain, err := verifyLeaf(resp, anchorsBefore, time.Now())
		if err != nil {
			t.Fatalf("the leaf does not verify against the published bundle: %v", err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID {
			t.Errorf("leaf URIs = %v, want exactly %s", leaf.URIs, wantID)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.IsCA {
			t.Errorf("leaf has DNS %v IP %v email %v CA %v; want none", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.IsCA)
		}
		if d := time.Until(leaf.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("leaf lives %v, want 24h", d)
		}
		if !chain[0].Equal(oldIssuer) {
			t.Errorf("the leaf's intermediate is not the identity issuer")
		}
		if got := testutil.ToFloat64(identity.IssuedTotal) - issuedBefore; got != 1 {
			t.Errorf("issued metric grew by %v, want 1", got)
		}
		if got, want := testutil.ToFloat64(identity.IssuerExpiry), float64(oldIssuer.NotAfter.Unix()); got != want {
			t.Errorf("issuer expiry gauge = %v, want %v", got, want)
		}
		if got, want := testutil.ToFloat64(identity.AnchorExpiry), float64(anchorsBefore[0].NotAfter.Unix()); got != want {
			t.Errorf("anchor expiry gauge = %v, want %v", got, want)
		}
		// An Ed25519 key is accepted as well.
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		edResp, err := cl.Certify(ctx, &api.CertifyRequest{
			Identity:                  wantID,
			Token:                     []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
			CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}, key: edKey}),
		})
		if err != nil {
			t.Fatalf("Certify with an Ed25519 key: %v", err)
		}
		if edLeaf, _, err := verifyLeaf(edResp, anchorsBefore, time.Now()); err != nil {
			t.Fatalf("the Ed25519 leaf does not verify: %v", err)
		} else if _, ok := edLeaf.PublicKey.(ed25519.PublicKey); !ok {
			t.Errorf("the leaf's key is %T, want the CSR's Ed25519 key", edLeaf.PublicKey)
		}
		oldLeafResp = resp
	})

	t.Run("bad input is refused and signs nothing", func(t *testing.T) {
		cl, _ := m.identityClient(t, ctx)
		goodToken := m.token(t, ctx, appNS, appSA, identity.Audience)
		// A ServiceAccount deleted after its token was issued.
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "gone"}}); err != nil {
			t.Fatal(err)
		}
		goneToken := m.token(t, ctx, appNS, "gone", identity.Audience)
		if err := c.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "gone"}}); err != nil {
			t.Fatal(err)
		}
		// The API server checks ServiceAccounts through its own informer; wait until it
		// has seen the deletion so the case below tests the service, not that lag.
		eventually(t, 10*time.Second, func() error {
			tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: goneToken, Audiences: []string{identity.Audience}}}
			if err := c.Create(ctx, tr); err != nil {
				return err
			}
			if tr.Status.Authenticated {
				return fmt.Errorf("the API server still accepts the token of the deleted ServiceAccount")
			}
			return nil
		})
		expired := resignToken(t, goodToken, m.apiServerSigningKey(t), func(cl map[string]any) {
			past := time.Now().Add(-2 * time.Hour).Unix()
			cl["iat"], cl["nbf"], cl["exp"] = past-600, past-600, past
		})
		forgeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		forged := resignToken(t, goodToken, forgeKey, func(map[string]any) {})
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		otherID := identity.SPIFFEID(meshTD, appNS, "other")

		cases := []struct {
			name     string
			identity string
			token    string
			csr      []byte
			code     codes.Code
			reason   string
			msg      string
		}{
			{"malformed CSR", wantID, goodToken, []byte("not a CSR"), codes.InvalidArgument, identity.ReasonMalformedCSR, "not a valid PKCS#10"},
			{"missing CSR", wantID, goodToken, nil, codes.InvalidArgument, identity.ReasonMalformedRequest, "are all required"},
			{"CSR and request for another identity", otherID, goodToken, makeCSR(t, csrOptions{uris: []string{otherID}}), codes.PermissionDenied, identity.ReasonIdentityMismatch, "whose identity is " + wantID},
			{"CSR URI differs from the requested identity", wantID, goodToken, makeCSR(t, csrOptions{uris: []string{otherID}}), codes.InvalidArgument, identity.ReasonCSRIdentity, "not the requested identity"},
			{"CSR without URI", wantID, goodToken, makeCSR(t, csrOptions{}), codes.InvalidArgument, identity.ReasonCSRIdentity, "no URI SAN"},
			{"extra DNS SAN", wantID, goodToken, makeCSR(t, csrOptions{uris: []string{wantID}, dnsNames: []string{"evil.example"}}), codes.InvalidArgument, identity.ReasonExtraSANs, "DNS:evil.example"},
			{"extra URI SAN", wantID, goodToken, makeCSR(t, csrOptions{uris: []string{wantID, otherID}}), codes.InvalidArgument, identity.ReasonExtraSANs, "URI:" + otherID},
			{"CA bit", wantID, goodToken, makeCSR(t, csrOptions{uris: []string{wantID}, isCA: true}), codes.InvalidArgument, identity.ReasonCARequested, "CA certificate"},
			{"RSA key", wantID, goodToken, makeCSR(t, csrOptions{uris: []string{wantID}, key: rsaKey}), codes.InvalidArgument, identity.ReasonUnsupportedKey, "ECDSA P-256 or Ed25519"},
			// Token refusals tell the caller only "token rejected"; the reason is in the
			// metric label and the log.
			{"token for another audience", wantID, m.token(t, ctx, appNS, appSA, "vault"), makeCSR(t, csrOptions{uris: []string{wantID}}), codes.Unauthenticated, identity.ReasonTokenAudience, "token rejected"},
			{"expired token", wantID, expired, makeCSR(t, csrOptions{uris: []string{wantID}}), codes.Unauthenticated, identity.ReasonTokenExpired, "token rejected"},
			{"forged token", wantID, forged, makeCSR(t, csrOptions{uris: []string{wantID}}), codes.Unauthenticated, identity.ReasonTokenRejected, "token rejected"},
			{"token of a deleted ServiceAccount", identity.SPIFFEID(meshTD, appNS, "gone"), goneToken, makeCSR(t, csrOptions{uris: []string{identity.SPIFFEID(meshTD, appNS, "gone")}}), codes.Unauthenticated, identity.ReasonTokenRejected, "token rejected"},
			{"garbage token", wantID, "abc", makeCSR(t, csrOptions{uris: []string{wantID}}), codes.Unauthenticated, identity.ReasonTokenMalformed, "token rejected"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				issued := testutil.ToFloat64(identity.IssuedTotal)
				rejected := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(tc.reason))
				resp, err := cl.Certify(ctx, &api.CertifyRequest{Identity: tc.identity, Token: []byte(tc.token), CertificateSigningRequest: tc.csr})
				if err == nil {
					t.Fatalf("Certify signed a leaf: %d bytes", len(resp.GetLeafCertificate()))
				}
				st := status.Convert(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
					t.Fatalf("status = %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
				}
				t.Logf("%v: %s", st.Code(), st.Message())
				if got := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(tc.reason)) - rejected; got != 1 {
					t.Errorf("rejected{reason=%q} grew by %v, want 1", tc.reason, got)
				}
				if got := testutil.ToFloat64(identity.IssuedTotal) - issued; got != 0 {
					t.Errorf("issued grew by %v, want 0", got)
				}
			})
		}
	})

	t.Run("forced issuer renewal: new leaves from the new issuer, old leaves still verify, no restart", func(t *testing.T) {
		if oldLeafResp == nil {
			t.Skip("needs the leaf of the previous step")
		}
		oldSerial := getMesh(t, c).Status.Issuer.SerialNumber
		if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		eventually(t, 30*time.Second, func() error {
			mesh := getMesh(t, c)
			if mesh.Status.Issuer == nil || mesh.Status.Issuer.SerialNumber == oldSerial {
				return fmt.Errorf("status.issuer.serialNumber is still %s", oldSerial)
			}
			if !meta.IsStatusConditionTrue(mesh.Status.Conditions, meshv1alpha1.ConditionReady) {
				return fmt.Errorf("Ready is not True: %+v", mesh.Status.Conditions)
			}
			return nil
		})
		t.Logf("issuer re-issued and Mesh Ready again %v after deleting its Secret", time.Since(start).Round(time.Millisecond))
		waitEvent(t, c, controllers.ReasonIssuerRotated)

		anchors, err := m.bundle(ctx, controlPlaneNS)
		if err != nil {
			t.Fatal(err)
		}
		cl, presented := m.identityClient(t, ctx)
		var newIssuer *x509.Certificate
		eventually(t, 10*time.Second, func() error {
			resp, err := cl.Certify(ctx, &api.CertifyRequest{
				Identity:                  wantID,
				Token:                     []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
				CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
			})
			if err != nil {
				return err
			}
			_, chain, err := verifyLeaf(resp, anchors, time.Now())
			if err != nil {
				return err
			}
			if chain[0].Equal(oldIssuer) {
				return fmt.Errorf("the leaf is still signed by the old issuer")
			}
			newIssuer = chain[0]
			return nil
		})
		if fmt.Sprintf("%x", newIssuer.SerialNumber) == oldSerial {
			t.Fatalf("new leaf signed by issuer %x, the old serial", newIssuer.SerialNumber)
		}
		if bytes.Equal(newIssuer.SubjectKeyId, oldIssuer.SubjectKeyId) {
			t.Errorf("the new issuer kept the old key; rotationPolicy Always should replace it")
		}
		if _, _, err := verifyLeaf(oldLeafResp, anchors, time.Now()); err != nil {
			t.Fatalf("the leaf from the old issuer no longer verifies: %v", err)
		}
		// The serving certificate of a new connection comes from the new issuer too.
		if presented[0].CheckSignatureFrom(newIssuer) != nil {
			t.Errorf("the serving certificate is not signed by the new issuer")
		}
		oldIssuer = newIssuer
	})

	t.Run("trust anchor rotation: old -> old+new -> new, no valid leaf ever fails", func(t *testing.T) {
		if oldLeafResp == nil {
			t.Skip("needs the leaf of the previous step")
		}
		anchorsBefore, err := m.bundle(ctx, controlPlaneNS)
		if err != nil || len(anchorsBefore) != 1 {
			t.Fatalf("bundle before rotation: %d anchors, %v", len(anchorsBefore), err)
		}
		oldAnchor := anchorsBefore[0]
		// A leaf issued just before the rotation, by the current issuer.
		cl, _ := m.identityClient(t, ctx)
		preResp, err := cl.Certify(ctx, &api.CertifyRequest{
			Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
			CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
		})
		if err != nil {
			t.Fatal(err)
		}
		leaves := []*api.CertifyResponse{oldLeafResp, preResp}

		// Watch the published bundle in the meshed namespace the whole time, as a proxy
		// would see it, and check every still-valid leaf against every version.
		var (
			mu       sync.Mutex
			versions [][]string // fingerprints of each distinct bundle, in order
			failures []string
		)
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			var last string
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				anchors, err := m.bundle(ctx, appNS)
				if err != nil {
					continue
				}
				now := m.clock.Now()
				var fps []string
				for _, a := range anchors {
					fps = append(fps, trustbundle.Fingerprint(a)[:12])
				}
				key := strings.Join(fps, "+")
				mu.Lock()
				if key != last {
					versions = append(versions, fps)
					last = key
				}
				for i, l := range leaves {
					leaf, _ := x509.ParseCertificate(l.GetLeafCertificate())
					if !now.Before(leaf.NotAfter) {
						continue // expired: may be untrusted
					}
					if _, _, err := verifyLeaf(l, anchors, now); err != nil {
						failures = append(failures, fmt.Sprintf("leaf %d against bundle %s at %s: %v", i, key, now.Format(time.RFC3339), err))
					}
				}
				mu.Unlock()
			}
		}()

		start := time.Now()
		if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNS, Name: controllers.TrustAnchorName}}); err != nil {
			t.Fatal(err)
		}
		var newAnchor *x509.Certificate
		eventually(t, 30*time.Second, func() error {
			anchors, err := m.bundle(ctx, controlPlaneNS)
			if err != nil {
				return err
			}
			if len(anchors) != 2 || !anchors[1].Equal(oldAnchor) {
				return fmt.Errorf("bundle has %d anchors, want new+old", len(anchors))
			}
			newAnchor = anchors[0]
			return nil
		})
		t.Logf("old+new bundle published %v after the anchor Secret was deleted", time.Since(start).Round(time.Millisecond))
		waitEvent(t, c, controllers.ReasonTrustAnchorRotated)

		// After BundlePropagation the reconciler has cert-manager re-issue the issuer
		// under the new anchor, and new leaves chain to it.
		eventually(t, 30*time.Second, func() error {
			secret := &corev1.Secret{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, secret); err != nil {
				return err
			}
			iss, err := identity.ParseIssuer(secret)
			if err != nil {
				return err
			}
			if iss.Cert.CheckSignatureFrom(newAnchor) != nil {
				return fmt.Errorf("the identity issuer is not yet signed by the new anchor")
			}
			return nil
		})
		waitEvent(t, c, controllers.ReasonIssuerRenewalTriggered)
		t.Logf("identity issuer re-issued under the new anchor %v after the rotation began", time.Since(start).Round(time.Millisecond))
		var postResp *api.CertifyResponse
		eventually(t, 10*time.Second, func() error {
			resp, err := cl.Certify(ctx, &api.CertifyRequest{
				Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
				CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
			})
			if err != nil {
				return err
			}
			if _, _, err := verifyLeaf(resp, []*x509.Certificate{newAnchor}, time.Now()); err != nil {
				return fmt.Errorf("a new leaf does not chain to the new anchor alone: %w", err)
			}
			postResp = resp
			return nil
		})
		mu.Lock()
		leaves = append(leaves, postResp)
		mu.Unlock()

		// The old anchor stays while leaves signed under it may be valid.
		time.Sleep(time.Second)
		if anchors, _ := m.bundle(ctx, controlPlaneNS); len(anchors) != 2 {
			t.Fatalf("the old anchor was dropped while leaves under it are valid: %d anchors", len(anchors))
		}
		// Fast-forward the reconciler's clock past the last old leaf's life and the
		// grace; poke the Mesh so it looks again.
		m.clock.Advance(24*time.Hour + 2*time.Minute)
		mesh := getMesh(t, c)
		patch := client.MergeFrom(mesh.DeepCopy())
		mesh.Annotations = map[string]string{"test.weft.dev/poke": "1"}
		if err := c.Patch(ctx, mesh, patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			anchors, err := m.bundle(ctx, appNS)
			if err != nil {
				return err
			}
			if len(anchors) != 1 || !anchors[0].Equal(newAnchor) {
				return fmt.Errorf("bundle in %s has %d anchors, want the new one only", appNS, len(anchors))
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond)
		close(stop)
		<-watched

		mu.Lock()
		defer mu.Unlock()
		if len(failures) > 0 {
			t.Fatalf("a valid leaf failed against a published bundle:\n%s", strings.Join(failures, "\n"))
		}
		oldFP, newFP := trustbundle.Fingerprint(oldAnchor)[:12], trustbundle.Fingerprint(newAnchor)[:12]
		want := [][]string{{oldFP}, {newFP, oldFP}, {newFP}}
		if !slices.EqualFunc(versions, want, slices.Equal) {
			t.Fatalf("bundle versions = %v, want %v", versions, want)
		}
		t.Logf("bundle versions seen in %s: %v", appNS, versions)
		if _, _, err := verifyLeaf(postResp, []*x509.Certificate{newAnchor}, time.Now()); err != nil {
			t.Fatalf("the post-rotation leaf fails against the final bundle: %v", err)
		}
		waitMeshReady(t, c, 10*time.Second)
	})

	t.Run("a spec change updates the chain and observedGeneration", func(t *testing.T) {
		mesh := getMesh(t, c)
		patch := client.MergeFrom(mesh.DeepCopy())
		mesh.Spec.Identity.Issuer.Duration = metav1.Duration{Duration: 960 * time.Hour}
		if err := c.Patch(ctx, mesh, patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			crt := &cmv1.Certificate{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, crt); err != nil {
				return err
			}
			if crt.Spec.Duration == nil || crt.Spec.Duration.Duration != 960*time.Hour {
				return fmt.Errorf("identity issuer duration = %v, want 960h", crt.Spec.Duration)
			}
			// cert-manager re-issues the issuer to match the new spec.
			iss := issuerCert(t, c)
			if life := iss.NotAfter.Sub(iss.NotBefore); life != 960*time.Hour {
				return fmt.Errorf("the issued identity issuer lives %v, want 960h", life)
			}
			got := getMesh(t, c)
			if got.Status.ObservedGeneration != got.Generation || !conditionIs(got.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, got.Generation) {
				return fmt.Errorf("status at generation %d, object at %d", got.Status.ObservedGeneration, got.Generation)
			}
			return nil
		})
	})

	t.Run("spec.tracing: TracingReady True while set, gone when removed, Ready stays", func(t *testing.T) {
		setTracing := func(tracing map[string]any) {
			t.Helper()
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(meshv1alpha1.GroupVersion.WithKind("Mesh"))
			u.SetName(meshv1alpha1.MeshName)
			var patch []byte
			if tracing == nil {
				patch = []byte(`{"spec":{"tracing":null}}`)
			} else {
				b, err := json.Marshal(map[string]any{"spec": map[string]any{"tracing": tracing}})
				if err != nil {
					t.Fatal(err)
				}
				patch = b
			}
			if err := c.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
		setTracing(map[string]any{"collector": "jaeger.tracing.svc.cluster.local:4317", "samplingRate": "0.5"})
		eventually(t, 15*time.Second, func() error {
			got := getMesh(t, c)
			cond := meta.FindStatusCondition(got.Status.Conditions, meshv1alpha1.ConditionTracingReady)
			if !conditionIs(got.Status.Conditions, meshv1alpha1.ConditionTracingReady, metav1.ConditionTrue, controllers.ReasonTracingEnabled, got.Generation) {
				return fmt.Errorf("TracingReady %+v at generation %d", cond, got.Generation)
			}
			if !strings.Contains(cond.Message, "jaeger.tracing.svc.cluster.local:4317") || !strings.Contains(cond.Message, "50%") {
				return fmt.Errorf("TracingReady message %q does not say where and how much", cond.Message)
			}
			if !conditionIs(got.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, got.Generation) {
				return fmt.Errorf("Ready not True with tracing on: %+v", got.Status.Conditions)
			}
			return nil
		})
		setTracing(nil)
		eventually(t, 15*time.Second, func() error {
			got := getMesh(t, c)
			if cond := meta.FindStatusCondition(got.Status.Conditions, meshv1alpha1.ConditionTracingReady); cond != nil || got.Status.ObservedGeneration != got.Generation {
				return fmt.Errorf("TracingReady %+v after spec.tracing was removed (observed generation %d of %d)", cond, got.Status.ObservedGeneration, got.Generation)
			}
			return nil
		})
	})

	t.Run("an issuer renewal overdue by more than the grace turns IssuerReady and Ready False", func(t *testing.T) {
		mesh := getMesh(t, c)
		// Move the reconciler's clock past cert-manager's renewal time of the issuer in
		// the Secret (notAfter - renewBefore) plus the hour of grace; cert-manager, on
		// real time, sees no reason to renew.
		iss := issuerCert(t, c)
		target := iss.NotAfter.Add(-mesh.Spec.Identity.Issuer.RenewBefore.Duration).Add(time.Hour + time.Minute)
		m.clock.Advance(time.Until(target) - time.Until(m.clock.Now()))
		patch := client.MergeFrom(mesh.DeepCopy())
		mesh.Annotations = map[string]string{"test.weft.dev/poke": "overdue"}
		if err := c.Patch(ctx, mesh, patch); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, c, controllers.ReasonCertificateRenewalOverdue)
		eventually(t, 10*time.Second, func() error {
			got := getMesh(t, c)
			cond := meta.FindStatusCondition(got.Status.Conditions, meshv1alpha1.ConditionIssuerReady)
			if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != controllers.ReasonRenewalOverdue ||
				!strings.Contains(cond.Message, "should have been renewed") || !strings.Contains(cond.Message, "describe certificate "+controllers.IdentityIssuerName) {
				return fmt.Errorf("IssuerReady = %+v, want False with reason %s", cond, controllers.ReasonRenewalOverdue)
			}
			if ready := meta.FindStatusCondition(got.Status.Conditions, meshv1alpha1.ConditionReady); ready == nil ||
				ready.Status != metav1.ConditionFalse || ready.Reason != controllers.ReasonRenewalOverdue {
				return fmt.Errorf("Ready = %+v, want False with reason %s", ready, controllers.ReasonRenewalOverdue)
			}
			return nil
		})
		// Back to real time for the steps that follow.
		m.clock.Advance(-time.Until(m.clock.Now()))
		if err := c.Patch(ctx, getMesh(t, c), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"test.weft.dev/poke":"3"}}}`))); err != nil {
			t.Fatal(err)
		}
		waitMeshReady(t, c, 10*time.Second)
	})

	t.Run("proxy counts follow injected pods", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "web-0"},
			Spec: corev1.PodSpec{
				ServiceAccountName: appSA,
				InitContainers: []corev1.Container{{Name: "weft-proxy", Image: "weft-proxy:dev",
					RestartPolicy: new(corev1.ContainerRestartPolicyAlways)}},
				Containers: []corev1.Container{{Name: "app", Image: "app"}},
			},
		}
		plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "plain"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		for _, p := range []*corev1.Pod{pod, plain} {
			if err := c.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		wantCounts(t, c, meshv1alpha1.ProxyCounts{Injected: 1, Ready: 0})
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "weft-proxy", Ready: true, Image: "weft-proxy:dev"}}
		if err := c.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, c, meshv1alpha1.ProxyCounts{Injected: 1, Ready: 1})
	})

	t.Run("a namespace annotated for injection later gets the bundle", func(t *testing.T) {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late",
			Annotations: map[string]string{controllers.InjectAnnotation: "enabled"}}}); err != nil {
			t.Fatal(err)
		}
		want, err := m.bundle(ctx, controlPlaneNS)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			got, err := m.bundle(ctx, "late")
			if err != nil {
				return err
			}
			if !slices.EqualFunc(got, want, (*x509.Certificate).Equal) {
				return fmt.Errorf("bundle in namespace late differs from the control plane's")
			}
			return nil
		})
	})

	t.Run("per-pod opt-in: the bundle follows injected pods, a squatting ConfigMap is overwritten", func(t *testing.T) {
		// A namespace that is not meshed, where a user created a ConfigMap named
		// weft-trust-roots holding their own CA before any pod was injected.
		const solo = "solo"
		rogue := rogueAnchorPEM(t)
		for _, o := range []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: solo}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: solo, Name: controllers.TrustRootsName},
				Data: map[string]string{controllers.TrustRootsKey: rogue}},
		} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		// A pod opted in by its own label, as the injector leaves it.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: solo, Name: "opted-in",
				Labels: map[string]string{controllers.InjectAnnotation: "enabled", "weft.dev/injected": "true"}},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "weft-proxy", Image: "weft-proxy:dev",
					RestartPolicy: new(corev1.ContainerRestartPolicyAlways)}},
				Containers: []corev1.Container{{Name: "app", Image: "app"}},
			},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		want, err := m.bundle(ctx, controlPlaneNS)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: solo, Name: controllers.TrustRootsName}, cm); err != nil {
				return err
			}
			got, err := trustbundle.ParsePEM([]byte(cm.Data[controllers.TrustRootsKey]))
			if err != nil {
				return err
			}
			if !slices.EqualFunc(got, want, (*x509.Certificate).Equal) {
				return fmt.Errorf("bundle in namespace %s (%d certificates) is not the control plane's (%d)", solo, len(got), len(want))
			}
			if cm.Labels["app.kubernetes.io/managed-by"] != "weft-controller" || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].Kind != "Mesh" {
				return fmt.Errorf("the ConfigMap is not marked as Weft's: labels %v, owners %v", cm.Labels, cm.OwnerReferences)
			}
			return nil
		})
		// The last injected pod leaves: so does the bundle.
		if err := c.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			if _, err := m.bundle(ctx, solo); !apierrors.IsNotFound(err) {
				return fmt.Errorf("bundle in %s: err = %v, want NotFound once no injected pod is left", solo, err)
			}
			return nil
		})
	})

	t.Run("a namespace that leaves the mesh loses its bundle", func(t *testing.T) {
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, types.NamespacedName{Name: appNS}, ns); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(ns.DeepCopy())
		ns.Labels[controllers.InjectAnnotation] = "disabled"
		if err := c.Patch(ctx, ns, patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			_, err := m.bundle(ctx, appNS)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("bundle in %s: err = %v, want NotFound", appNS, err)
			}
			return nil
		})
	})

	t.Run("deleting the Mesh removes what it created", func(t *testing.T) {
		if err := c.Delete(ctx, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			if err := c.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, &meshv1alpha1.Mesh{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Mesh still exists (err %v)", err)
			}
			for _, o := range []client.Object{
				&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: controllers.TrustAnchorName}},
				&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: controllers.IdentityIssuerName}},
				&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: controllers.TrustAnchorName}},
				&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: controllers.SelfSignedIssuerName}},
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: controllers.TrustRootsName}},
			} {
				if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: o.GetName()}, o); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%T %s still exists (err %v)", o, o.GetName(), err)
				}
			}
			if _, err := m.bundle(ctx, "late"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the bundle in namespace late still exists (err %v)", err)
			}
			// cert-manager may recreate a Secret between our delete and its
			// Certificate's deletion; the final state is what counts.
			for _, name := range []string{controllers.TrustAnchorName, controllers.IdentityIssuerName} {
				if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("Secret %s still exists (err %v)", name, err)
				}
			}
			return nil
		})
		// With no issuer left the identity service has nothing to serve or sign with:
		// clients get Unavailable, and nothing is signed.
		conn, err := grpc.NewClient(m.identityAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, // nothing is trusted here: the call must fail
			MinVersion:         tls.VersionTLS13,
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = apigrpc.NewIdentityClient(conn).Certify(ctx, &api.CertifyRequest{Identity: wantID, Token: []byte("x"), CertificateSigningRequest: []byte("x")})
		if st := status.Convert(err); st.Code() != codes.Unavailable {
			t.Fatalf("Certify without a Mesh: %v, want Unavailable", err)
		}
	})
}

// TestMeshExternalIssuer roots the chain in an existing cert-manager CA issuer
// (bring-your-own-CA): the Mesh waits for it with an actionable condition, then issues
// its trust anchor from it.
func TestMeshExternalIssuer(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: appSA}}); err != nil {
		t.Fatal(err)
	}
	wantID := identity.SPIFFEID(meshTD, appNS, appSA)

	// The service called directly (no TLS: there is no issuer to serve with yet),
	// reading the real API server: without a Mesh, and then without an issuer, it
	// refuses with Unavailable and says what is missing.
	direct, err := identity.New(identity.Config{Namespace: controlPlaneNS, Reader: c, Reviewer: c})
	if err != nil {
		t.Fatal(err)
	}
	certifyDirect := func() error {
		_, err := direct.Certify(ctx, &api.CertifyRequest{
			Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
			CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
		})
		return err
	}
	if st := status.Convert(certifyDirect()); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no Mesh") {
		t.Fatalf("Certify without a Mesh: %v %q, want Unavailable naming the Mesh", st.Code(), st.Message())
	}

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(),
		"kind":       "Mesh",
		"metadata":   map[string]any{"name": meshv1alpha1.MeshName},
		"spec": map[string]any{"identity": map[string]any{
			"externalIssuerRef": map[string]any{"name": "corp-ca", "kind": "Issuer"},
		}},
	}}
	if err := c.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		mesh := getMesh(t, c)
		cond := meta.FindStatusCondition(mesh.Status.Conditions, meshv1alpha1.ConditionTrustAnchorReady)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != meshv1alpha1.ReasonRefNotFound || !strings.Contains(cond.Message, "corp-ca") {
			return fmt.Errorf("TrustAnchorReady = %+v, want False/RefNotFound naming corp-ca", cond)
		}
		if meta.IsStatusConditionTrue(mesh.Status.Conditions, meshv1alpha1.ConditionReady) {
			return fmt.Errorf("Ready is True without a trust anchor")
		}
		return nil
	})
	if st := status.Convert(certifyDirect()); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "issuer Secret does not exist") {
		t.Fatalf("Certify without an issuer: %v %q, want Unavailable naming the issuer Secret", st.Code(), st.Message())
	}

	// The organisation's CA: a self-signed root and a CA issuer backed by it.
	for _, o := range []client.Object{
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-bootstrap", Namespace: controlPlaneNS},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}},
		&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "corp-root", Namespace: controlPlaneNS}, Spec: cmv1.CertificateSpec{
			IsCA: true, CommonName: "Corp Root CA", SecretName: "corp-root",
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "corp-bootstrap", Kind: "Issuer"},
		}},
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-ca", Namespace: controlPlaneNS},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: "corp-root"}}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitMeshReady(t, c, 30*time.Second)

	root := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: "corp-root"}, root); err != nil {
		t.Fatal(err)
	}
	rootCerts, err := trustbundle.ParsePEM(root.Data[corev1.TLSCertKey])
	if err != nil || len(rootCerts) == 0 {
		t.Fatalf("corp root: %v", err)
	}
	anchors, err := m.bundle(ctx, controlPlaneNS)
	if err != nil || len(anchors) != 1 {
		t.Fatalf("bundle: %d anchors, %v", len(anchors), err)
	}
	if err := anchors[0].CheckSignatureFrom(rootCerts[0]); err != nil {
		t.Fatalf("the trust anchor is not signed by the external CA: %v", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.SelfSignedIssuerName}, &cmv1.Issuer{}); !apierrors.IsNotFound(err) {
		t.Errorf("the self-signed bootstrap issuer exists with an external issuer (err %v)", err)
	}

	// A workload certificate verifies against the published bundle.
	cl, _ := m.identityClient(t, ctx)
	resp, err := cl.Certify(ctx, &api.CertifyRequest{
		Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
		CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}}),
	})
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	if _, _, err := verifyLeaf(resp, anchors, time.Now()); err != nil {
		t.Fatalf("the leaf does not verify against the bundle: %v", err)
	}
}

// issuerCert returns the identity issuer certificate cert-manager issued.
func issuerCert(t *testing.T, c client.Client) *x509.Certificate {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, secret); err != nil {
		t.Fatal(err)
	}
	iss, err := identity.ParseIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	return iss.Cert
}

func getMesh(t *testing.T, c client.Client) *meshv1alpha1.Mesh {
	t.Helper()
	mesh := &meshv1alpha1.Mesh{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); err != nil {
		t.Fatal(err)
	}
	return mesh
}

func waitMeshReady(t *testing.T, c client.Client, timeout time.Duration) *meshv1alpha1.Mesh {
	t.Helper()
	var mesh *meshv1alpha1.Mesh
	eventually(t, timeout, func() error {
		mesh = getMesh(t, c)
		if !conditionIs(mesh.Status.Conditions, meshv1alpha1.ConditionReady, metav1.ConditionTrue, meshv1alpha1.ReasonReady, mesh.Generation) {
			return fmt.Errorf("Mesh not Ready at generation %d: %+v", mesh.Generation, mesh.Status.Conditions)
		}
		return nil
	})
	return mesh
}

func waitEvent(t *testing.T, c client.Client, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		// Events about a cluster-scoped object land in the default namespace.
		ok, err := hasEvent(context.Background(), c, metav1.NamespaceDefault, meshv1alpha1.MeshName, reason)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no %s Event about the Mesh", reason)
		}
		return nil
	})
}

func wantCounts(t *testing.T, c client.Client, want meshv1alpha1.ProxyCounts) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if got := getMesh(t, c).Status.Proxies; got != want {
			return fmt.Errorf("status.proxies = %+v, want %+v", got, want)
		}
		return nil
	})
}
