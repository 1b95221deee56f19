// Package peertls is the one TLS peer verifier of Weft's proxies and the one TLS client
// configuration for the control-plane services they call (identity, destination).
//
// Why custom verification at all: SPIFFE certificates name a workload in a URI SAN and
// carry no DNS name, so Go's standard verifier (which demands a DNS name, and checks the
// roots given when the config was made) cannot be used between proxies; and the trust
// roots change while a proxy runs (anchor rotation), so every handshake must read the
// roots of that moment. Three copies of this check (peer proxies, the destination
// client, the identity client) differed in which time they verified at and what they
// accepted; the rules now live here:
//
//   - the chain must verify to the roots read at handshake time, at the current time
//     (an expired or not-yet-valid certificate fails), through the intermediates the
//     peer sent;
//   - any extended key usage is accepted: certificates from the identity issuer serve
//     as client and server certificates alike, and the name check binds the peer;
//   - the peer's name is either a DNS name (checked against the DNS SANs, as the
//     standard verifier would) or a spiffe:// ID, which must be the leaf's only SPIFFE
//     URI SAN (SPIFFE X509-SVID section 2).
//
// It imports only the standard library, so that any proxy package can use it.
package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IsSPIFFE says whether name is a SPIFFE ID rather than a DNS name.
func IsSPIFFE(name string) bool { return strings.HasPrefix(name, "spiffe://") }

// WorkloadID is the SPIFFE ID of a ServiceAccount's workloads:
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>. The identity service
// signs it, proxies present it, and inbound policy names clients by it.
func WorkloadID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// ParseWorkloadID splits a workload SPIFFE ID; ok is false for anything that is not
// exactly spiffe://<trust domain>/ns/<namespace>/sa/<service account> with no part
// empty.
func ParseWorkloadID(id string) (trustDomain, namespace, serviceAccount string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return "", "", "", false
	}
	return parts[0], parts[2], parts[4], true
}

// VerifyChain verifies certs (leaf first, then the intermediates the peer sent) to
// roots at now (the zero time means the current time), and returns the leaf.
func VerifyChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	return verify(certs, roots, now, "")
}

func verify(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, dnsName string) (*x509.Certificate, error) {
	if roots == nil {
		return nil, errors.New("no trust roots loaded")
	}
	if len(certs) == 0 {
		return nil, errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		DNSName:       dnsName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, fmt.Errorf("verify peer certificate: %w", err)
	}
	return certs[0], nil
}

// SPIFFEID returns the single spiffe:// URI SAN of a certificate. SPIFFE X.509-SVIDs
// carry exactly one (SPIFFE X509-SVID section 2); a certificate with two could be read
// as either, so it names no one. The shape of the ID (Weft's /ns/<ns>/sa/<sa>) is the
// caller's to check.
func SPIFFEID(c *x509.Certificate) (string, error) {
	id := ""
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if id != "" {
			return "", errors.New("more than one SPIFFE URI SAN")
		}
		id = u.String()
	}
	if id == "" {
		return "", errors.New("no SPIFFE URI SAN")
	}
	return id, nil
}

// VerifyName verifies the chain as VerifyChain does and that the leaf proves name: a
// DNS SAN for a DNS name, the only SPIFFE URI SAN for a spiffe:// ID.
func VerifyName(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, name string) error {
	if name == "" {
		return errors.New("no peer name to verify")
	}
	if !IsSPIFFE(name) {
		_, err := verify(certs, roots, now, name)
		return err
	}
	leaf, err := verify(certs, roots, now, "")
	if err != nil {
		return err
	}
	id, err := SPIFFEID(leaf)
	if err != nil {
		return fmt.Errorf("peer is not %q: %w", name, err)
	}
	if id != name {
		return fmt.Errorf("peer is %q, want %q", id, name)
	}
	return nil
}

// ClientOptions configure a TLS client of a control-plane service.
type ClientOptions struct {
	// ServerName is what the server must prove: a DNS name (also sent as SNI) or a
	// spiffe:// ID. Required.
	ServerName string
	// Roots returns the trust roots; it is called at each handshake, so rotated roots
	// apply to the next connection. A nil pool fails the handshake. Required.
	Roots func() *x509.CertPool
	// Certificate returns the client certificate to present, read at each handshake so
	// that a renewed certificate is used by the next connection; nil (or a nil result)
	// presents none. The identity service needs none (the proxy proves itself with a
	// token); the destination service requires one.
	Certificate func() *tls.Certificate
	// NextProtos are the ALPN protocols offered (e.g. "h2").
	NextProtos []string
	// Now is the verification time. Default: time.Now (tests pass a clock).
	Now func() time.Time
}

// ClientConfig is the TLS 1.3 client configuration for a control-plane service. The
// chain and name are verified in VerifyConnection, against the roots of the moment;
// tls.Config.RootCAs would freeze the roots of the moment the config is made, and the
// standard verifier cannot check a SPIFFE ID.
func ClientConfig(o ClientOptions) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         o.NextProtos,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if o.Certificate != nil {
				if c := o.Certificate(); c != nil {
					return c, nil
				}
			}
			// No certificate (yet): a server that requires one refuses the handshake,
			// and the caller retries with backoff.
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			var roots *x509.CertPool
			if o.Roots != nil {
				roots = o.Roots()
			}
			var now time.Time
			if o.Now != nil {
				now = o.Now()
			}
			return VerifyName(cs.PeerCertificates, roots, now, o.ServerName)
		},
	}
	if !IsSPIFFE(o.ServerName) {
		cfg.ServerName = o.ServerName // SNI
	}
	return cfg
}
