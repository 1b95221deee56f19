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

package controllers_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
	"github.com/weftmesh/weft/internal/trustbundle"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

const controlPlaneNS = "weft-system"

// meshMissingRefGrace is how long the Mesh's external issuer may be missing before the
// Mesh is Stalled, short so that tests see both sides of it.
const meshMissingRefGrace = 3 * time.Second

// offsetClock is real time plus an offset the test can move forward: the reconciler's
// retention decisions can be fast-forwarded while cert-manager and the API server keep
// real time.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// meshEnv is a running API server with cert-manager, the Mesh reconciler and the
// identity service.
type meshEnv struct {
	env          *envtest.Environment
	c            client.Client
	kube         kubernetes.Interface
	clock        *offsetClock
	identityAddr string
	// stopCertManager stops the cert-manager controllers (the rest keeps running).
	stopCertManager context.CancelFunc
	// writes counts the manager's write requests to the API server.
	writes *writeCounter
}

// startMeshEnv starts everything the identity chain needs, in-process, against a real
// kube-apiserver.
func startMeshEnv(t *testing.T) *meshEnv {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(t.Output())))
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())

	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controlPlaneNS}}); err != nil {
		t.Fatal(err)
	}
	cmCtx, stopCM := context.WithCancel(ctx)
	if err := certmanager.Start(cmCtx, certmanager.Config{RESTConfig: cfg, ClusterResourceNamespace: controlPlaneNS}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}

	// The reconciler and the identity service run with the privileges an install gives
	// weft-controller, and the cache weft-controller uses.
	mgrCfg := installRBAC(t, ctx, cfg, c)
	writes := &writeCounter{}
	mgrCfg.Wrap(writes.wrap)
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme:  testenv.Scheme,
		Cache:   controllers.CacheOptions(controlPlaneNS),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Other suites of this package start managers with the same controller names;
		// the names are unique per manager, which is what metrics need.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := &offsetClock{}
	if err := (&controllers.MeshReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder("mesh-controller"),
		Namespace:         controlPlaneNS,
		Now:               clock.Now,
		BundlePropagation: 2 * time.Second,
		RetentionGrace:    time.Minute,
		MissingRefGrace:   meshMissingRefGrace,
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	// Every call of these tests comes from 127.0.0.1: the per-peer limit, which
	// internal/identity's TestCertifyBounds covers, would refuse the later steps.
	limits := identity.Limits{PeerRate: 1e6, PeerBurst: 1e6}
	if err := identity.AddToManager(mgr, identity.Options{Namespace: controlPlaneNS, Addr: addr, Limits: limits}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
	})
	return &meshEnv{env: env, c: c, kube: kube, clock: clock, identityAddr: addr, stopCertManager: stopCM, writes: writes}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// bundle returns the anchors published in namespace ns.
func (m *meshEnv) bundle(ctx context.Context, ns string) ([]*x509.Certificate, error) {
	cm := &corev1.ConfigMap{}
	if err := m.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.TrustRootsName}, cm); err != nil {
		return nil, err
	}
	return trustbundle.ParsePEM([]byte(cm.Data[controllers.TrustRootsKey]))
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// identityClient dials the identity service, verifying its serving certificate against
// the published bundle as a proxy does, and returns the client and the certificate chain
// the server presented.
func (m *meshEnv) identityClient(t *testing.T, ctx context.Context) (apigrpc.IdentityClient, []*x509.Certificate) {
	t.Helper()
	anchors, err := m.bundle(ctx, controlPlaneNS)
	if err != nil {
		t.Fatal(err)
	}
	var presented []*x509.Certificate
	tlsCfg := &tls.Config{
		RootCAs:    pool(anchors...),
		ServerName: identity.ServiceName + "." + controlPlaneNS + ".svc",
		MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			presented = cs.PeerCertificates
			return nil
		},
	}
	conn, err := grpc.NewClient(m.identityAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := apigrpc.NewIdentityClient(conn)
	// Force the handshake now so the presented chain is known.
	_, _ = cl.Certify(ctx, &api.CertifyRequest{})
	if len(presented) == 0 {
		t.Fatalf("the identity service presented no certificate (is it serving on %s?)", m.identityAddr)
	}
	return cl, presented
}

// token asks the TokenRequest API for a token of the ServiceAccount.
func (m *meshEnv) token(t *testing.T, ctx context.Context, ns, sa string, audiences ...string) string {
	t.Helper()
	tr, err := m.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// csrOptions shape a certificate signing request.
type csrOptions struct {
	uris     []string
	dnsNames []string
	isCA     bool
	key      crypto.Signer
}

func makeCSR(t *testing.T, o csrOptions) []byte {
	t.Helper()
	key := o.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.CertificateRequest{DNSNames: o.dnsNames}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if o.isCA {
		// basicConstraints: SEQUENCE { BOOLEAN TRUE }
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkixExtension([]int{2, 5, 29, 19}, []byte{0x30, 0x03, 0x01, 0x01, 0xff}))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// resignToken rewrites the claims of a real token and signs it with key, keeping the
// header (and so the key id): with the API server's own key this makes an expired but
// otherwise genuine token; with another key, a forgery.
func resignToken(t *testing.T, token string, key *ecdsa.PrivateKey, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "ES256" {
		t.Fatalf("the test API server signs tokens with %v; this helper signs ES256 only", h["alg"])
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	edit(claims)
	payload, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signingInput := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// apiServerSigningKey reads the key envtest gave the API server for signing tokens.
func (m *meshEnv) apiServerSigningKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(m.env.ControlPlane.APIServer.CertDir, "sa-signer.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("sa-signer.key is not PEM")
	}
	var key any
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("sa-signer.key is a %T", key)
	}
	return ec
}

// verifyLeaf checks a Certify response against the anchors at time at, and returns the
// leaf and its chain.
func verifyLeaf(resp *api.CertifyResponse, anchors []*x509.Certificate, at time.Time) (*x509.Certificate, []*x509.Certificate, error) {
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the leaf: %w", err)
	}
	var chain []*x509.Certificate
	for _, der := range resp.GetIntermediateCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing an intermediate: %w", err)
		}
		chain = append(chain, c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool(anchors...), Intermediates: pool(chain...), CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	return leaf, chain, err
}

func pkixExtension(oid []int, value []byte) pkix.Extension {
	return pkix.Extension{Id: asn1.ObjectIdentifier(oid), Value: value}
}
