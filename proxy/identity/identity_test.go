package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/internal/testpki"
)

const idA = "spiffe://weft.test/ns/a/sa/client"
const idB = "spiffe://weft.test/ns/b/sa/server"

func storeFor(t *testing.T, leaf *testpki.Leaf, roots ...*testpki.CA) *Store {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r.Cert)
	}
	b, err := NewBundle(leaf.TLS, pool)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	s.Set(b)
	return s
}

// handshake runs a real TLS handshake over loopback between a client Store expecting
// want and a server Store, returning both sides' errors.
func handshake(t *testing.T, client, server *Store, want string, requireClientCert bool) (clientErr, serverErr error, cs tls.ConnectionState) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server.ServerConfig(requireClientCert))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = tc.HandshakeContext(ctx)
		if err == nil {
			tc.Write([]byte("x"))
		}
		serr <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, client.ClientConfig(want, ALPNHTTP2))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
		cs = tc.ConnectionState()
	}
	return clientErr, <-serr, cs
}

func TestHandshake(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	rogue := testpki.NewCA(t, "rogue")
	past := time.Now().Add(-3 * time.Hour)
	tests := []struct {
		name        string
		client      *Store
		server      *Store
		want        string
		requireCert bool
		wantErr     string
	}{
		{"valid pair", storeFor(t, ca.IssueValid(t, idA), ca), storeFor(t, ca.IssueValid(t, idB), ca), idB, true, ""},
		{"wrong server identity", storeFor(t, ca.IssueValid(t, idA), ca), storeFor(t, ca.IssueValid(t, idB), ca), "spiffe://weft.test/ns/b/sa/other", true, "is not the expected"},
		{"expired server", storeFor(t, ca.IssueValid(t, idA), ca), storeFor(t, ca.Issue(t, idB, past, past.Add(time.Hour)), ca), idB, true, "expired"},
		{"expired client", storeFor(t, ca.Issue(t, idA, past, past.Add(time.Hour)), ca), storeFor(t, ca.IssueValid(t, idB), ca), idB, true, "expired"},
		{"server from rogue anchor", storeFor(t, ca.IssueValid(t, idA), ca), storeFor(t, rogue.IssueValid(t, idB), rogue, ca), idB, true, "unknown authority"},
		{"client from rogue anchor", storeFor(t, rogue.IssueValid(t, idA), rogue, ca), storeFor(t, ca.IssueValid(t, idB), ca), idB, false, "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr, serr, cs := handshake(t, tt.client, tt.server, tt.want, tt.requireCert)
			if tt.wantErr == "" {
				if cerr != nil || serr != nil {
					t.Fatalf("client %v server %v", cerr, serr)
				}
				if cs.CurveID != tls.X25519MLKEM768 || cs.Version != tls.VersionTLS13 {
					t.Fatalf("curve %v version %x", cs.CurveID, cs.Version)
				}
				if got := PeerID(&cs); got != idB {
					t.Fatalf("peer id %q", got)
				}
				return
			}
			msg := ""
			if cerr != nil {
				msg += cerr.Error()
			}
			if serr != nil {
				msg += " | " + serr.Error()
			}
			if !strings.Contains(msg, tt.wantErr) {
				t.Fatalf("errors %q, want one containing %q", msg, tt.wantErr)
			}
		})
	}
}

func TestSPIFFEID(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"weft identity", idA, true},
		{"not a weft path", "spiffe://weft.test/workload", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ca.IssueValid(t, tt.id)
			leaf, _ := x509.ParseCertificate(l.TLS.Certificate[0])
			got, err := SPIFFEID(leaf)
			if (err == nil) != tt.ok || (tt.ok && got != tt.id) {
				t.Fatalf("SPIFFEID = %q, %v", got, err)
			}
		})
	}
}

// TestFilesReload: the files source loads, becomes ready, reloads a rotated
// certificate, and keeps the old one when the new files are broken.
func TestFilesReload(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	dir := t.TempDir()
	cert, key, roots := testpki.Files(t, dir, ca.IssueValid(t, idA), ca.PEM)
	s := &Store{}
	f := &Files{CertPath: cert, KeyPath: key, RootsPath: roots, Interval: 20 * time.Millisecond, Store: s, Log: logr.Discard()}
	if s.Ready() {
		t.Fatal("ready before loading")
	}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() || s.Current().ID != idA {
		t.Fatalf("not ready after load: %+v", s.Current())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	first := s.Expiry()

	// Rotate to a new certificate with another identity, written the way a Secret
	// volume does it: new files, then a rename over the old ones.
	time.Sleep(50 * time.Millisecond)
	next := ca.Issue(t, "spiffe://weft.test/ns/a/sa/rotated", time.Now().Add(-time.Minute), time.Now().Add(2*time.Hour))
	tmp := t.TempDir()
	c2, k2, _ := testpki.Files(t, tmp, next, ca.PEM)
	os.Rename(c2, cert)
	os.Rename(k2, key)
	deadline := time.Now().Add(3 * time.Second)
	for s.Current().ID != "spiffe://weft.test/ns/a/sa/rotated" {
		if time.Now().After(deadline) {
			t.Fatal("rotated certificate not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.Expiry().After(first) {
		t.Fatal("expiry did not move forward")
	}
	// A broken file keeps the last good bundle.
	os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600)
	time.Sleep(200 * time.Millisecond)
	if !s.Ready() || s.Current().ID != "spiffe://weft.test/ns/a/sa/rotated" {
		t.Fatal("broken reload replaced the good certificate")
	}
}

func TestReadyFollowsValidity(t *testing.T) {
	ca := testpki.NewCA(t, "anchor")
	s := storeFor(t, ca.IssueValid(t, idA), ca)
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"now", time.Now(), true},
		{"after expiry", time.Now().Add(2 * time.Hour), false},
		{"before validity", time.Now().Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.now = func() time.Time { return tt.now }
			if got := s.Ready(); got != tt.want {
				t.Fatalf("Ready() = %v, want %v", got, tt.want)
			}
		})
	}
}
