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

// Command demo is `make demo-local` (hack/demo.sh --local), the demo without a cluster: it runs Weft's
// control plane on this machine (a real kube-apiserver and etcd, the real cert-manager
// controllers, weft-controller's reconcilers and identity service), applies the
// samples, starts two meshed weft-proxy processes that obtain their identities from the
// identity service, sends them traffic, and prints golden metrics until Ctrl-C.
package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/test/localmesh"
)

func main() {
	ctrl.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "weft-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("Starting kube-apiserver and etcd (built into ~/.cache/weft on first use: ~10 min), cert-manager's controllers and weft-controller")
	cp, err := localmesh.StartControlPlane(context.Background(), logr.Discard())
	if err != nil {
		return err
	}
	defer func() { step("Tearing down"); _ = cp.Stop() }()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc, err := cp.Kubeconfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}

	step("Applying config/samples/mesh.yaml: cert-manager issues the trust anchor and the identity issuer")
	start := time.Now()
	if err := applyFile(ctx, cp, "mesh.yaml"); err != nil {
		return err
	}
	mesh := &meshv1alpha1.Mesh{}
	if err := waitFor(ctx, 60*time.Second, func() error {
		if err := cp.Client.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mesh.Status.Conditions, meshv1alpha1.ConditionReady) {
			return fmt.Errorf("the Mesh is not Ready: %v", mesh.Status.Conditions)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("    Mesh Ready after %s; trust anchor expires %s, identity issuer expires %s\n",
		time.Since(start).Round(time.Millisecond), mesh.Status.TrustAnchor.NotAfter.Format(time.RFC3339), mesh.Status.Issuer.NotAfter.Format(time.RFC3339))

	step("Applying the bookstore: a meshed namespace, its Services, and the ServiceProfile, TrafficSplit and HTTPRoute samples")
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bookstore",
		Labels: map[string]string{"weft.dev/inject": "enabled"}, Annotations: map[string]string{"weft.dev/inject": "enabled"}}}); err != nil {
		return err
	}
	for _, name := range []string{"books", "books-v1", "books-v2"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if err := cp.Client.Create(ctx, svc); err != nil {
			return err
		}
	}
	for _, sa := range []string{"web", "books"} {
		if err := cp.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: sa}}); err != nil {
			return err
		}
	}
	for _, f := range []string{"serviceprofile.yaml", "trafficsplit.yaml", "httproute.yaml"} {
		if err := applyFile(ctx, cp, f); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Second) // let the reconcilers write status before we show it
	kubectl(kubeconfig, "get", "weft", "-A")
	kubectl(kubeconfig, "get", "httproutes", "-n", "bookstore", "-o", "custom-columns=NAME:.metadata.name,ACCEPTED:.status.parents[0].conditions[?(@.type=='Accepted')].status,RESOLVED:.status.parents[0].conditions[?(@.type=='ResolvedRefs')].status")

	step("Starting the books app with its proxy, and the web pod's proxy; each gets a certificate from the identity service")
	roots := filepath.Join(dir, "ca-bundle.pem")
	if err := waitFor(ctx, 10*time.Second, func() error {
		cm := &corev1.ConfigMap{}
		if err := cp.Client.Get(ctx, types.NamespacedName{Namespace: "bookstore", Name: controllers.TrustRootsName}, cm); err != nil {
			return err
		}
		return os.WriteFile(roots, []byte(cm.Data[controllers.TrustRootsKey]), 0o600)
	}); err != nil {
		return err
	}
	bin, err := localmesh.BuildProxy(dir)
	if err != nil {
		return err
	}
	appAddr, err := startBooksApp(ctx)
	if err != nil {
		return err
	}
	booksID := identity.SPIFFEID(mesh.Spec.TrustDomain, "bookstore", "books")
	webID := identity.SPIFFEID(mesh.Spec.TrustDomain, "bookstore", "web")
	proxyLog, err := os.Create(filepath.Join(dir, "proxies.log"))
	if err != nil {
		return err
	}
	defer proxyLog.Close()
	proxy := func(sa, id, config string) (*localmesh.Proxy, error) {
		token, err := cp.Token(ctx, dir, "bookstore", sa)
		if err != nil {
			return nil, err
		}
		return localmesh.StartProxy(localmesh.ProxyOptions{Binary: bin, IdentityAddr: cp.IdentityAddr, Roots: roots,
			Token: token, ID: id, Config: config, Dir: dir, Output: proxyLog})
	}
	books, err := proxy("books", booksID, "")
	if err != nil {
		return err
	}
	defer books.Stop()
	web, err := proxy("web", webID, fmt.Sprintf(`outbound:
  originalDstOverride: 10.96.0.20:80
destinations:
- name: books
  addresses: ["10.96.0.20:80"]
  authorities: ["books.bookstore.svc.cluster.local:80"]
  endpoints:
  - {address: 127.0.0.1, port: %d, identity: %q, proxyPort: %d}
`, appAddr.Port, booksID, books.Inbound))
	if err != nil {
		return err
	}
	defer web.Stop()
	for _, p := range []*localmesh.Proxy{books, web} {
		if err := waitFor(ctx, 30*time.Second, p.Ready); err != nil {
			return fmt.Errorf("proxy %s: %w", p.ID, err)
		}
		text, _ := p.Metrics()
		exp := time.Unix(int64(localmesh.Sum(text, "identity_cert_expiration_timestamp_seconds")), 0)
		fmt.Printf("    %-45s ready, certificate valid until %s\n", p.ID, exp.Format(time.RFC3339))
	}

	step("Sending 50 requests per second from web to books through the proxy pair (mTLS between them)")
	go load(ctx, web.Outbound, 50)
	fmt.Printf("    Inspect the control plane meanwhile: export KUBECONFIG=%s; kubectl get weft -A\n", kubeconfig)
	fmt.Printf("    Routing configuration (ServiceProfile, HTTPRoute, TrafficSplit) reaches proxies with the\n")
	fmt.Printf("    destination service, which comes with a later issue; these proxies use static configuration.\n")
	fmt.Println("    Ctrl-C stops the demo.")
	// DEMO_DURATION bounds the metrics view (for unattended runs); default: until Ctrl-C.
	if d, err := time.ParseDuration(os.Getenv("DEMO_DURATION")); err == nil && d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return stat(ctx, map[string]*localmesh.Proxy{"web": web, "books": books})
}

// applyFile creates the objects of one file of config/samples.
func applyFile(ctx context.Context, cp *localmesh.ControlPlane, name string) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", name))
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := cp.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("applying %s: %w", name, err)
		}
		fmt.Printf("    %s/%s created\n", strings.ToLower(obj.GetKind()), obj.GetName())
	}
	return nil
}

// startBooksApp serves the books app: 1-5 ms per request, 1 in 50 answers 500.
func startBooksApp(ctx context.Context) (*net.TCPAddr, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond + rand.N(4*time.Millisecond))
		if rand.IntN(50) == 0 {
			http.Error(w, "out of stock", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, `{"title": "A Wizard of Earthsea"}`)
	})}
	go func() { _ = srv.Serve(lis) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return lis.Addr().(*net.TCPAddr), nil
}

// load sends rps requests per second to the web pod's outbound proxy port.
func load(ctx context.Context, port, rps int) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			go func() {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/books/1", port))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
	}
}

// stat prints golden metrics of each proxy every two seconds: the request rate and
// success rate over the last interval, latency percentiles since start, and the share
// of requests that were mTLS.
func stat(ctx context.Context, proxies map[string]*localmesh.Proxy) error {
	type sample struct{ requests, successes float64 }
	last := map[string]sample{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		fmt.Printf("\n%s\n%-8s %-9s %8s %8s %8s %8s %8s %6s\n", time.Now().Format("15:04:05"),
			"POD", "DIRECTION", "RPS", "SUCCESS", "P50", "P95", "P99", "MTLS")
		for _, name := range []string{"web", "books"} {
			text, err := proxies[name].Metrics()
			if err != nil {
				return err
			}
			dir := `direction="outbound"`
			if name == "books" {
				dir = `direction="inbound"`
			}
			now := sample{
				requests:  localmesh.Sum(text, "response_total", dir),
				successes: localmesh.Sum(text, "response_total", dir, `classification="success"`),
			}
			prev := last[name]
			last[name] = now
			reqs := now.requests - prev.requests
			success := math.NaN()
			if reqs > 0 {
				success = 100 * (now.successes - prev.successes) / reqs
			}
			mtls := 100 * localmesh.Sum(text, "request_total", dir, `tls="true"`) / math.Max(1, localmesh.Sum(text, "request_total", dir))
			fmt.Printf("%-8s %-9s %8.1f %7.1f%% %6.1fms %6.1fms %6.1fms %5.0f%%\n", name, strings.Split(dir, `"`)[1],
				reqs/2, success, localmesh.Quantile(text, "response_latency_ms", 0.5, dir),
				localmesh.Quantile(text, "response_latency_ms", 0.95, dir), localmesh.Quantile(text, "response_latency_ms", 0.99, dir), mtls)
		}
	}
}

func kubectl(kubeconfig string, args ...string) {
	fmt.Printf("    $ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Printf("    (kubectl: %v)\n", err)
	}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + line)
	}
}

func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
