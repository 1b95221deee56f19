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
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/test/localmesh"
)

func startControlPlane(t *testing.T) *localmesh.ControlPlane {
	t.Helper()
	cp, err := localmesh.StartControlPlane(context.Background(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cp
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
	proxyBin, err := localmesh.BuildProxy(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{"weft.dev/inject": "enabled"}}}
	if err := cp.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "books"} {
		if err := cp.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: sa}}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := cp.Client.Create(ctx, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the Mesh to be Ready", func() error {
		m := &meshv1alpha1.Mesh{}
		if err := cp.Client.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, m); err != nil {
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
		if err := cp.Client.Get(ctx, types.NamespacedName{Namespace: "shop", Name: controllers.TrustRootsName}, cm); err != nil {
			return err
		}
		return os.WriteFile(roots, []byte(cm.Data[controllers.TrustRootsKey]), 0o600)
	})
	token := func(sa string) string {
		path, err := cp.Token(ctx, dir, "shop", sa)
		if err != nil {
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

	books := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: cp.IdentityAddr, Roots: roots, Token: token("books"), ID: booksID})
	// The web pod's proxy: the books ClusterIP 10.96.0.20:80 leads to the books pod.
	cfg := fmt.Sprintf(`outbound:
  originalDstOverride: 10.96.0.20:80
destinations:
- name: books
  addresses: ["10.96.0.20:80"]
  endpoints:
  - {address: 127.0.0.1, port: %d, identity: %q, proxyPort: %d}
`, appLis.Addr().(*net.TCPAddr).Port, booksID, books.Inbound)
	web := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: cp.IdentityAddr, Roots: roots, Token: token("web"), ID: webID, Config: cfg})

	for _, p := range []*localmesh.Proxy{books, web} {
		waitFor(t, 20*time.Second, p.ID+" to be ready with a certificate", p.Ready)
	}
	for _, p := range []*localmesh.Proxy{books, web} {
		exp := localmesh.Sum(scrape(t, p), "identity_cert_expiration_timestamp_seconds")
		left := time.Until(time.Unix(int64(exp), 0))
		if left < 23*time.Hour || left > 25*time.Hour {
			t.Errorf("%s: want a 24h leaf from the Mesh default, it expires in %s", p.ID, left)
		}
	}

	// The web app calls books through its proxy, which it does not know about.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/shelf", web.Outbound))
	if err != nil {
		t.Fatalf("request through the pair: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "books says hello to /shelf" {
		t.Fatalf("want 200 from the books app, got %d %q (proxy error %q)", resp.StatusCode, body, resp.Header.Get("Weft-Proxy-Error"))
	}
	// Each side saw the other's identity, issued by the identity service.
	if text := scrape(t, web); localmesh.Sum(text, "request_total", `direction="outbound"`, `server_id="`+booksID+`"`, `tls="true"`) < 1 {
		t.Errorf("want web's outbound request_total with server_id %s and tls=true; metrics:\n%s", booksID, text)
	}
	if text := scrape(t, books); localmesh.Sum(text, "request_total", `direction="inbound"`, `client_id="`+webID+`"`, `tls="true"`) < 1 {
		t.Errorf("want books' inbound request_total with client_id %s and tls=true; metrics:\n%s", webID, text)
	}

	// A proxy whose token proves "web" but which asks to be "books" gets nothing and
	// never reports ready.
	impostor := startProxy(t, localmesh.ProxyOptions{Binary: proxyBin, IdentityAddr: cp.IdentityAddr, Roots: roots, Token: token("web"), ID: booksID})
	time.Sleep(3 * time.Second)
	if err := impostor.Ready(); err == nil {
		t.Fatal("a proxy asking for an identity its token does not prove became ready")
	}
}

func startProxy(t *testing.T, opts localmesh.ProxyOptions) *localmesh.Proxy {
	t.Helper()
	opts.Dir, opts.Output = t.TempDir(), t.Output()
	p, err := localmesh.StartProxy(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func scrape(t *testing.T, p *localmesh.Proxy) string {
	t.Helper()
	text, err := p.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return text
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
