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

package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const id = "spiffe://cluster.local/ns/shop/sa/web"

func mustKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrDER(t *testing.T, key crypto.Signer, mutate func(*x509.CertificateRequest)) []byte {
	t.Helper()
	u, _ := url.Parse(id)
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{u}}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func basicConstraints(t *testing.T, isCA bool) pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v}
}

func TestCheckCSR(t *testing.T) {
	p256 := mustKey(t, elliptic.P256())
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/other")
	good := csrDER(t, p256, nil)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 0xff // breaks the signature

	cases := []struct {
		name   string
		raw    []byte
		reason string // "" = accepted
	}{
		{"P-256 with exactly the identity", good, ""},
		{"Ed25519 with exactly the identity", csrDER(t, edKey, nil), ""},
		{"PEM-wrapped", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), ""},
		{"basicConstraints CA false is harmless", csrDER(t, p256, func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{basicConstraints(t, false)}
		}), ""},
		{"garbage", []byte("hello"), ReasonMalformedCSR},
		{"bad signature", tampered, ReasonMalformedCSR},
		{"P-384 key", csrDER(t, mustKey(t, elliptic.P384()), nil), ReasonUnsupportedKey},
		{"CA requested", csrDER(t, p256, func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{basicConstraints(t, true)}
		}), ReasonCARequested},
		{"no URI", csrDER(t, p256, func(r *x509.CertificateRequest) { r.URIs = nil }), ReasonCSRIdentity},
		{"another identity", csrDER(t, p256, func(r *x509.CertificateRequest) { r.URIs = []*url.URL{other} }), ReasonCSRIdentity},
		{"identity plus another URI", csrDER(t, p256, func(r *x509.CertificateRequest) { r.URIs = append(r.URIs, other) }), ReasonExtraSANs},
		{"identity twice", csrDER(t, p256, func(r *x509.CertificateRequest) { r.URIs = append(r.URIs, r.URIs[0]) }), ReasonExtraSANs},
		{"DNS name", csrDER(t, p256, func(r *x509.CertificateRequest) { r.DNSNames = []string{"web.shop.svc"} }), ReasonExtraSANs},
		{"IP address", csrDER(t, p256, func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} }), ReasonExtraSANs},
		{"email", csrDER(t, p256, func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@b.c"} }), ReasonExtraSANs},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, rej := checkCSR(tc.raw, id)
			switch {
			case tc.reason == "" && rej != nil:
				t.Fatalf("refused: %s (%s)", rej.msg, rej.reason)
			case tc.reason != "" && rej == nil:
				t.Fatalf("accepted, want %s", tc.reason)
			case tc.reason != "" && rej.reason != tc.reason:
				t.Fatalf("reason %s (%s), want %s", rej.reason, rej.msg, tc.reason)
			}
		})
	}
}

func TestSPIFFEID(t *testing.T) {
	if got := SPIFFEID("example.org", "ns1", "sa1"); got != "spiffe://example.org/ns/ns1/sa/sa1" {
		t.Fatalf("SPIFFEID = %s", got)
	}
}

func TestParseIssuer(t *testing.T) {
	key := mustKey(t, elliptic.P256())
	otherKey := mustKey(t, elliptic.P256())
	mk := func(isCA bool) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	pkcs8 := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	cases := []struct {
		name    string
		crt     []byte
		key     []byte
		wantErr bool
	}{
		{"SEC 1 key", mk(true), sec1(key), false},
		{"PKCS#8 key", mk(true), pkcs8(key), false},
		{"not a CA", mk(false), sec1(key), true},
		{"key of another certificate", mk(true), sec1(otherKey), true},
		{"no certificate", nil, sec1(key), true},
		{"no key", mk(true), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIssuer(&corev1.Secret{Data: map[string][]byte{corev1.TLSCertKey: tc.crt, corev1.TLSPrivateKeyKey: tc.key}})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}
