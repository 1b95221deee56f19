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
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/trustbundle"
)

// Issuer is the CA that signs workload certificates: the identity issuer certificate
// cert-manager keeps in a Secret, its key, and the chain above it.
type Issuer struct {
	// Cert is the issuer certificate.
	Cert *x509.Certificate
	// Chain is Cert followed by any intermediates up to (not including) a self-signed
	// root, as cert-manager writes tls.crt.
	Chain []*x509.Certificate
	// Key signs leaves.
	Key crypto.Signer
	// ResourceVersion of the Secret it was loaded from.
	ResourceVersion string
}

// ParseIssuer reads a kubernetes.io/tls Secret written by cert-manager.
func ParseIssuer(s *corev1.Secret) (*Issuer, error) {
	chain, err := trustbundle.ParsePEM(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, fmt.Errorf("parsing %s of Secret %s/%s: %w", corev1.TLSCertKey, s.Namespace, s.Name, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("secret %s/%s holds no certificate in %s", s.Namespace, s.Name, corev1.TLSCertKey)
	}
	if !chain[0].IsCA {
		return nil, fmt.Errorf("the certificate in Secret %s/%s is not a CA", s.Namespace, s.Name)
	}
	kb, _ := pem.Decode(s.Data[corev1.TLSPrivateKeyKey])
	if kb == nil {
		return nil, fmt.Errorf("secret %s/%s holds no PEM key in %s", s.Namespace, s.Name, corev1.TLSPrivateKeyKey)
	}
	key, err := parseKey(kb)
	if err != nil {
		return nil, fmt.Errorf("parsing the key of Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		// cert-manager writes the key and certificate in one update, so a mismatch
		// means someone edited the Secret by hand.
		return nil, fmt.Errorf("the key in Secret %s/%s does not match its certificate", s.Namespace, s.Name)
	}
	return &Issuer{Cert: chain[0], Chain: chain, Key: key, ResourceVersion: s.ResourceVersion}, nil
}

func parseKey(b *pem.Block) (crypto.Signer, error) {
	switch b.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T key cannot sign", k)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", b.Type)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}

// issuerSource loads the issuer from its Secret through a (cached) reader and re-parses
// it only when the Secret's resourceVersion changes, so a renewal by cert-manager is
// picked up by the next request without a restart.
type issuerSource struct {
	reader client.Reader
	key    types.NamespacedName

	mu      sync.Mutex
	current *Issuer
}

// errNoIssuer means the issuer Secret does not exist (yet).
var errNoIssuer = errors.New("the identity issuer Secret does not exist yet")

func (s *issuerSource) get(ctx context.Context) (*Issuer, error) {
	secret := &corev1.Secret{}
	if err := s.reader.Get(ctx, s.key, secret); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, fmt.Errorf("%w: %s", errNoIssuer, s.key)
		}
		return nil, fmt.Errorf("reading the identity issuer Secret %s: %w", s.key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil && s.current.ResourceVersion == secret.ResourceVersion {
		return s.current, nil
	}
	iss, err := ParseIssuer(secret)
	if err != nil {
		return nil, err
	}
	s.current = iss
	return iss, nil
}

// IssuerUsable says whether the identity service may sign leaves with an issuer
// certificate at now: it must be valid already and have at least minLife (the workload
// leaf lifetime) left. A shorter remaining life would make every leaf shorter than the
// Mesh says (leaves never outlive their issuer), and proxies, which renew at a share of
// their leaf's life, would renew ever faster until they get leaves that have already
// expired. It returns "" when usable, else the reason (a metric label) and a message
// that says what to do.
func IssuerUsable(cert *x509.Certificate, minLife time.Duration, now time.Time) (reason, msg string) {
	const hint = "cert-manager has not renewed Certificate weft-identity-issuer: check that cert-manager is running and read the Certificate's status and events (kubectl -n weft-system describe certificate weft-identity-issuer)"
	switch {
	case now.Before(cert.NotBefore):
		return ReasonIssuerNotYetValid, fmt.Sprintf("the identity issuer (serial %x) is not valid until %s: check the clocks of the control-plane nodes",
			cert.SerialNumber, cert.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(cert.NotAfter):
		return ReasonIssuerExpiring, fmt.Sprintf("the identity issuer (serial %x) expired at %s and signs nothing; %s",
			cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), hint)
	case cert.NotAfter.Sub(now) < minLife:
		return ReasonIssuerExpiring, fmt.Sprintf("the identity issuer (serial %x) expires at %s, less than one workload certificate lifetime (%s) from now, so it signs nothing more; %s",
			cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), minLife, hint)
	}
	return "", ""
}
