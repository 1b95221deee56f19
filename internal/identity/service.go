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

// Package identity is Weft's identity service: a proxy sends a certificate signing
// request and its projected ServiceAccount token; the service checks the token with the
// TokenReview API, checks that the request asks for exactly the SPIFFE ID of that
// ServiceAccount, and signs a short-lived leaf with the identity issuer's key, which it
// reads from the Secret cert-manager maintains. It serves gRPC over TLS with a
// certificate it mints from the same issuer.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/svcname"
	"github.com/weftmesh/weft/internal/trustbundle"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// Names fixed by the contracts between Weft's parts.
const (
	// Audience is the audience of the proxies' projected ServiceAccount tokens.
	Audience = meshdefaults.TokenAudience
	// IssuerSecretName is the Secret cert-manager writes the identity issuer to.
	IssuerSecretName = "weft-identity-issuer"
	// TrustRootsConfigMapName is the ConfigMap with the published trust bundle.
	TrustRootsConfigMapName = meshdefaults.TrustRootsConfigMap
	// TrustRootsKey is the bundle's key in that ConfigMap.
	TrustRootsKey = meshdefaults.TrustRootsKey
	// ServiceName is the identity Service in the control-plane namespace.
	ServiceName = meshdefaults.IdentityServiceName
	// DefaultAddr is where the service listens.
	DefaultAddr = ":8080"
)

// clockSkew backdates certificates so a peer whose clock is slightly behind accepts them.
const clockSkew = time.Minute

// Config wires a Service.
type Config struct {
	// Namespace is the control-plane namespace holding the issuer Secret and the bundle.
	Namespace string
	// Reader reads the issuer Secret, the bundle ConfigMap and the Mesh; a cache in
	// production, so a renewed issuer is seen as soon as the watch delivers it.
	Reader client.Reader
	// Reviewer creates TokenReviews (a live client).
	Reviewer client.Client
	// Audience the tokens must carry. Default: identity.weft.dev.
	Audience string
	// ServerNames are the DNS names of the serving certificate. Default: the Service's
	// names in Namespace.
	ServerNames []string
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives one line per refused request and per issuer change.
	Log logr.Logger
	// Limits bound callers: rates per source IP and in all, the review cache, streams
	// per connection. Zero fields take their defaults.
	Limits Limits
}

// Service implements the Identity gRPC API.
type Service struct {
	apigrpc.UnimplementedIdentityServer

	cfg    Config
	issuer *issuerSource

	// peers limits calls per source IP; reviews limits TokenReviews in all; cache
	// remembers successful reviews.
	peers   *peerLimiter
	reviews *rate.Limiter
	cache   *reviewCache

	mu      sync.Mutex
	serving *tls.Certificate
	// servingIssuer is the serial of the issuer that signed serving.
	servingIssuer *big.Int
	// tap is the tap API's client certificate (TapClientCertificate), signed by the
	// issuer of serial tapIssuer.
	tap       *tls.Certificate
	tapIssuer *big.Int
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Namespace == "" || cfg.Reader == nil || cfg.Reviewer == nil {
		return nil, errors.New("identity: Namespace, Reader and Reviewer are required")
	}
	if cfg.Audience == "" {
		cfg.Audience = Audience
	}
	if len(cfg.ServerNames) == 0 {
		cfg.ServerNames = []string{
			ServiceName + "." + cfg.Namespace + ".svc",
			svcname.Service{Namespace: cfg.Namespace, Name: ServiceName}.FQDN(meshdefaults.ClusterDomain),
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	cfg.Limits.defaults()
	return &Service{
		cfg:     cfg,
		issuer:  &issuerSource{reader: cfg.Reader, key: types.NamespacedName{Namespace: cfg.Namespace, Name: IssuerSecretName}},
		peers:   newPeerLimiter(cfg.Limits.PeerRate, cfg.Limits.PeerBurst, cfg.Limits.MaxPeers),
		reviews: rate.NewLimiter(cfg.Limits.ReviewRate, cfg.Limits.ReviewBurst),
		cache:   newReviewCache(cfg.Limits.CacheSize, cfg.Limits.CacheMaxAge),
	}, nil
}

// genericTokenMessage is all a caller learns about a refused token: the reasons
// (malformed, wrong audience, expired, refused by the API server) go to the log and
// to the rejected metric, not to a caller nobody has authenticated yet.
const genericTokenMessage = "token rejected"

// unavailableMessage is what a caller learns of an internal error.
const unavailableMessage = "the identity service cannot sign certificates right now; retry later"

// Certify implements apigrpc.IdentityServer.
func (s *Service) Certify(ctx context.Context, req *api.CertifyRequest) (*api.CertifyResponse, error) {
	ip := peerIP(ctx)
	if !s.peers.allow(ip, s.cfg.Now()) {
		RejectedTotal.WithLabelValues(ReasonRateLimited).Inc()
		s.cfg.Log.V(1).Info("Refused a certificate request", "peer", ip, "reason", ReasonRateLimited)
		return nil, status.Errorf(codes.ResourceExhausted, "too many certificate requests from %s: retry later with backoff", ip)
	}
	resp, rej, err := s.certify(ctx, req)
	if err != nil {
		RejectedTotal.WithLabelValues(ReasonUnavailable).Inc()
		s.cfg.Log.Error(err, "Certify failed", "identity", req.GetIdentity(), "peer", ip)
		return nil, status.Error(codes.Unavailable, unavailableMessage)
	}
	if rej != nil {
		RejectedTotal.WithLabelValues(rej.reason).Inc()
		detail := rej.detail
		if detail == "" {
			detail = rej.msg
		}
		s.cfg.Log.Info("Refused a certificate request", "identity", req.GetIdentity(), "peer", ip, "reason", rej.reason, "message", detail)
		return nil, status.Error(codeFor(rej.reason), rej.msg)
	}
	IssuedTotal.Inc()
	return resp, nil
}

func codeFor(reason string) codes.Code {
	switch reason {
	case ReasonTokenRejected, ReasonTokenMalformed, ReasonTokenAudience, ReasonTokenExpired, ReasonNotSA:
		return codes.Unauthenticated
	case ReasonIdentityMismatch, ReasonReservedIdentity:
		return codes.PermissionDenied
	case ReasonUnavailable, ReasonReviewsBusy, ReasonIssuerExpiring, ReasonIssuerNotYetValid:
		return codes.Unavailable
	case ReasonRateLimited:
		return codes.ResourceExhausted
	}
	return codes.InvalidArgument
}

// certify returns a response, or a rejection (the caller's fault), or an error (ours).
func (s *Service) certify(ctx context.Context, req *api.CertifyRequest) (*api.CertifyResponse, *rejection, error) {
	if req.GetIdentity() == "" || len(req.GetToken()) == 0 || len(req.GetCertificateSigningRequest()) == 0 {
		return nil, reject(ReasonMalformedRequest, "identity, token and certificate_signing_request are all required"), nil
	}
	mesh := &meshv1alpha1.Mesh{}
	if err := s.cfg.Reader.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, reject(ReasonUnavailable, "there is no Mesh named %q: apply one to enable identities", meshv1alpha1.MeshName), nil
		}
		return nil, nil, fmt.Errorf("reading the Mesh: %w", err)
	}
	if rej := s.reservedIdentity(req.GetIdentity()); rej != nil {
		return nil, rej, nil
	}
	// The CSR is checked before the token so a malformed request costs no API call.
	csr, rej := checkCSR(req.GetCertificateSigningRequest(), req.GetIdentity())
	if rej != nil {
		return nil, rej, nil
	}
	iss, err := s.issuer.get(ctx)
	if errors.Is(err, errNoIssuer) {
		return nil, reject(ReasonUnavailable, "%v; the Mesh reconciler and cert-manager create it", err), nil
	}
	if err != nil {
		return nil, nil, err
	}
	s.observeIssuer(ctx, iss)
	// The issuer is checked before the token, so that a service that cannot sign
	// costs the API server nothing.
	life := mesh.Spec.Identity.Workload.Duration.Duration
	if life <= 0 {
		life = 24 * time.Hour
	}
	// Fail safe: an issuer with less than a leaf lifetime left would sign ever shorter
	// leaves (a renewal storm, as proxies renew at a share of their leaf's life) and
	// finally expired ones. Refusing keeps the leaves already out there working until
	// they expire and says what is wrong.
	if reason, msg := IssuerUsable(iss.Cert, life, s.cfg.Now()); reason != "" {
		IssuerUsableGauge.Set(0)
		return nil, reject(reason, "%s", msg), nil
	}
	IssuerUsableGauge.Set(1)

	ns, sa, rej, err := s.authenticate(ctx, string(req.GetToken()))
	if rej != nil || err != nil {
		return nil, rej, err
	}
	want := SPIFFEID(mesh.Spec.TrustDomain, ns, sa)
	if req.GetIdentity() != want {
		return nil, reject(ReasonIdentityMismatch, "the token is for ServiceAccount %s/%s, whose identity is %s, not %s", ns, sa, want, req.GetIdentity()), nil
	}
	uri, _ := url.Parse(want)
	leaf, err := s.sign(iss, &x509.Certificate{
		URIs:        []*url.URL{uri},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, life)
	if err != nil {
		return nil, nil, err
	}
	resp := &api.CertifyResponse{LeafCertificate: leaf.Raw, ValidUntil: timestamppb.New(leaf.NotAfter)}
	for _, c := range iss.Chain {
		resp.IntermediateCertificates = append(resp.IntermediateCertificates, c.Raw)
	}
	return resp, nil, nil
}

// authenticate returns the ServiceAccount of a token: refused at once when the local
// checks fail, from the cache when the same token was reviewed successfully before,
// else from a TokenReview within the global review rate. The caller learns only
// "token rejected"; the reason goes to the log and metric.
func (s *Service) authenticate(ctx context.Context, token string) (ns, sa string, rej *rejection, err error) {
	now := s.cfg.Now()
	claims, exp, rej := checkToken(token, s.cfg.Audience, now)
	if rej != nil {
		return "", "", rej.hide(genericTokenMessage), nil
	}
	if r, ok := s.cache.get(token, now); ok {
		TokenReviewsTotal.WithLabelValues("cached").Inc()
		return r.namespace, r.serviceAccount, nil, nil
	}
	if !s.reviews.AllowN(now, 1) {
		TokenReviewsTotal.WithLabelValues("throttled").Inc()
		return "", "", reject(ReasonReviewsBusy, "the identity service is busy: retry later with backoff"), nil
	}
	ns, sa, rej, err = s.review(ctx, token)
	switch {
	case err != nil:
		TokenReviewsTotal.WithLabelValues("error").Inc()
		return "", "", nil, err
	case rej != nil:
		TokenReviewsTotal.WithLabelValues("rejected").Inc()
		return "", "", rej.hide(genericTokenMessage), nil
	}
	TokenReviewsTotal.WithLabelValues("authenticated").Inc()
	s.cache.put(token, reviewed{namespace: ns, serviceAccount: sa}, exp, now)
	s.cfg.Log.V(1).Info("Authenticated a token", "serviceAccount", ns+"/"+sa, "pod", claims.pod())
	return ns, sa, nil, nil
}

// review asks the API server who the token belongs to. Forged, expired and
// wrong-audience tokens, and tokens whose ServiceAccount (or bound Pod) is gone, all
// come back unauthenticated with the API server's reason.
func (s *Service) review(ctx context.Context, token string) (ns, sa string, rej *rejection, err error) {
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{s.cfg.Audience}}}
	if err := s.cfg.Reviewer.Create(ctx, tr); err != nil {
		return "", "", nil, fmt.Errorf("creating a TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		why := tr.Status.Error
		if why == "" {
			why = "not authenticated"
		}
		return "", "", reject(ReasonTokenRejected, "the ServiceAccount token was refused by the API server: %s", why), nil
	}
	audOK := false
	for _, a := range tr.Status.Audiences {
		audOK = audOK || a == s.cfg.Audience
	}
	if !audOK {
		return "", "", reject(ReasonTokenRejected, "the token is not for audience %s (it is for %v)", s.cfg.Audience, tr.Status.Audiences), nil
	}
	parts := strings.Split(tr.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return "", "", reject(ReasonNotSA, "the token belongs to %q, not to a ServiceAccount", tr.Status.User.Username), nil
	}
	return parts[2], parts[3], nil, nil
}

// sign issues tmpl for pub from iss, valid for life but never beyond the issuer, so that
// an anchor's retention (one leaf lifetime after the issuer moved) covers every leaf.
func (s *Service) sign(iss *Issuer, tmpl *x509.Certificate, pub any, life time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	now := s.cfg.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(life)
	if tmpl.NotAfter.After(iss.Cert.NotAfter) {
		tmpl.NotAfter = iss.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Key)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// observeIssuer updates the expiry gauges for the issuer in use.
func (s *Service) observeIssuer(ctx context.Context, iss *Issuer) {
	IssuerExpiry.Set(float64(iss.Cert.NotAfter.Unix()))
	cm := &corev1.ConfigMap{}
	if err := s.cfg.Reader.Get(ctx, types.NamespacedName{Namespace: s.cfg.Namespace, Name: TrustRootsConfigMapName}, cm); err != nil {
		return
	}
	anchors, err := trustbundle.ParsePEM([]byte(cm.Data[TrustRootsKey]))
	if err != nil {
		return
	}
	top := iss.Chain[len(iss.Chain)-1]
	for _, a := range anchors {
		if top.CheckSignatureFrom(a) == nil || top.Equal(a) {
			AnchorExpiry.Set(float64(a.NotAfter.Unix()))
			return
		}
	}
}

// servingCertificate returns the TLS certificate of the service, minting a new one from
// the current issuer when the issuer changed or the old one is past half its life.
func (s *Service) servingCertificate(ctx context.Context) (*tls.Certificate, error) {
	iss, err := s.issuer.get(ctx)
	if err != nil {
		return nil, err
	}
	s.observeIssuer(ctx, iss)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if c := s.serving; c != nil && s.servingIssuer.Cmp(iss.Cert.SerialNumber) == 0 {
		half := c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 2)
		if now.Before(half) {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	leaf, err := s.sign(iss, &x509.Certificate{
		DNSNames:    s.cfg.ServerNames,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &key.PublicKey, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range iss.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.serving, s.servingIssuer = cert, iss.Cert.SerialNumber
	s.cfg.Log.Info("Minted the identity service's serving certificate", "issuerSerial", iss.Cert.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
	return cert, nil
}

// TLSConfig is the service's server TLS configuration: TLS 1.3 only, the certificate
// minted per handshake from the current issuer.
func (s *Service) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.servingCertificate(hello.Context())
		},
	}
}

// Serve serves the gRPC API on lis until ctx is done.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(64<<10), // a CSR and a token are a few KiB
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(s.cfg.Limits.MaxConcurrentStreams),
	)
	apigrpc.RegisterIdentityServer(srv, s)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
		return nil
	case err := <-errc:
		return err
	}
}
