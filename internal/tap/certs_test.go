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

package tap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
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

const (
	trustDomain = "cluster.local"
	cpNS        = "weft-system"
)

// testCA is a CA that signs leaves for the tests: the mesh's identity issuer, or the
// kube-apiserver's front-proxy CA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *testCA {
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
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leaf signs a leaf with a URI SAN (uri), a common name, and DNS names.
func (ca *testCA) leaf(t *testing.T, cn, uri string, dns ...string) *tls.Certificate {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// testCreds are the tap API's credentials in tests.
type testCreds struct {
	ca   *testCA
	cert *tls.Certificate
}

func newCreds(t *testing.T, ca *testCA) *testCreds {
	return &testCreds{ca: ca, cert: ca.leaf(t, "", meshdefaults.TapIdentity(trustDomain, cpNS))}
}

func (c *testCreds) TapClientCertificate(context.Context) (*tls.Certificate, error) {
	return c.cert, nil
}
func (c *testCreds) TrustRoots(context.Context) (*x509.CertPool, error) { return c.ca.pool(), nil }
func (c *testCreds) TrustDomain(context.Context) (string, error)        { return trustDomain, nil }

// tapServer is a real grpc-go Tap server with a pod's certificate that answers only
// the tap identity, as a proxy's does. Observe sends events from its channel, tagged
// with the server's name in the request's authority, until the stream ends.
type tapServer struct {
	apigrpc.UnimplementedTapServer
	name   string
	events chan *api.TapEvent
	srv    *grpc.Server
	addr   string

	mu   sync.Mutex
	reqs []*api.ObserveRequest
}

func startTapServer(t *testing.T, ca *testCA, name, ns, sa string) *tapServer {
	t.Helper()
	cert := ca.leaf(t, "", peertls.WorkloadID(trustDomain, ns, sa))
	ts := &tapServer{name: name, events: make(chan *api.TapEvent, 1024)}
	ts.srv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool(),
		})),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	apigrpc.RegisterTapServer(ts.srv, ts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	go func() { _ = ts.srv.Serve(lis) }()
	t.Cleanup(ts.srv.Stop)
	return ts
}

func (ts *tapServer) Observe(req *api.ObserveRequest, stream apigrpc.Tap_ObserveServer) error {
	p, _ := peer.FromContext(stream.Context())
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	if len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "no client certificate")
	}
	if id, _ := peertls.SPIFFEID(info.State.PeerCertificates[0]); id != meshdefaults.TapIdentity(trustDomain, cpNS) {
		return status.Errorf(codes.PermissionDenied, "%s may not tap", id)
	}
	ts.mu.Lock()
	ts.reqs = append(ts.reqs, req)
	ts.mu.Unlock()
	for {
		select {
		case ev := <-ts.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func reqEvent(id uint64, authority string) *api.TapEvent {
	return &api.TapEvent{
		Id: id, Direction: api.TapDirection_TAP_DIRECTION_INBOUND,
		Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{Method: "GET", Authority: authority, Path: "/", Tls: true}},
	}
}
