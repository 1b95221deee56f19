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

// Package aggregated stands up the tap API behind a real kube-apiserver's aggregation
// layer for tests: envtest configured as a cluster's API server is for aggregated APIs
// (a front-proxy CA and client certificate), the tap API (internal/tap) served on
// loopback, APIService v1alpha1.tap.weft.dev pointing at it through an ExternalName
// Service, and one real proxy tap server (taptest.TapServer) that every pod's tap port
// reaches. The tap clients' tests (internal/tapclient, internal/dashboard) share it.
package aggregated

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// TapAdminRole is the ClusterRole Start creates, as config/tap/rbac.yaml's.
const TapAdminRole = "weft-tap-admin"

// Env is a running API server with the tap API aggregated into it.
type Env struct {
	// Config is the API server's admin; Client reads and writes with it (client-go's
	// scheme and apiregistration).
	Config *rest.Config
	Client client.Client
	// Proxy answers every pod's tap port (all pods are at 127.0.0.1), with the
	// certificate of the identity Start was given.
	Proxy *taptest.TapServer
}

// Start starts it all and waits until the aggregator marks the APIService Available.
// The proxy's certificate names spiffe://cluster.local/ns/<proxyNS>/sa/<proxySA>: the tap
// API requires it to match the tapped pod's ServiceAccount.
func Start(t testing.TB, proxyNS, proxySA string) *Env {
	t.Helper()
	dir := t.TempDir()
	front := taptest.NewCA(t, "front-proxy-ca")
	fcert, fkey := taptest.KeyPEM(t, front.Leaf(t, "front-proxy-client", ""))
	for name, b := range map[string][]byte{"front-ca.crt": front.PEM(), "front.crt": fcert, "front.key": fkey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Set("requestheader-client-ca-file", filepath.Join(dir, "front-ca.crt"))
	args.Set("requestheader-allowed-names", "front-proxy-client")
	args.Set("requestheader-username-headers", "X-Remote-User")
	args.Set("requestheader-group-headers", "X-Remote-Group")
	args.Set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
	args.Set("proxy-client-cert-file", filepath.Join(dir, "front.crt"))
	args.Set("proxy-client-key-file", filepath.Join(dir, "front.key"))
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	issuer := taptest.NewCA(t, "identity issuer")
	proxy := taptest.StartTapServer(t, issuer, proxyNS, proxySA)
	_, port, _ := net.SplitHostPort(proxy.Addr)
	tapPort, _ := strconv.Atoi(port)

	// The tap API, reading the front-proxy configuration the API server published.
	srv := &tap.Server{
		FrontProxy: func(r *http.Request) (*tap.FrontProxy, error) {
			cm := &corev1.ConfigMap{}
			if err := c.Get(r.Context(), client.ObjectKey{Namespace: tap.AuthConfigMapNamespace, Name: tap.AuthConfigMapName}, cm); err != nil {
				return nil, err
			}
			return tap.ParseFrontProxy(cm)
		},
		Reviewer:     c,
		Reader:       c,
		Fanout:       &tap.Fanout{Credentials: taptest.NewCreds(t, issuer), ConnectTimeout: 2 * time.Second, Log: logr.Discard()},
		ProxyTapPort: tapPort,
		Log:          logr.Discard(),
	}
	servingCA := taptest.NewCA(t, "tap serving CA")
	serving := servingCA.Leaf(t, "weft-tap", "", "weft-tap.weft-system.svc", "localhost")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tap.Serve(sctx, lis, srv, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving, nil })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("the tap API stopped: %v", err)
		}
	})
	_, lport, _ := net.SplitHostPort(lis.Addr().String())
	listenPort, _ := strconv.Atoi(lport)

	// The Service the APIService names resolves to loopback: the aggregator routes an
	// ExternalName Service to its name and the APIService's port.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-tap"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	port32 := int32(listenPort)
	apisvc := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1alpha1.tap.weft.dev"},
		Spec: apiregistrationv1.APIServiceSpec{
			Group: tap.Group, Version: tap.Version, GroupPriorityMinimum: 1000, VersionPriority: 100,
			Service:  &apiregistrationv1.ServiceReference{Namespace: "weft-system", Name: "weft-tap", Port: &port32},
			CABundle: servingCA.PEM(),
		},
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: TapAdminRole},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{tap.Group}, Resources: []string{"*"}, Verbs: []string{"watch"}}},
	}
	for _, o := range []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, svc, apisvc, role} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The aggregator marks the APIService Available once it reached its discovery.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := &apiregistrationv1.APIService{}
		if err := c.Get(ctx, client.ObjectKey{Name: apisvc.Name}, got); err != nil {
			t.Fatal(err)
		}
		var msg string
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiregistrationv1.Available {
				if cond.Status == apiregistrationv1.ConditionTrue {
					return &Env{Config: cfg, Client: c, Proxy: proxy}
				}
				msg = cond.Reason + ": " + cond.Message
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("APIService %s is not Available after 60s: %s", apisvc.Name, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// AddWorkload creates namespace ns (when missing) and Deployment ns/name with one
// running, injected pod <name>-0 at 127.0.0.1 whose ServiceAccount is name.
func (e *Env) AddWorkload(t testing.TB, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			},
		},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-0", Labels: labels, Annotations: map[string]string{meshdefaults.AnnotationInjected: "true"}},
		Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	for _, o := range []client.Object{deploy, pod} {
		if err := e.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	if err := e.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// Bind lets user watch taps in ns (a RoleBinding to TapAdminRole).
func (e *Env) Bind(t testing.TB, ns, user string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-tap"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: TapAdminRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := e.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// As is the admin's config impersonating user (in system:authenticated).
func As(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	return c
}

// AggregatorBlip says whether err is the aggregator's own 503 "service unavailable":
// its availability check of the APIService can time out on a loaded machine (2 cores
// shared by many test processes), which marks the APIService unavailable for a moment.
// The tap API's own 503s carry other messages.
func AggregatorBlip(err error) bool {
	return apierrors.IsServiceUnavailable(err) && strings.Contains(err.Error(), "APIService v1alpha1.tap.weft.dev is not available")
}

// Watch is tapclient.Watch, retried for 30 s while the aggregator blips.
func Watch(t testing.TB, ctx context.Context, cfg *rest.Config, req tapclient.Request, fn func(*api.TapEvent) error) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := tapclient.Watch(ctx, cfg, req, fn)
		if !AggregatorBlip(err) || time.Now().After(deadline) {
			return err
		}
		t.Logf("the aggregator answered %v; retrying", err)
		time.Sleep(500 * time.Millisecond)
	}
}
