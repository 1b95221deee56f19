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

package identity_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

const (
	cpNS  = "weft-system"
	appNS = "shop"
	appSA = "web"
)

// idEnv is a real API server with a Mesh, an identity issuer Secret (a CA the test
// made, as cert-manager would write it) and a ServiceAccount.
type idEnv struct {
	c      client.Client
	kube   kubernetes.Interface
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
}

func startIDEnv(t *testing.T) *idEnv {
	t.Helper()
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := &idEnv{c: c, kube: kube}
	e.caKey, e.caCert = makeCA(t, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cpNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: appSA}},
		&meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}},
		issuerSecret(t, e.caKey, e.caCert),
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func makeCA(t *testing.T, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "test identity issuer"},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func issuerSecret(t *testing.T, key *ecdsa.PrivateKey, cert *x509.Certificate) *corev1.Secret {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: cpNS, Name: identity.IssuerSecretName},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		},
	}
}

// serve runs an identity service with limits (and clock now, when set) on a loopback
// port and returns a client that verifies it against the test CA.
func (e *idEnv) serve(t *testing.T, limits identity.Limits, now func() time.Time) apigrpc.IdentityClient {
	t.Helper()
	svc, err := identity.New(identity.Config{Namespace: cpNS, Reader: e.c, Reviewer: e.c, Limits: limits, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(e.caCert)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: identity.ServiceName + "." + cpNS + ".svc", MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return apigrpc.NewIdentityClient(conn)
}

func (e *idEnv) token(t *testing.T, audiences ...string) string {
	t.Helper()
	tr, err := e.kube.CoreV1().ServiceAccounts(appNS).CreateToken(context.Background(), appSA, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// tokenReviews reads how many TokenReviews the API server has served, from its own
// /metrics (apiserver_request_total{resource="tokenreviews"}): the count is the API
// server's, not the service's.
func (e *idEnv) tokenReviews(t *testing.T) float64 {
	t.Helper()
	raw, err := e.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("reading the API server's /metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parsing the API server's /metrics: %v", err)
	}
	total := 0.0
	for _, m := range families["apiserver_request_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "resource" && l.GetValue() == "tokenreviews" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func makeCSR(t *testing.T, id string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// forge keeps a real token's header and claims (so it passes every local check) and
// replaces its signature with random bytes: only the API server can tell.
func forge(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwt builds an unsigned-looking token with the given claims, for the local checks.
func jwt(claims map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "x"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." +
		base64.RawURLEncoding.EncodeToString([]byte("signature"))
}

// TestCertifyBounds shows that the identity service cannot be made to hammer the API
// server: garbage and forged tokens from any one caller cost at most a handful of
// TokenReviews, counted by the API server itself.
func TestCertifyBounds(t *testing.T) {
	e := startIDEnv(t)
	ctx := context.Background()
	id := identity.SPIFFEID("cluster.local", appNS, appSA)
	csr := makeCSR(t, id)
	good := e.token(t, identity.Audience)
	open := identity.Limits{PeerRate: 1e6, PeerBurst: 1e6}

	t.Run("1,000 garbage tokens cause no TokenReview", func(t *testing.T) {
		cl := e.serve(t, open, nil)
		now := time.Now().Unix()
		garbage := []string{
			"abc", "a.b.c", "..", good + "x.y", strings.Repeat("A", 9000),
			jwt(map[string]any{"iss": "x", "aud": "vault", "exp": now + 600}),
			jwt(map[string]any{"iss": "x", "aud": []string{identity.Audience}, "exp": now - 600}),
			jwt(map[string]any{"iss": "x", "aud": identity.Audience, "exp": now + 600, "nbf": now + 600}),
			jwt(map[string]any{"aud": identity.Audience, "exp": now + 600}),
			jwt(map[string]any{"iss": "x", "aud": identity.Audience}),
		}
		before := e.tokenReviews(t)
		rejected := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenMalformed)) +
			testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenAudience)) +
			testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenExpired))
		wrong := 0
		for i := range 1000 {
			tok := garbage[i%len(garbage)]
			if i >= len(garbage) && i%2 == 0 {
				tok = fmt.Sprintf("garbage-%d-%x", i, i*7919)
			}
			_, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(tok), CertificateSigningRequest: csr})
			if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "token rejected" {
				if wrong++; wrong <= 3 {
					t.Errorf("call %d (token %.40q): %v %q, want Unauthenticated \"token rejected\"", i, tok, st.Code(), st.Message())
				}
			}
		}
		reviews := e.tokenReviews(t) - before
		t.Logf("1,000 Certify calls with garbage tokens: %v TokenReviews on the API server", reviews)
		if reviews != 0 {
			t.Errorf("garbage tokens caused %v TokenReviews, want 0", reviews)
		}
		got := testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenMalformed)) +
			testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenAudience)) +
			testutil.ToFloat64(identity.RejectedTotal.WithLabelValues(identity.ReasonTokenExpired)) - rejected
		if got != 1000 {
			t.Errorf("rejected{token_malformed|token_audience|token_expired} grew by %v, want 1000", got)
		}
	})

	t.Run("1,000 forged tokens from one caller: the per-peer limit bounds the reviews", func(t *testing.T) {
		cl := e.serve(t, identity.Limits{}, nil) // the defaults: 1/s, burst 10
		before := e.tokenReviews(t)
		start := time.Now()
		limited := 0
		for i := range 1000 {
			_, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(forge(t, good)), CertificateSigningRequest: csr})
			switch st := status.Convert(err); st.Code() {
			case codes.ResourceExhausted:
				limited++
			case codes.Unauthenticated:
				if st.Message() != "token rejected" {
					t.Fatalf("call %d: message %q tells an unauthenticated caller more than \"token rejected\"", i, st.Message())
				}
			default:
				t.Fatalf("call %d: %v, want Unauthenticated or ResourceExhausted", i, err)
			}
		}
		elapsed := time.Since(start)
		reviews := e.tokenReviews(t) - before
		t.Logf("1,000 Certify calls with forged tokens in %v: %v TokenReviews, %d calls refused with ResourceExhausted", elapsed.Round(time.Millisecond), reviews, limited)
		// The burst, plus one per second of the test.
		if limit := 10 + elapsed.Seconds() + 1; reviews > limit {
			t.Errorf("forged tokens caused %v TokenReviews, want at most %.0f", reviews, limit)
		}
		if reviews < 1 {
			t.Errorf("no TokenReview at all: the forged tokens did not get past the local checks, so this case tests nothing")
		}
	})

	t.Run("one good token used 1,000 times is reviewed once", func(t *testing.T) {
		cl := e.serve(t, open, nil)
		tok := e.token(t, identity.Audience)
		before := e.tokenReviews(t)
		for i := range 1000 {
			if _, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(tok), CertificateSigningRequest: csr}); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if reviews := e.tokenReviews(t) - before; reviews != 1 {
			t.Errorf("1,000 calls with one token caused %v TokenReviews, want 1", reviews)
		}
	})

	t.Run("the global review rate bounds many callers together", func(t *testing.T) {
		cl := e.serve(t, identity.Limits{PeerRate: 1e6, PeerBurst: 1e6, ReviewRate: 1, ReviewBurst: 3}, nil)
		before := e.tokenReviews(t)
		busy := 0
		for range 50 {
			_, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(forge(t, good)), CertificateSigningRequest: csr})
			if status.Code(err) == codes.Unavailable {
				busy++
			}
		}
		if reviews := e.tokenReviews(t) - before; reviews > 5 || busy < 45 {
			t.Errorf("50 forged tokens with a review budget of 3 + 1/s: %v TokenReviews, %d Unavailable; want at most 5 and at least 45", reviews, busy)
		}
	})

	t.Run("an issuer with less than a leaf lifetime left signs nothing", func(t *testing.T) {
		// cert-manager did not renew: the issuer in the Secret has an hour left, less
		// than the 24h leaf lifetime.
		e.caKey, e.caCert = makeCA(t, time.Now().Add(-47*time.Hour), time.Now().Add(time.Hour))
		secret := issuerSecret(t, e.caKey, e.caCert)
		if err := e.c.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		cl := e.serve(t, open, nil)
		issued := testutil.ToFloat64(identity.IssuedTotal)
		before := e.tokenReviews(t)
		_, err := cl.Certify(ctx, &api.CertifyRequest{Identity: id, Token: []byte(e.token(t, identity.Audience)), CertificateSigningRequest: csr})
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "less than one workload certificate lifetime") ||
			!strings.Contains(st.Message(), "weft-identity-issuer") {
			t.Fatalf("Certify = %v %q, want Unavailable saying the issuer is too close to its end and what to check", st.Code(), st.Message())
		}
		t.Logf("%v: %s", st.Code(), st.Message())
		if testutil.ToFloat64(identity.IssuedTotal) != issued || testutil.ToFloat64(identity.IssuerUsableGauge) != 0 {
			t.Errorf("issued grew or weft_identity_issuer_usable is not 0")
		}
		if reviews := e.tokenReviews(t) - before; reviews != 0 {
			t.Errorf("a service that cannot sign sent %v TokenReviews, want 0", reviews)
		}
	})
}
