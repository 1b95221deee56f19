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

// Package integration runs Weft's parts together: a real kube-apiserver, the real
// cert-manager controllers, weft-controller's reconcilers and identity service, and
// weft-proxy binaries in mesh mode that obtain their certificates from that service.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
)

const controlPlaneNS = "weft-system"

// controlPlane is a running API server with cert-manager and weft-controller's parts.
type controlPlane struct {
	c            client.Client
	kube         kubernetes.Interface
	identityAddr string
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
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
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg, ClusterResourceNamespace: controlPlaneNS}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     testenv.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same wiring as cmd/weft-controller.
	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: controlPlaneNS}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	if err := identity.AddToManager(mgr, identity.Options{Namespace: controlPlaneNS, Addr: addr}); err != nil {
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
	return &controlPlane{c: c, kube: kube, identityAddr: addr}
}

// TestMeshedPairGetsIdentitiesAndTalksMTLS applies a Mesh, then starts two weft-proxy
// processes in mesh mode, each with a real projected-style ServiceAccount token. Each
// must get its leaf from the identity service, become ready, and carry a request from a
// client through the pair over mTLS with both identities recorded in the metrics. A
// proxy asking for an identity its token does not prove must never become ready.
func TestMeshedPairGetsIdentitiesAndTalksMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, cert-manager and two proxies")
	}
	cp := startControlPlane(t)
	ctx := context.Background()
	proxyBin := buildProxy(t)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{"weft.dev/inject": "enabled"}}}
	if err := cp.c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "books"} {
		if err := cp.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: sa}}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := cp.c.Create(ctx, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the Mesh to be Ready", func() error {
		m := &meshv1alpha1.Mesh{}
		if err := cp.c.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, m); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady) {
			return fmt.Errorf("conditions: %+v", m.Status.Conditions)
		}
		return nil
	})
	t.Logf("Mesh Ready %s after it was applied", time.Since(start).Round(time.Millisecond))

	// What the injector mounts into a pod: the namespace's trust roots and a token.
	dir := t.TempDir()
	roots := filepath.Join(dir, "ca-bundle.pem")
	waitFor(t, 10*time.Second, "the trust roots in the meshed namespace", func() error {
		cm := &corev1.ConfigMap{}
		if err := cp.c.Get(ctx, types.NamespacedName{Namespace: "shop", Name: controllers.TrustRootsName}, cm); err != nil {
			return err
		}
		return os.WriteFile(roots, []byte(cm.Data[controllers.TrustRootsKey]), 0o600)
	})
	token := func(sa string) string {
		tr, err := cp.kube.CoreV1().ServiceAccounts("shop").CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("requesting a token for %s: %v", sa, err)
		}
		path := filepath.Join(dir, sa+".token")
		if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	webID := identity.SPIFFEID("cluster.local", "shop", "web")
	booksID := identity.SPIFFEID("cluster.local", "shop", "books")

	// The books app, and the books pod's proxy in front of it.
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "books says hello to %s", r.URL.Path)
	})}
	appLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Serve(appLis) }()
	t.Cleanup(func() { _ = app.Close() })

	books := startMeshProxy(t, proxyBin, cp.identityAddr, roots, token("books"), booksID, "")
	// The web pod's proxy: the books ClusterIP 10.96.0.20:80 leads to the books pod.
	cfg := fmt.Sprintf(`outbound:
  originalDstOverride: 10.96.0.20:80
destinations:
- name: books
  addresses: ["10.96.0.20:80"]
  endpoints:
  - {address: 127.0.0.1, port: %d, identity: %q, proxyPort: %d}
`, appLis.Addr().(*net.TCPAddr).Port, booksID, books.inbound)
	web := startMeshProxy(t, proxyBin, cp.identityAddr, roots, token("web"), webID, cfg)

	for _, p := range []*meshProxy{books, web} {
		waitFor(t, 20*time.Second, p.name+" to be ready with a certificate", func() error { return p.ready() })
	}
	for _, p := range []*meshProxy{books, web} {
		exp := p.metric(t, "identity_cert_expiration_timestamp_seconds")
		left := time.Until(time.Unix(int64(exp), 0))
		if left < 23*time.Hour || left > 25*time.Hour {
			t.Errorf("%s: want a 24h leaf from the Mesh default, it expires in %s", p.name, left)
		}
	}

	// The web app calls books through its proxy, which it does not know about.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/shelf", web.outbound))
	if err != nil {
		t.Fatalf("request through the pair: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "books says hello to /shelf" {
		t.Fatalf("want 200 from the books app, got %d %q (proxy error %q)", resp.StatusCode, body, resp.Header.Get("Weft-Proxy-Error"))
	}
	// Each side saw the other's identity, issued by the identity service.
	if got := web.series(t, "request_total", `direction="outbound"`, `server_id="`+booksID+`"`, `tls="true"`); got < 1 {
		t.Errorf("want web's outbound request_total with server_id %s and tls=true; metrics:\n%s", booksID, web.scrape(t))
	}
	if got := books.series(t, "request_total", `direction="inbound"`, `client_id="`+webID+`"`, `tls="true"`); got < 1 {
		t.Errorf("want books' inbound request_total with client_id %s and tls=true; metrics:\n%s", webID, books.scrape(t))
	}

	// A proxy whose token proves "web" but which asks to be "books" gets nothing and
	// never reports ready.
	impostor := startMeshProxy(t, proxyBin, cp.identityAddr, roots, token("web"), booksID, "")
	time.Sleep(3 * time.Second)
	if err := impostor.ready(); err == nil {
		t.Fatal("a proxy asking for an identity its token does not prove became ready")
	}
}

type meshProxy struct {
	name                     string
	inbound, outbound, admin int
}

// startMeshProxy runs weft-proxy in mesh mode on loopback ports and stops it when the
// test ends.
func startMeshProxy(t *testing.T, bin, identityAddr, roots, token, id, config string) *meshProxy {
	t.Helper()
	p := &meshProxy{name: id, inbound: freePort(t), outbound: freePort(t), admin: freePort(t)}
	args := []string{
		"--identity-mode=mesh", "--identity-addr=" + identityAddr, "--identity-name=" + id,
		"--identity-token=" + token, "--identity-roots=" + roots,
		"--identity-server-name=" + identity.ServiceName + "." + controlPlaneNS + ".svc",
		"--listen-addr=127.0.0.1", "--admin-addr=127.0.0.1",
		"--inbound-port=" + strconv.Itoa(p.inbound), "--outbound-port=" + strconv.Itoa(p.outbound),
		"--admin-port=" + strconv.Itoa(p.admin), "--log-format=console",
	}
	if config != "" {
		path := filepath.Join(t.TempDir(), "proxy.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config="+path)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return p
}

func (p *meshProxy) ready() error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", p.admin))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ready answered %d", resp.StatusCode)
	}
	return nil
}

func (p *meshProxy) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// series sums the samples of a metric whose labels contain every given label pair.
func (p *meshProxy) series(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(p.scrape(t)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if !all {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func (p *meshProxy) metric(t *testing.T, name string) float64 { return p.series(t, name) }

func buildProxy(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "weft-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/weft-proxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weft-proxy: %v\n%s", err, out)
	}
	return bin
}

func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
