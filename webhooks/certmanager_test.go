package webhooks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
	"github.com/weftmesh/weft/webhooks"
	"github.com/weftmesh/weft/webhooks/webhooktest"
)

// config/certmanager, applied as shipped, makes the real cert-manager controllers issue
// a serving certificate that a client verifying like the API server does (the CA from
// ca.crt, the Service's DNS name) accepts from Weft's webhook server.
func TestServingCertificateFromCertManager(t *testing.T) {
	tenv, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tenv.Start()
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() { _ = tenv.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}); err != nil {
		t.Fatal(err)
	}

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := webhooktest.WebhookConfigurations(); err != nil { // also installs bin/kustomize if missing
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(root, "bin", "kustomize"), "build", filepath.Join(root, "config", "certmanager")).Output()
	if err != nil {
		t.Fatalf("kustomize build config/certmanager: %v", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err == io.EOF {
				break
			}
			t.Fatal(err)
		}
		if err := c.Create(ctx, u); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}

	secret := &corev1.Secret{}
	start := time.Now()
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: "weft-system", Name: "weft-webhook-cert"}, secret)
		if err == nil && len(secret.Data["tls.crt"]) > 0 && len(secret.Data["ca.crt"]) > 0 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("cert-manager did not issue weft-webhook-cert within 60s (last error: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("serving certificate issued in %v", time.Since(start).Round(time.Millisecond))

	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt holds no PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("the serving key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	for _, name := range []string{"weft-webhook.weft-system.svc", "weft-webhook.weft-system.svc.cluster.local"} {
		if !slices.Contains(leaf.DNSNames, name) {
			t.Errorf("the certificate lacks DNS name %s (has %v)", name, leaf.DNSNames)
		}
	}

	// Serve a webhook with the issued files, as weft-controller does from the mounted
	// Secret, and call it as the API server would.
	certDir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, f), secret.Data[f], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir})
	srv.Register(webhooks.MutateNamespacePath, &webhook.Admission{Handler: &webhooks.NamespaceLabeler{}})
	go func() { _ = srv.Start(ctx) }()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no certificate")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "weft-webhook.weft-system.svc", MinVersion: tls.VersionTLS12,
	}}}
	nsRaw, _ := json.Marshal(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{"weft.dev/inject": "enabled"}}})
	review, _ := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Operation: admissionv1.Create, Object: runtimeRaw(nsRaw)}})
	url := "https://127.0.0.1:" + strconv.Itoa(port) + webhooks.MutateNamespacePath
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = hc.Post(url, "application/json", bytes.NewReader(review))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("calling the webhook over TLS with the issued certificate: %v", err)
	}
	defer resp.Body.Close()
	var got admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Response == nil || !got.Response.Allowed || len(got.Response.Patch) == 0 {
		t.Fatalf("unexpected admission response %+v", got.Response)
	}
	if !bytes.Contains(got.Response.Patch, []byte(`"weft.dev/inject":"enabled"`)) {
		t.Errorf("patch %s does not set the weft.dev/inject label", got.Response.Patch)
	}
	if v := resp.TLS.Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", v)
	}
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }
