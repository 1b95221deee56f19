package peertls

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
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ca is a root and an intermediate under it, as cert-manager builds Weft's chain
// (trust anchor -> identity issuer -> leaves).
type ca struct {
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	pool      *x509.CertPool
	serialNum int64
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, tpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T, name string) *ca {
	rootKey := newKey(t)
	now := time.Now()
	rootTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " anchor"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	root := sign(t, rootTpl, rootTpl, &rootKey.PublicKey, rootKey)
	interKey := newKey(t)
	interTpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " issuer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	inter := sign(t, interTpl, root, &interKey.PublicKey, rootKey)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &ca{root: root, inter: inter, interKey: interKey, pool: pool, serialNum: 10}
}

// leaf issues a certificate for dns names and SPIFFE IDs, valid from notBefore to
// notAfter, with no extended key usage (as some issuer configurations produce).
func (c *ca) leaf(t *testing.T, notBefore, notAfter time.Time, dns []string, ids ...string) tls.Certificate {
	key := newKey(t)
	c.serialNum++
	tpl := &x509.Certificate{SerialNumber: big.NewInt(c.serialNum), NotBefore: notBefore, NotAfter: notAfter,
		DNSNames: dns, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, id := range ids {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		tpl.URIs = append(tpl.URIs, u)
	}
	cert := sign(t, tpl, c.inter, &key.PublicKey, c.interKey)
	return tls.Certificate{Certificate: [][]byte{cert.Raw, c.inter.Raw}, PrivateKey: key, Leaf: cert}
}

func (c *ca) valid(t *testing.T, dns []string, ids ...string) tls.Certificate {
	return c.leaf(t, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), dns, ids...)
}

const (
	destID = "spiffe://cluster.local/ns/weft-system/sa/weft-controller"
	webID  = "spiffe://cluster.local/ns/shop/sa/web"
)

// handshake runs a real TLS 1.3 handshake over loopback TCP between a server
// presenting serverCert (requiring a client certificate from clientCA when it is not
// nil) and a client using cfg. It returns the client's error and, when the server
// required one, the client certificate's leaf the server saw.
func handshake(t *testing.T, serverCert tls.Certificate, clientCA *x509.CertPool, cfg *tls.Config) (error, *x509.Certificate) {
	t.Helper()
	scfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert}, NextProtos: []string{"h2"}}
	if clientCA != nil {
		scfg.ClientAuth, scfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCA
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan *x509.Certificate, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- nil
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			seen <- nil
			return
		}
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			seen <- pc[0]
		} else {
			seen <- nil
		}
		// Read until the client closes, so the client sees the server's verdict.
		_, _ = tc.Read(make([]byte, 1))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		// TLS 1.3: a server's refusal of the client certificate arrives after the
		// client's handshake completed; a read surfaces it.
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, rerr := conn.Read(make([]byte, 1))
		if rerr != nil && !isTimeout(rerr) {
			err = rerr
		}
		conn.Close()
	}
	return err, <-seen
}

func isTimeout(err error) bool {
	var ne net.Error
	return strings.Contains(err.Error(), "timeout") || (errorsAs(err, &ne) && ne.Timeout())
}

func errorsAs(err error, target *net.Error) bool {
	for err != nil {
		if ne, ok := err.(net.Error); ok {
			*target = ne
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestClientConfigHandshakes(t *testing.T) {
	mesh := newCA(t, "mesh")
	other := newCA(t, "other")
	now := time.Now()
	dnsName := "weft-destination.weft-system.svc"
	server := mesh.valid(t, []string{dnsName, dnsName + ".cluster.local"}, destID)
	client := mesh.valid(t, nil, webID)
	cases := []struct {
		name       string
		serverCert tls.Certificate
		serverName string
		roots      *x509.CertPool
		wantErr    string // "" for success
	}{
		{"DNS name", server, dnsName, mesh.pool, ""},
		{"SPIFFE ID", server, destID, mesh.pool, ""},
		{"wrong SPIFFE ID", server, "spiffe://cluster.local/ns/weft-system/sa/impostor", mesh.pool, "want"},
		{"wrong DNS name", server, "weft-identity.weft-system.svc", mesh.pool, "certificate is valid for"},
		{"wrong root", other.valid(t, []string{dnsName}, destID), destID, mesh.pool, "unknown authority"},
		{"expired", mesh.leaf(t, now.Add(-2*time.Hour), now.Add(-time.Hour), []string{dnsName}, destID), destID, mesh.pool, "expired"},
		{"not yet valid", mesh.leaf(t, now.Add(time.Hour), now.Add(2*time.Hour), []string{dnsName}, destID), dnsName, mesh.pool, "expired or is not yet valid"},
		{"two SPIFFE IDs", mesh.valid(t, nil, destID, webID), destID, mesh.pool, "more than one"},
		{"no roots loaded", server, destID, nil, "no trust roots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ClientConfig(ClientOptions{ServerName: tc.serverName, Roots: func() *x509.CertPool { return tc.roots },
				Certificate: func() *tls.Certificate { return &client }, NextProtos: []string{"h2"}})
			err, _ := handshake(t, tc.serverCert, nil, cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("handshake error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestClientConfigReadsRootsAndCertificateAtEachHandshake: a rotated root and a renewed
// client certificate apply to the next connection without a new config.
func TestClientConfigReadsRootsAndCertificateAtEachHandshake(t *testing.T) {
	oldCA, newCA := newCA(t, "old"), newCA(t, "new")
	var roots atomic.Pointer[x509.CertPool]
	roots.Store(oldCA.pool)
	first, second := oldCA.valid(t, nil, webID), newCA.valid(t, nil, webID)
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(&first)
	cfg := ClientConfig(ClientOptions{ServerName: destID, Roots: roots.Load, Certificate: cur.Load})

	if err, seen := handshake(t, oldCA.valid(t, nil, destID), oldCA.pool, cfg); err != nil || seen == nil || !seen.Equal(first.Leaf) {
		t.Fatalf("before rotation: %v, server saw %v", err, seen)
	}
	// The server moved to the new anchor; the client has not: refused.
	if err, _ := handshake(t, newCA.valid(t, nil, destID), newCA.pool, cfg); err == nil {
		t.Fatal("a server under a root the client does not trust was accepted")
	}
	roots.Store(newCA.pool)
	cur.Store(&second)
	if err, seen := handshake(t, newCA.valid(t, nil, destID), newCA.pool, cfg); err != nil || seen == nil || !seen.Equal(second.Leaf) {
		t.Fatalf("after rotation: %v, server saw %v", err, seen)
	}
}

// TestNoClientCertificate: without one, a server that requires one refuses.
func TestNoClientCertificate(t *testing.T) {
	mesh := newCA(t, "mesh")
	cfg := ClientConfig(ClientOptions{ServerName: destID, Roots: func() *x509.CertPool { return mesh.pool }})
	if err, seen := handshake(t, mesh.valid(t, nil, destID), mesh.pool, cfg); err == nil || seen != nil {
		t.Fatalf("handshake without a client certificate: %v, server saw %v", err, seen)
	}
}

func TestVerifyChainAtATime(t *testing.T) {
	mesh := newCA(t, "mesh")
	c := mesh.valid(t, nil, webID)
	certs := []*x509.Certificate{c.Leaf, mesh.inter}
	if _, err := VerifyChain(certs, mesh.pool, time.Time{}); err != nil {
		t.Fatalf("now: %v", err)
	}
	if _, err := VerifyChain(certs, mesh.pool, time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("verified after NotAfter")
	}
	if _, err := VerifyChain(certs[:1], mesh.pool, time.Time{}); err == nil {
		t.Fatal("verified without the intermediate")
	}
	if _, err := VerifyChain(nil, mesh.pool, time.Time{}); err == nil {
		t.Fatal("verified no certificate")
	}
}

func TestSPIFFEID(t *testing.T) {
	mesh := newCA(t, "mesh")
	for _, tc := range []struct {
		name string
		ids  []string
		want string
		ok   bool
	}{
		{"one", []string{webID}, webID, true},
		{"none", nil, "", false},
		{"a non-SPIFFE URI is ignored", []string{"https://example.com/x", webID}, webID, true},
		{"two", []string{webID, destID}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mesh.valid(t, nil, tc.ids...)
			got, err := SPIFFEID(c.Leaf)
			if got != tc.want || (err == nil) != tc.ok {
				t.Fatalf("SPIFFEID = %q, %v; want %q, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestWorkloadIDRoundTrip(t *testing.T) {
	id := WorkloadID("cluster.local", "shop", "web")
	if id != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("WorkloadID = %s", id)
	}
	if td, ns, sa, ok := ParseWorkloadID(id); !ok || td != "cluster.local" || ns != "shop" || sa != "web" {
		t.Fatalf("ParseWorkloadID(%s) = %s %s %s %v", id, td, ns, sa, ok)
	}
	for _, bad := range []string{
		"", "spiffe://", "https://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop",
		"spiffe://cluster.local/ns//sa/web", "spiffe://cluster.local/ns/shop/sa/", "spiffe:///ns/shop/sa/web",
		"spiffe://cluster.local/ns/shop/sa/web/extra", "spiffe://cluster.local/sa/web/ns/shop",
	} {
		if _, _, _, ok := ParseWorkloadID(bad); ok {
			t.Errorf("ParseWorkloadID(%q) accepted it", bad)
		}
	}
}
