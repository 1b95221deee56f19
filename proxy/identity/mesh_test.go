package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

	t.Run("renews at the configured share of life", func(t *testing.T) {
		// renewAtPercent 50 with the jitter at its midpoint renews 5s into a 10s life;
		// the 70% that was hard-coded before would renew at 7s. X.509 truncates
		// NotBefore to the second, so 5s after it is 4s to 5s after the start.
		f := &fakeIdentity{ca: ca, token: "good-token", lifetime: 10 * time.Second}
		addr := startFakeIdentity(t, f, srvCert)
		store := &Store{}
		m := &Mesh{Addr: addr, ServerName: "weft-identity.test", ID: idA, TokenPath: token, RootsPath: roots, Store: store,
			Log: logr.Discard(), RenewAtPercent: 50, Jitter: func() float64 { return 0.5 }}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		go m.Run(ctx)
		waitFor(t, 5*time.Second, store.Ready)
		first := store.Current()
		waitFor(t, 8*time.Second, func() bool { return store.Current().Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 })
		if el := time.Since(start); el < 3800*time.Millisecond || el > 5800*time.Millisecond {
			t.Fatalf("renewed after %s, want 4s to 5s (50%% of a 10s life)", el)
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

// TestRenewalPointJitter drives RenewalPoint with a seeded source, as a rollout of
// proxies would: renewals spread over the whole band around renewAtPercent, none
// outside it and none past RenewMaxPercent.
func TestRenewalPointJitter(t *testing.T) {
	nb := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	life := 24 * time.Hour
	cases := []struct {
		percent  int
		low, top float64 // the band, in percent of life
	}{
		{70, 65, 75},
		{50, 45, 55},
		{88, 83, 90}, // capped at 90
		{90, 85, 90},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.percent), func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(1, 2))
			lo, hi := 100.0, 0.0
			buckets := make([]int, 10)
			for range 10000 {
				at := RenewalPoint(nb, nb.Add(life), tc.percent, rng.Float64())
				pct := float64(at.Sub(nb)) / float64(life) * 100
				lo, hi = min(lo, pct), max(hi, pct)
				if pct < tc.low-1e-9 || pct > tc.top+1e-9 {
					t.Fatalf("renewal at %.3f%% of life, outside %v..%v", pct, tc.low, tc.top)
				}
				buckets[min(int((pct-tc.low)/(tc.top-tc.low)*10), 9)]++
			}
			// Spread: the draws reach both ends of the band (within 0.1 point).
			if lo > tc.low+0.1 || hi < tc.top-0.1 {
				t.Errorf("renewals between %.2f%% and %.2f%%, want the whole band %v..%v", lo, hi, tc.low, tc.top)
			}
			// No lockstep: no tenth of an uncapped band holds more than twice its share.
			if tc.top-tc.low == 2*RenewJitterPercent {
				for i, n := range buckets {
					if n > 2000 {
						t.Errorf("bucket %d holds %d of 10000 renewals", i, n)
					}
				}
			}
		})
	}
	// The two ends of the source: u=0 is the low edge, u->1 the high edge.
	if got := RenewalPoint(nb, nb.Add(100*time.Second), 70, 0); got != nb.Add(65*time.Second) {
		t.Errorf("u=0: %v", got.Sub(nb))
	}
}
