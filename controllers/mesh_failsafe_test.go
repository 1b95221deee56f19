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
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/proxy/api"
)

// TestMeshIssuerFailSafe stops cert-manager and leaves the identity issuer near its end
// (a short-lived issuer, signed by the real anchor, written into the issuer Secret, as
// if cert-manager had issued it and then died): the identity service stops signing with
// Unavailable, the Mesh says so (Ready False with the reason), and a leaf issued before
// keeps working for mTLS until it expires.
func TestMeshIssuerFailSafe(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS, Labels: map[string]string{controllers.InjectAnnotation: "enabled"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: appSA}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "Mesh",
		"metadata": map[string]any{"name": meshv1alpha1.MeshName}, "spec": map[string]any{"trustDomain": meshTD},
	}}); err != nil {
		t.Fatal(err)
	}
	waitMeshReady(t, c, 30*time.Second)
	wantID := identity.SPIFFEID(meshTD, appNS, appSA)

	// A workload's leaf, issued while all is well.
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := m.identityClient(t, ctx)
	resp, err := cl.Certify(ctx, &api.CertifyRequest{Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
		CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}, key: leafKey})})
	if err != nil {
		t.Fatalf("Certify while healthy: %v", err)
	}
	anchors, err := m.bundle(ctx, appNS)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := verifyLeaf(resp, anchors, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// cert-manager stops; the issuer it left has ten minutes to live.
	m.stopCertManager()
	time.Sleep(time.Second)
	shortIssuer := writeShortIssuer(t, c, 10*time.Minute)
	if err := c.Patch(ctx, getMesh(t, c), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"test.weft.dev/poke":"failsafe"}}}`))); err != nil {
		t.Fatal(err)
	}

	t.Run("the Mesh reports it: Ready False with a reason that says what to do", func(t *testing.T) {
		eventually(t, 15*time.Second, func() error {
			mesh := getMesh(t, c)
			for ct, reason := range map[string]string{
				meshv1alpha1.ConditionReady:         controllers.ReasonTooCloseToExpiry,
				meshv1alpha1.ConditionIssuerReady:   controllers.ReasonTooCloseToExpiry,
				meshv1alpha1.ConditionIdentityReady: controllers.ReasonSigningStopped,
			} {
				cond := meta.FindStatusCondition(mesh.Status.Conditions, ct)
				if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
					return fmt.Errorf("%s = %+v, want False with reason %s", ct, cond, reason)
				}
			}
			ready := meta.FindStatusCondition(mesh.Status.Conditions, meshv1alpha1.ConditionReady)
			if !strings.Contains(ready.Message, "check that cert-manager is running") || !strings.Contains(ready.Message, "signs no more certificates") {
				return fmt.Errorf("Ready message %q does not say what happens and what to check", ready.Message)
			}
			t.Logf("Ready=False %s: %s", ready.Reason, ready.Message)
			return nil
		})
		waitEvent(t, c, controllers.ReasonCertificateRenewalOverdue)
	})

	t.Run("signing stops cleanly with Unavailable", func(t *testing.T) {
		cl, presented := m.identityClient(t, ctx)
		if !presented[1].Equal(shortIssuer) {
			t.Fatalf("the identity service does not serve from the issuer in the Secret yet")
		}
		issued := testutil.ToFloat64(identity.IssuedTotal)
		refused := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonIssuerExpiring))
		_, err := cl.Certify(ctx, &api.CertifyRequest{Identity: wantID, Token: []byte(m.token(t, ctx, appNS, appSA, identity.Audience)),
			CertificateSigningRequest: makeCSR(t, csrOptions{uris: []string{wantID}})})
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "less than one workload certificate lifetime") {
			t.Fatalf("Certify = %v %q, want Unavailable: the issuer is too close to its end", st.Code(), st.Message())
		}
		t.Logf("%v: %s", st.Code(), st.Message())
		if got := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonIssuerExpiring)) - refused; got != 1 {
			t.Errorf("rejected{reason=issuer_expiring} grew by %v, want 1", got)
		}
		if testutil.ToFloat64(identity.IssuedTotal) != issued {
			t.Errorf("a certificate was issued")
		}
		if testutil.ToFloat64(identity.IssuerUsableGauge) != 0 {
			t.Errorf("weft_identity_issuer_usable is not 0")
		}
	})

	t.Run("the leaf issued before keeps its mTLS until it expires", func(t *testing.T) {
		bundle, err := m.bundle(ctx, appNS)
		if err != nil {
			t.Fatal(err)
		}
		chain := [][]byte{resp.GetLeafCertificate()}
		chain = append(chain, resp.GetIntermediateCertificates()...)
		cert := tls.Certificate{Certificate: chain, PrivateKey: leafKey}
		if err := mtlsHandshake(cert, bundle, wantID); err != nil {
			t.Fatalf("an mTLS handshake with the old leaf against the current bundle failed: %v", err)
		}
		if _, _, err := verifyLeaf(resp, bundle, leaf.NotAfter.Add(-time.Minute)); err != nil {
			t.Errorf("the old leaf does not verify a minute before its expiry: %v", err)
		}
		if _, _, err := verifyLeaf(resp, bundle, leaf.NotAfter.Add(time.Minute)); err == nil {
			t.Errorf("the old leaf still verifies after its expiry")
		}
	})

	// cert-manager stayed stopped: the Secret still holds what the test wrote.
	if !issuerCert(t, c).Equal(shortIssuer) {
		t.Errorf("the issuer Secret changed: cert-manager was not stopped")
	}
}

// writeShortIssuer signs a CA with the trust anchor's key, valid from an hour ago for
// life from now, and writes it into the identity issuer Secret as cert-manager would.
func writeShortIssuer(t *testing.T, c client.Client, life time.Duration) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	anchorSecret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.TrustAnchorName}, anchorSecret); err != nil {
		t.Fatal(err)
	}
	anchor, err := identity.ParseIssuer(anchorSecret)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "weft-identity-issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(life),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, anchor.Cert, &key.PublicKey, anchor.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: controlPlaneNS, Name: controllers.IdentityIssuerName}, secret); err != nil {
		t.Fatal(err)
	}
	secret.Data[corev1.TLSCertKey] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	secret.Data[corev1.TLSPrivateKeyKey] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	secret.Data["ca.crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: anchor.Cert.Raw})
	if err := c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	return cert
}

// mtlsHandshake runs a TLS 1.3 handshake over loopback between two proxies presenting
// cert, each verifying the other against the bundle as the proxies do, and checks the
// peer's SPIFFE ID.
func mtlsHandshake(cert tls.Certificate, bundle []*x509.Certificate, id string) error {
	roots := pool(bundle...)
	checkID := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) != 1 || cs.PeerCertificates[0].URIs[0].String() != id {
			return fmt.Errorf("the peer is not %s", id)
		}
		return nil
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	_ = a.SetDeadline(time.Now().Add(10 * time.Second))
	_ = b.SetDeadline(time.Now().Add(10 * time.Second))
	srv := tls.Server(a, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, VerifyConnection: checkID})
	cli := tls.Client(b, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		RootCAs: roots, InsecureSkipVerify: true, // the proxies verify the SPIFFE ID, not a DNS name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var certs []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs = append(certs, c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool(certs[1:]...), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
		VerifyConnection: checkID})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
