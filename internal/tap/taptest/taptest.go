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

// Package taptest has the tap API's test parts: CAs that sign the certificates the
// tests need (the identity issuer's, the kube-apiserver's front proxy's, a serving
// certificate) and a real grpc-go tap server that answers only the tap identity, as a
// proxy's does.
package taptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// The mesh the tests run in.
const (
	TrustDomain = "cluster.local"
	CPNamespace = "weft-system"
)

// CA signs leaves for the tests.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA returns a self-signed CA valid for an hour either side of now.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key}
}

// Pool is a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Leaf signs a client-and-server leaf with common name cn, a URI SAN uri (when not
// empty) and DNS names (with the IP 127.0.0.1 when there are any).
func (ca *CA) Leaf(t testing.TB, cn, uri string, dns ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	if len(dns) > 0 {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// KeyPEM returns a leaf's certificate and key in PEM (for files a process reads).
func KeyPEM(t testing.TB, c *tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// Creds are the tap API's credentials (tap.Credentials) from an issuer CA.
type Creds struct {
	CA   *CA
	Cert *tls.Certificate
}

// NewCreds signs the tap identity's client certificate with ca.
func NewCreds(t testing.TB, ca *CA) *Creds {
	return &Creds{CA: ca, Cert: ca.Leaf(t, "", meshdefaults.TapIdentity(TrustDomain, CPNamespace))}
}

func (c *Creds) TapClientCertificate(context.Context) (*tls.Certificate, error) {
	return c.Cert, nil
}
func (c *Creds) TrustRoots(context.Context) (*x509.CertPool, error) { return c.CA.Pool(), nil }
func (c *Creds) TrustDomain(context.Context) (string, error)        { return TrustDomain, nil }

// TapServer is a real grpc-go Tap server with a pod's certificate that answers only
// the tap identity, as a proxy's does. Observe sends the events put in Events until
// the stream ends.
type TapServer struct {
	apigrpc.UnimplementedTapServer
	Events chan *api.TapEvent
	Srv    *grpc.Server
	Addr   string

	mu   sync.Mutex
	reqs []*api.ObserveRequest
}

// StartTapServer serves on a loopback port with a certificate for
// spiffe://cluster.local/ns/<ns>/sa/<sa> from ca.
func StartTapServer(t testing.TB, ca *CA, ns, sa string) *TapServer {
	t.Helper()
	cert := ca.Leaf(t, "", peertls.WorkloadID(TrustDomain, ns, sa))
	ts := &TapServer{Events: make(chan *api.TapEvent, 1024)}
	ts.Srv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		})),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	apigrpc.RegisterTapServer(ts.Srv, ts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Addr = lis.Addr().String()
	go func() { _ = ts.Srv.Serve(lis) }()
	t.Cleanup(ts.Srv.Stop)
	return ts
}

// Requests returns the ObserveRequests received so far.
func (ts *TapServer) Requests() []*api.ObserveRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*api.ObserveRequest(nil), ts.reqs...)
}

// Observe implements apigrpc.TapServer.
func (ts *TapServer) Observe(req *api.ObserveRequest, stream apigrpc.Tap_ObserveServer) error {
	p, _ := peer.FromContext(stream.Context())
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	if len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "no client certificate")
	}
	if id, _ := peertls.SPIFFEID(info.State.PeerCertificates[0]); id != meshdefaults.TapIdentity(TrustDomain, CPNamespace) {
		return status.Errorf(codes.PermissionDenied, "%s may not tap", id)
	}
	ts.mu.Lock()
	ts.reqs = append(ts.reqs, req)
	ts.mu.Unlock()
	for {
		select {
		case ev := <-ts.Events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// RequestEvent is a request_init event.
func RequestEvent(id uint64, authority string) *api.TapEvent {
	return &api.TapEvent{
		Id: id, Direction: api.TapDirection_TAP_DIRECTION_INBOUND,
		Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{Method: "GET", Authority: authority, Path: "/", Tls: true}},
	}
}
