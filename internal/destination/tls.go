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

package destination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/internal/trustbundle"
)

// credentialsSource builds the server's TLS configuration: the serving certificate
// comes from internal/identity (minted from the identity issuer, renewed when the
// issuer changes or at half life) and client certificates are verified against the
// trust roots as they are at the time of each handshake.
type credentialsSource struct {
	serving *identity.Service
	reader  client.Reader
	key     types.NamespacedName
	log     logr.Logger

	mu    sync.Mutex
	rv    string
	roots *x509.CertPool
}

// newCredentials reuses the identity service's certificate minting: an identity.Service
// configured with the destination's server names only ever serves as the source of
// that certificate here (its Certify API is not registered, so the reviewer is unused).
func newCredentials(reader client.Reader, reviewer client.Client, opts Options, log logr.Logger) (*credentialsSource, error) {
	svc, err := identity.New(identity.Config{
		Namespace:   opts.Namespace,
		Reader:      reader,
		Reviewer:    reviewer,
		ServerNames: opts.ServerNames,
		Log:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the serving certificate: %w", err)
	}
	return &credentialsSource{
		serving: svc,
		reader:  reader,
		key:     types.NamespacedName{Namespace: opts.Namespace, Name: identity.TrustRootsConfigMapName},
		log:     log,
	}, nil
}

// currentRoots returns the pool of the published trust anchors, re-parsed only when
// the ConfigMap changed.
func (c *credentialsSource) currentRoots(ctx context.Context) (*x509.CertPool, error) {
	cm := &corev1.ConfigMap{}
	if err := c.reader.Get(ctx, c.key, cm); err != nil {
		return nil, fmt.Errorf("reading the trust roots ConfigMap %s: %w", c.key, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.roots != nil && c.rv == cm.ResourceVersion {
		return c.roots, nil
	}
	anchors, err := trustbundle.ParsePEM([]byte(cm.Data[identity.TrustRootsKey]))
	if err != nil {
		return nil, fmt.Errorf("parsing %s of ConfigMap %s: %w", identity.TrustRootsKey, c.key, err)
	}
	if len(anchors) == 0 {
		return nil, fmt.Errorf("the ConfigMap %s holds no trust anchor", c.key)
	}
	pool := x509.NewCertPool()
	for _, a := range anchors {
		pool.AddCert(a)
	}
	c.rv, c.roots = cm.ResourceVersion, pool
	c.log.Info("Loaded the trust roots", "anchors", len(anchors), "resourceVersion", cm.ResourceVersion)
	return pool, nil
}

// TLSConfig returns the server's TLS configuration. Each handshake gets a configuration
// with the current roots as ClientCAs. A client that presents a certificate must chain
// to them (else the handshake fails); one that presents none completes the handshake
// but every call it makes is refused with Unauthenticated, as the API documents.
func (c *credentialsSource) TLSConfig() *tls.Config {
	base := c.serving.TLSConfig()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			roots, err := c.currentRoots(hello.Context())
			if err != nil {
				c.log.Error(err, "Refused a handshake: no trust roots")
				return nil, err
			}
			return &tls.Config{
				MinVersion:     tls.VersionTLS13,
				GetCertificate: base.GetCertificate,
				ClientAuth:     tls.VerifyClientCertIfGiven,
				ClientCAs:      roots,
				// gRPC requires HTTP/2 to be negotiated by ALPN; the configuration
				// returned here replaces the one grpc's credentials set it on.
				NextProtos: []string{"h2"},
			}, nil
		},
	}
}

func (c *credentialsSource) serverOption() grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(c.TLSConfig()))
}

// errNoClientCert is returned for calls on connections without a client certificate.
var errNoClientCert = errors.New("a client certificate is required")

// clientNamespace returns the namespace of the SPIFFE ID of the verified client
// certificate of the call, spiffe://<trust domain>/ns/<namespace>/sa/<sa>, and that ID.
func clientNamespace(ctx context.Context) (ns, id string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", status.Error(codes.Unauthenticated, errNoClientCert.Error())
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return "", "", status.Error(codes.Unauthenticated, errNoClientCert.Error())
	}
	// The one SPIFFE URI SAN rule of peertls: a certificate with two SPIFFE IDs names
	// no one, rather than whichever comes first.
	if id, err := peertls.SPIFFEID(info.State.PeerCertificates[0]); err == nil {
		if u, err := url.Parse(id); err == nil {
			if ns, ok := spiffeNamespace(u); ok {
				return ns, id, nil
			}
		}
	}
	return "", "", status.Error(codes.Unauthenticated, "the client certificate carries no SPIFFE workload identity")
}

func spiffeNamespace(u *url.URL) (string, bool) {
	if u.Scheme != "spiffe" || u.Host == "" {
		return "", false
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[1] == "" || parts[2] != "sa" || parts[3] == "" {
		return "", false
	}
	return parts[1], true
}
