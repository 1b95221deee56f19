package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/weftmesh/weft/proxy/identity"
)

// clientTLS is the TLS configuration of the connection to the destination service.
//
// The proxy proves who it is with its current workload certificate (GetClientCertificate
// reads the store at each handshake, so a renewed certificate is used by the next
// connection), and checks the server against the current trust roots, also read at each
// handshake because the roots are reloaded when the trust anchor rotates. The server
// must prove serverName: a DNS name (the destination service's certificate carries
// weft-destination.<ns>.svc and ...svc.cluster.local) or a spiffe:// ID.
func clientTLS(store *identity.Store, serverName string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified in VerifyConnection against the roots of the moment;
		// tls.Config.RootCAs would freeze the roots of the moment the config is made.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if b := store.Current(); b != nil {
				return b.Cert, nil
			}
			// No certificate yet: the server refuses the handshake and the client
			// retries with backoff until the identity is obtained.
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(store, serverName, cs)
		},
	}
	if !strings.HasPrefix(serverName, "spiffe://") {
		cfg.ServerName = serverName // SNI
	}
	return cfg
}

func verifyServer(store *identity.Store, serverName string, cs tls.ConnectionState) error {
	b := store.Current()
	if b == nil || b.Roots == nil {
		return errors.New("no trust roots loaded yet")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("destination service presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	// Certificates minted from the identity issuer may carry client and server
	// usages or none; the name check below is what binds the server.
	opts := x509.VerifyOptions{Roots: b.Roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	spiffe := strings.HasPrefix(serverName, "spiffe://")
	if !spiffe {
		opts.DNSName = serverName
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("destination service certificate: %w", err)
	}
	if spiffe {
		id, err := identity.SPIFFEID(cs.PeerCertificates[0])
		if err != nil || id != serverName {
			return fmt.Errorf("destination service is %q, want %q", id, serverName)
		}
	}
	return nil
}

// dialTLS connects and completes the TLS handshake within ctx.
func dialTLS(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, network, addr)
}
