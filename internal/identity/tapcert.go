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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/internal/trustbundle"
)

// ReasonReservedIdentity: a CSR asked for the control plane's tap identity, which only
// weft-controller holds (it signs its own client certificate in memory).
const ReasonReservedIdentity = "reserved_identity"

// tapCertLife is the life of the tap client certificate. It is re-minted at half its
// life or when the issuer changes, so a tap that runs for days keeps a valid one.
const tapCertLife = 24 * time.Hour

// reservedIdentity refuses the tap identity for any caller: a proxy's tap server
// answers only that identity, so a pod that obtained it could read every request of
// the mesh. It is checked on the requested identity before anything else, whatever
// the token says (an admin could create a ServiceAccount weft-tap in the control-plane
// namespace; its pods still get nothing).
func (s *Service) reservedIdentity(id string) *rejection {
	_, ns, sa, ok := peertls.ParseWorkloadID(id)
	if ok && ns == s.cfg.Namespace && sa == meshdefaults.TapServiceAccount {
		return reject(ReasonReservedIdentity, "the identity %s is reserved for the control plane's tap API and is never signed for a workload", id)
	}
	return nil
}

// TapClientCertificate returns the control plane's tap client certificate: URI SAN
// meshdefaults.TapIdentity(trust domain, Namespace), client auth only, signed by the
// current identity issuer with a key generated here that never leaves memory. It is
// cached and re-minted when the issuer changes, the trust domain changes, or half its
// life has passed.
func (s *Service) TapClientCertificate(ctx context.Context) (*tls.Certificate, error) {
	mesh := &meshv1alpha1.Mesh{}
	if err := s.cfg.Reader.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); err != nil {
		return nil, fmt.Errorf("reading the Mesh %q for its trust domain: %w", meshv1alpha1.MeshName, err)
	}
	id := meshdefaults.TapIdentity(mesh.Spec.TrustDomain, s.cfg.Namespace)
	iss, err := s.issuer.get(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if c := s.tap; c != nil && s.tapIssuer.Cmp(iss.Cert.SerialNumber) == 0 && len(c.Leaf.URIs) == 1 && c.Leaf.URIs[0].String() == id {
		half := c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 2)
		if now.Before(half) {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the tap client key: %w", err)
	}
	uri, err := url.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("the tap identity %q: %w", id, err)
	}
	leaf, err := s.sign(iss, &x509.Certificate{
		URIs:        []*url.URL{uri},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &key.PublicKey, tapCertLife)
	if err != nil {
		return nil, err
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range iss.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.tap, s.tapIssuer = cert, iss.Cert.SerialNumber
	s.cfg.Log.Info("Minted the tap client certificate", "identity", id, "issuerSerial", iss.Cert.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
	return cert, nil
}

// TrustRoots returns the published trust anchors (ConfigMap weft-trust-roots), which
// proxies' certificates chain to.
func (s *Service) TrustRoots(ctx context.Context) (*x509.CertPool, error) {
	key := types.NamespacedName{Namespace: s.cfg.Namespace, Name: TrustRootsConfigMapName}
	cm := &corev1.ConfigMap{}
	if err := s.cfg.Reader.Get(ctx, key, cm); err != nil {
		return nil, fmt.Errorf("reading the trust roots ConfigMap %s: %w", key, err)
	}
	anchors, err := trustbundle.ParsePEM([]byte(cm.Data[TrustRootsKey]))
	if err != nil {
		return nil, fmt.Errorf("parsing %s of ConfigMap %s: %w", TrustRootsKey, key, err)
	}
	if len(anchors) == 0 {
		return nil, fmt.Errorf("the trust roots ConfigMap %s holds no anchor", key)
	}
	pool := x509.NewCertPool()
	for _, a := range anchors {
		pool.AddCert(a)
	}
	return pool, nil
}
