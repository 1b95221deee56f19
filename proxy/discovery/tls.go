package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"

	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/identity"
)

// clientTLS is the TLS configuration of the connection to the destination service
// (peertls.ClientConfig: the one control-plane client configuration).
//
// The proxy proves who it is with its current workload certificate, and checks the
// server against the current trust roots; both are read from the store at each
// handshake, so a renewed certificate and rotated roots apply to the next connection.
// The server must prove serverName: a DNS name (the destination service's certificate
// carries weft-destination.<ns>.svc and ...svc.<cluster domain>) or a spiffe:// ID.
func clientTLS(store *identity.Store, serverName string) *tls.Config {
	return peertls.ClientConfig(peertls.ClientOptions{
		ServerName: serverName,
		Roots: func() *x509.CertPool {
			if b := store.Current(); b != nil {
				return b.Roots
			}
			return nil
		},
		Certificate: func() *tls.Certificate {
			if b := store.Current(); b != nil {
				return b.Cert
			}
			// No certificate yet: the server refuses the handshake and the client
			// retries with backoff until the identity is obtained.
			return nil
		},
	})
}

// dialTLS connects and completes the TLS handshake within ctx.
func dialTLS(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, network, addr)
}
