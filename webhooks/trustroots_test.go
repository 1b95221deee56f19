package webhooks_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/webhooks/webhooktest"
)

func selfSignedPEM(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func trustRoots(ns, bundle string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: inject.TrustRootsConfigMap},
		Data: map[string]string{inject.TrustRootsKey: bundle}}
}

// TestPerPodOptInRefusesForeignTrustRoots: a pod opted in by its own label outside a
// meshed namespace, where a namespace user created a ConfigMap named weft-trust-roots
// with their own CA, is refused (the proxy would trust that CA); with no such ConfigMap,
// or one holding the published anchors, it is injected.
func TestPerPodOptInRefusesForeignTrustRoots(t *testing.T) {
	// The bundle weft-controller publishes in the control-plane namespace.
	anchor, newAnchor := selfSignedPEM(t, "anchor"), selfSignedPEM(t, "next anchor")
	cp := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: webhooktest.ControlPlaneNamespace}}
	if err := env.Client.Create(ctx(t), cp); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	published := trustRoots(cp.Name, anchor+newAnchor)
	if err := env.Client.Create(ctx(t), published); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), published) })

	optIn := map[string]string{inject.AnnotationInject: inject.InjectEnabled}
	cases := []struct {
		name   string
		bundle string // "" means no ConfigMap in the pod's namespace
		want   []string
	}{
		{"a user's own CA", selfSignedPEM(t, "rogue"), []string{"weft-trust-roots holds a certificate (CN=rogue) that is not in the trust bundle weft-controller publishes", "delete ConfigMap"}},
		{"the published anchors plus a user's own", anchor + selfSignedPEM(t, "rogue"), []string{"CN=rogue"}},
		{"not a bundle", "hello", []string{"holds no readable trust bundle"}},
		{"no ConfigMap yet", "", nil},
		{"the published bundle", anchor + newAnchor, nil},
		{"a copy not yet updated with a new anchor", anchor, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t, nil, nil)
			if tc.bundle != "" {
				if err := env.Client.Create(ctx(t), trustRoots(ns.Name, tc.bundle)); err != nil {
					t.Fatal(err)
				}
			}
			p := appPod(ns.Name, "opted-in", nil, optIn)
			err := env.Client.Create(ctx(t), p, client.DryRunAll)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				assertInjected(t, p)
				return
			}
			if err == nil {
				t.Fatalf("case %d: injected a pod that would trust a ConfigMap Weft did not write", i)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
