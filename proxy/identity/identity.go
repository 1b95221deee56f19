// Package identity holds the proxy's certificate and trust roots and builds the TLS
// configurations used between Weft proxies.
//
// A Source (files today, the identity service in mesh mode) puts Bundles into a
// Store; TLS handshakes read the Store's current Bundle, so a renewed certificate or a
// rotated trust root takes effect on the next connection without a restart.
package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/config"
)

// ALPN protocol IDs spoken between Weft proxies (docs/proxy.md, "Mesh wire protocol").
const (
	ALPNHTTP2 = "weft.h2"  // multiplexed HTTP/2 carrying HTTP/1.1 and HTTP/2 requests
	ALPNHTTP1 = "weft.h1"  // HTTP/1.1, for Upgrade requests HTTP/2 cannot carry
	ALPNTCP   = "weft.tcp" // opaque TCP behind a one-line weft-dst header
)

// Bundle is one consistent set of certificate, key and roots.
type Bundle struct {
	Cert  *tls.Certificate  // leaf first, then intermediates; with the private key
	Leaf  *x509.Certificate // parsed Cert.Certificate[0]
	Roots *x509.CertPool    // trust anchors peers must chain to
	ID    string            // this proxy's SPIFFE ID (the leaf's URI SAN)
}

// NewBundle checks that a certificate and roots belong together and extracts the ID.
func NewBundle(cert tls.Certificate, roots *x509.CertPool) (*Bundle, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("certificate chain is empty")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse leaf certificate: %w", err)
	}
	cert.Leaf = leaf
	id, err := SPIFFEID(leaf)
	if err != nil {
		return nil, fmt.Errorf("leaf certificate: %w", err)
	}
	return &Bundle{Cert: &cert, Leaf: leaf, Roots: roots, ID: id}, nil
}

// Store holds the current Bundle. The zero value holds none.
type Store struct {
	cur atomic.Pointer[Bundle]
	now func() time.Time
}

// Set replaces the current bundle.
func (s *Store) Set(b *Bundle) { s.cur.Store(b) }

// Current returns the current bundle, or nil.
func (s *Store) Current() *Bundle { return s.cur.Load() }

// Ready reports whether the store holds a certificate that is valid now.
func (s *Store) Ready() bool {
	b := s.cur.Load()
	if b == nil {
		return false
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	return now.After(b.Leaf.NotBefore) && now.Before(b.Leaf.NotAfter)
}

// Expiry returns the current leaf's NotAfter, or zero.
func (s *Store) Expiry() time.Time {
	if b := s.cur.Load(); b != nil {
		return b.Leaf.NotAfter
	}
	return time.Time{}
}

// SPIFFEID returns the single spiffe:// URI SAN of a certificate (peertls.SPIFFEID),
// which must have the shape of a Weft workload identity.
func SPIFFEID(c *x509.Certificate) (string, error) {
	id, err := peertls.SPIFFEID(c)
	if err != nil {
		return "", err
	}
	if _, err := config.ParseSPIFFEID(id); err != nil {
		return "", err
	}
	return id, nil
}

// verifyPeer checks a peer's chain against the current roots (time included, so an
// expired certificate fails) and returns its SPIFFE ID. Standard hostname
// verification cannot be used: SPIFFE certificates have no DNS SAN.
func (s *Store) verifyPeer(certs []*x509.Certificate) (string, error) {
	b := s.cur.Load()
	if b == nil {
		return "", errors.New("no trust roots loaded")
	}
	var now time.Time
	if s.now != nil {
		now = s.now()
	}
	leaf, err := peertls.VerifyChain(certs, b.Roots, now)
	if err != nil {
		return "", err
	}
	return SPIFFEID(leaf)
}

// ClientConfig is the TLS configuration for dialling a peer proxy that must prove the
// identity want. It offers one ALPN protocol, TLS 1.3 only, and leaves
// CurvePreferences at Go's default so X25519MLKEM768 is negotiated between proxies.
func (s *Store) ClientConfig(want, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{alpn},
		// Chain and identity are verified in VerifyConnection below; the standard
		// verifier would demand a DNS name SPIFFE certificates do not have.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if b := s.cur.Load(); b != nil {
				return b.Cert, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := s.verifyPeer(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("peer identity %q is not the expected %q", got, want)
			}
			if cs.NegotiatedProtocol != alpn {
				return fmt.Errorf("peer did not negotiate ALPN %q", alpn)
			}
			return nil
		},
	}
}

// ProbeConfig is the TLS configuration for asking whether an address has a peer
// proxy of this mesh when discovery has not said which identity it must have: the
// peer must present a chain to the trust roots with a SPIFFE ID of this proxy's own
// trust domain, any workload's. Such a handshake proves "a meshed pod", not which
// one; the caller then holds the peer to the identity it proved (ClientConfig).
func (s *Store) ProbeConfig(alpn string) *tls.Config {
	c := s.ClientConfig("", alpn)
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		got, err := s.verifyPeer(cs.PeerCertificates)
		if err != nil {
			return err
		}
		b := s.cur.Load()
		own, err := config.ParseSPIFFEID(b.ID)
		if err != nil {
			return fmt.Errorf("this proxy's own identity %q: %w", b.ID, err)
		}
		peer, err := config.ParseSPIFFEID(got)
		if err != nil {
			return err
		}
		if peer.TrustDomain != own.TrustDomain {
			return fmt.Errorf("peer identity %q is not of trust domain %q", got, own.TrustDomain)
		}
		if cs.NegotiatedProtocol != alpn {
			return fmt.Errorf("peer did not negotiate ALPN %q", alpn)
		}
		return nil
	}
	return c
}

// ServerConfig is the TLS configuration of the inbound port for meshed peers. With
// requireClientCert false a client certificate is requested but optional (policy is
// then enforced per port after the handshake); a certificate that is presented must
// always verify.
func (s *Store) ServerConfig(requireClientCert bool) *tls.Config {
	auth := tls.RequestClientCert
	if requireClientCert {
		auth = tls.RequireAnyClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{ALPNHTTP2, ALPNHTTP1, ALPNTCP},
		ClientAuth: auth,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if b := s.cur.Load(); b != nil {
				return b.Cert, nil
			}
			return nil, errors.New("no certificate loaded")
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if requireClientCert {
					return errors.New("client certificate required")
				}
				return nil
			}
			_, err := s.verifyPeer(cs.PeerCertificates)
			return err
		},
	}
}

// ServerConfigFor is the TLS configuration of a port only one client may use (the
// tap port: the control plane's tap identity): TLS 1.3, the ALPN protocols given,
// this proxy's current certificate, and a client certificate that chains to the
// current roots and whose SPIFFE ID is want, or the handshake fails. An empty want
// refuses every client. Certificate and roots are read per handshake, so renewals
// and trust-anchor rotation apply to the next connection.
func (s *Store) ServerConfigFor(want string, alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: alpn,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if b := s.cur.Load(); b != nil {
				return b.Cert, nil
			}
			return nil, errors.New("no certificate loaded")
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			b := s.cur.Load()
			if b == nil {
				return errors.New("no trust roots loaded")
			}
			if want == "" {
				return errors.New("no client is allowed on this port")
			}
			var now time.Time
			if s.now != nil {
				now = s.now()
			}
			return peertls.VerifyName(cs.PeerCertificates, b.Roots, now, want)
		},
	}
}

// PeerID returns the verified SPIFFE ID of a completed handshake's peer, or "".
// VerifyConnection already verified the chain, so only the SAN is read here.
func PeerID(cs *tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, _ := SPIFFEID(cs.PeerCertificates[0])
	return id
}

// Source keeps a Store supplied with a valid certificate and trust roots until ctx
// ends: Files (PEM files, static mode) and Mesh (the identity service) implement it,
// and nothing else in the proxy knows which one is in use.
type Source interface {
	Run(ctx context.Context)
}

var (
	_ Source = (*Files)(nil)
	_ Source = (*Mesh)(nil)
)
