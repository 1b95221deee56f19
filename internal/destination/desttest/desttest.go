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

// Package desttest builds a real identity PKI (a root, an identity issuer under it,
// workload certificates) for tests and benchmarks of the destination service that run
// without cert-manager: it writes the issuer Secret and the trust roots ConfigMap the
// way the Mesh reconciler and cert-manager do, and mints the client certificates that
// proxies would get from the identity service.
package desttest

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
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/identity"
)

// PKI is a trust anchor and an identity issuer signed by it.
type PKI struct {
	TrustDomain string
	Root        *x509.Certificate
	RootKey     *ecdsa.PrivateKey
	Issuer      *x509.Certificate
	IssuerKey   *ecdsa.PrivateKey
}

// NewPKI creates a root valid for a year and an issuer valid for two days under it.
func NewPKI(trustDomain string) (*PKI, error) {
	p := &PKI{TrustDomain: trustDomain}
	var err error
	if p.Root, p.RootKey, err = newCA("weft test root", nil, nil, 365*24*time.Hour); err != nil {
		return nil, err
	}
	if p.Issuer, p.IssuerKey, err = newCA("weft test identity issuer", p.Root, p.RootKey, 48*time.Hour); err != nil {
		return nil, err
	}
	return p, nil
}

func newCA(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, life time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA %q: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// IssuerSecret is the identity issuer Secret as cert-manager writes it.
func (p *PKI) IssuerSecret(namespace string) (*corev1.Secret, error) {
	kb, err := x509.MarshalECPrivateKey(p.IssuerKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the issuer key: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: identity.IssuerSecretName},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pemCert(p.Issuer),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
			"ca.crt":                pemCert(p.Root),
		},
	}, nil
}

// TrustRootsConfigMap is the bundle as the Mesh reconciler publishes it, with the
// given anchors (default: the PKI's root).
func (p *PKI) TrustRootsConfigMap(namespace string, anchors ...*x509.Certificate) *corev1.ConfigMap {
	if len(anchors) == 0 {
		anchors = []*x509.Certificate{p.Root}
	}
	var bundle []byte
	for _, a := range anchors {
		bundle = append(bundle, pemCert(a)...)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: identity.TrustRootsConfigMapName},
		Data:       map[string]string{identity.TrustRootsKey: string(bundle)},
	}
}

// Install creates (or updates) the issuer Secret and the trust roots ConfigMap in the
// namespace, which must exist.
func (p *PKI) Install(ctx context.Context, c client.Client, namespace string) error {
	sec, err := p.IssuerSecret(namespace)
	if err != nil {
		return err
	}
	for _, obj := range []client.Object{sec, p.TrustRootsConfigMap(namespace)} {
		if err := createOrUpdate(ctx, c, obj); err != nil {
			return err
		}
	}
	return nil
}

func createOrUpdate(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		cur := obj.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return fmt.Errorf("getting %s: %w", obj.GetName(), err)
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		err = c.Update(ctx, obj)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", obj.GetName(), err)
	}
	return nil
}

// SPIFFEID is a workload's identity in the PKI's trust domain.
func (p *PKI) SPIFFEID(namespace, serviceAccount string) string {
	return identity.SPIFFEID(p.TrustDomain, namespace, serviceAccount)
}

// WorkloadCert mints a proxy's certificate for a ServiceAccount, as the identity
// service would: the SPIFFE ID in the URI SAN, server and client auth, with the
// issuer in the chain.
func (p *PKI) WorkloadCert(namespace, serviceAccount string) (tls.Certificate, error) {
	return p.workloadCert(p.SPIFFEID(namespace, serviceAccount))
}

func (p *PKI) workloadCert(id string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a workload key: %w", err)
	}
	u, err := url.Parse(id)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing %q: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Issuer, &key.PublicKey, p.IssuerKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing a workload certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, p.Issuer.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// ClientTLS is a proxy's TLS configuration towards the destination service: it trusts
// the PKI's root, expects serverName and presents cert (nil: no client certificate).
func (p *PKI) ClientTLS(serverName string, cert *tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: serverName}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// Dial opens a gRPC client connection with that TLS configuration and opts.
func Dial(addr string, cfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, opts...)
	return grpc.NewClient("passthrough:///"+addr, opts...)
}

// SameService fails t unless own, a service registered with its own stream handlers
// (which serve off the stream's goroutine), has the generated service's name,
// metadata, methods and streams: the handlers are all that may differ.
func SameService(t testing.TB, gen, own grpc.ServiceDesc) {
	t.Helper()
	if own.ServiceName != gen.ServiceName || own.Metadata != gen.Metadata || len(own.Methods) != len(gen.Methods) || len(own.Streams) != len(gen.Streams) {
		t.Fatalf("registered %s (%s), %d methods, %d streams; generated %s (%s), %d methods, %d streams",
			own.ServiceName, own.Metadata, len(own.Methods), len(own.Streams), gen.ServiceName, gen.Metadata, len(gen.Methods), len(gen.Streams))
	}
	for i, g := range gen.Streams {
		if o := own.Streams[i]; o.StreamName != g.StreamName || o.ServerStreams != g.ServerStreams || o.ClientStreams != g.ClientStreams {
			t.Errorf("stream %d: registered %+v, generated %+v", i, o, g)
		}
	}
}
