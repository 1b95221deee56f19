package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// fakeIdentity is a stand-in identity service speaking the real proxy/api gRPC API
// over TLS: it checks the token and that the CSR asks for the requested identity, and
// signs short-lived leaves so renewal can be watched.
type fakeIdentity struct {
	apigrpc.UnimplementedIdentityServer
	ca       *testpki.CA
	token    string
	lifetime time.Duration
	calls    atomic.Int32
}

func (f *fakeIdentity) Certify(ctx context.Context, req *api.CertifyRequest) (*api.CertifyResponse, error) {
	f.calls.Add(1)
	if string(req.GetToken()) != f.token {
		return nil, status.Error(codes.Unauthenticated, "token refused")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Error(codes.InvalidArgument, "bad CSR")
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != req.GetIdentity() {
		return nil, status.Error(codes.PermissionDenied, "CSR identity mismatch")
	}
	der, err := f.ca.SignCSR(csr, f.lifetime)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	leaf, _ := x509.ParseCertificate(der)
	return &api.CertifyResponse{LeafCertificate: der, ValidUntil: timestamppb.New(leaf.NotAfter)}, nil
}

func startFakeIdentity(t *testing.T, f *fakeIdentity, serverCert tls.Certificate) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS13})))
	apigrpc.RegisterIdentityServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func TestMeshIdentity(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	dir := t.TempDir()
	roots := filepath.Join(dir, "ca.crt")
	os.WriteFile(roots, ca.PEM, 0o600)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("good-token\n"), 0o600)
	srvCert := ca.IssueDNS(t, "weft-identity.test").TLS

	t.Run("obtains and renews at 70% of life", func(t *testing.T) {
		f := &fakeIdentity{ca: ca, token: "good-token", lifetime: 4 * time.Second}
		addr := startFakeIdentity(t, f, srvCert)
		store := &Store{}
		m := &Mesh{Addr: addr, ServerName: "weft-identity.test", ID: idA, TokenPath: token, RootsPath: roots, Store: store, Log: logr.Discard()}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		go m.Run(ctx)
		waitFor(t, 5*time.Second, store.Ready)
		first := store.Current()
		if first.ID != idA {
			t.Fatalf("got identity %q", first.ID)
		}
		// Renewal is due 2.8s into a 4s life; X.509 truncates NotBefore to the
		// second, so it comes 1.8s to 2.8s after the first certificate.
		waitFor(t, 6*time.Second, func() bool { return store.Current().Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 })
		if el := time.Since(start); el < 1500*time.Millisecond || el > 4*time.Second {
			t.Fatalf("renewed after %s, want 1.8s to 2.8s", el)
		}
		if store.Current().Cert.PrivateKey != first.Cert.PrivateKey {
			t.Fatal("renewal changed the in-memory key")
		}
		// The renewed certificate works for mTLS with a files-mode peer.
		peer := storeFor(t, ca.IssueValid(t, idB), ca)
		if cerr, serr, _ := handshake(t, store, peer, idB, true); cerr != nil || serr != nil {
			t.Fatalf("handshake with mesh-mode certificate: %v / %v", cerr, serr)
		}
	})

	t.Run("refused token leaves the proxy not ready", func(t *testing.T) {
		f := &fakeIdentity{ca: ca, token: "other-token", lifetime: time.Hour}
		addr := startFakeIdentity(t, f, srvCert)
		store := &Store{}
		m := &Mesh{Addr: addr, ServerName: "weft-identity.test", ID: idA, TokenPath: token, RootsPath: roots, Store: store, Log: logr.Discard()}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go m.Run(ctx)
		waitFor(t, 5*time.Second, func() bool { return f.calls.Load() >= 1 })
		time.Sleep(100 * time.Millisecond)
		if store.Ready() {
			t.Fatal("ready without a certificate")
		}
		// The gRPC status comes back as a readable error.
		err := m.ensureKeyAndCertify(context.Background())
		if err == nil || !strings.Contains(err.Error(), "Unauthenticated: token refused") {
			t.Fatalf("refused token error: %v", err)
		}
	})

	t.Run("identity service with an untrusted certificate is refused", func(t *testing.T) {
		rogue := testpki.NewCA(t, "rogue")
		f := &fakeIdentity{ca: ca, token: "good-token", lifetime: time.Hour}
		addr := startFakeIdentity(t, f, rogue.IssueDNS(t, "weft-identity.test").TLS)
		store := &Store{}
		m := &Mesh{Addr: addr, ServerName: "weft-identity.test", ID: idA, TokenPath: token, RootsPath: roots, Store: store, Log: logr.Discard()}
		if err := m.ensureKeyAndCertify(context.Background()); err == nil {
			t.Fatal("certified through an identity service we cannot authenticate")
		}
		if f.calls.Load() != 0 || store.Ready() {
			t.Fatalf("calls %d ready %v", f.calls.Load(), store.Ready())
		}
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
