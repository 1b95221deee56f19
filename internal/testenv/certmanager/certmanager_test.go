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

package certmanager_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
)

// TestSelfSignedThenCA issues a self-signed CA with the real controllers, backs a CA
// Issuer with it, and issues a leaf from that issuer: the chain a Mesh relies on.
func TestSelfSignedThenCA(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	// Only cert-manager's CRDs: this suite tests the controllers, not Weft's APIs.
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = []string{filepath.Join(repo, "config", "cert-manager", "crds")}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "cm-test"
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "selfsigned", Namespace: ns},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}},
		&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns}, Spec: cmv1.CertificateSpec{
			IsCA: true, CommonName: "root", SecretName: "root",
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"},
		}},
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: "root"}}}},
		&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "leaf", Namespace: ns}, Spec: cmv1.CertificateSpec{
			CommonName: "leaf", DNSNames: []string{"leaf.example"}, SecretName: "leaf",
			IssuerRef: cmmeta.IssuerReference{Name: "root", Kind: "Issuer"},
		}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	start := time.Now()
	secret := &corev1.Secret{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "leaf"}, secret)
		if err == nil && len(secret.Data["tls.crt"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leaf Secret was not issued within 30s (last error: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("chain issued in %v", time.Since(start).Round(time.Millisecond))

	leaf := parsePEM(t, secret.Data["tls.crt"])
	root := parsePEM(t, secret.Data["ca.crt"])
	if !root.IsCA {
		t.Fatalf("ca.crt is not a CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "leaf.example"}); err != nil {
		t.Fatalf("the leaf does not verify against the root: %v", err)
	}
}

func parsePEM(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("no PEM block in %q", data)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
