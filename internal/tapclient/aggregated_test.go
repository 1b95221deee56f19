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

package tapclient_test

import (
	"context"
	"crypto/tls"
	"errors"
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
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
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

// aggregatedEnv is a real kube-apiserver (envtest) configured as a cluster's is for
// aggregated APIs (a front-proxy CA and client certificate), with APIService
// v1alpha1.tap.weft.dev pointing through an ExternalName Service at the tap API
// served on loopback, and a Deployment whose pod's "proxy" is a real tap server.
type aggregatedEnv struct {
	cfg   *rest.Config
	c     client.Client
	proxy *taptest.TapServer
}

func startAggregated(t *testing.T) *aggregatedEnv {
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
	proxy := taptest.StartTapServer(t, issuer, "shop", "web")
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
	t.Cleanup(func() { cancel(); <-done })
	_, lport, _ := net.SplitHostPort(lis.Addr().String())
	listenPort, _ := strconv.Atoi(lport)

	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			},
		},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", Labels: labels, Annotations: map[string]string{meshdefaults.AnnotationInjected: "true"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	// The Service the APIService names resolves to loopback: the aggregator routes an
	// ExternalName Service to its name and the APIService's port.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-tap"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	apisvc := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1alpha1.tap.weft.dev"},
		Spec: apiregistrationv1.APIServiceSpec{
			Group: tap.Group, Version: tap.Version, GroupPriorityMinimum: 1000, VersionPriority: 100,
			Service:  &apiregistrationv1.ServiceReference{Namespace: "weft-system", Name: "weft-tap", Port: ptrTo(int32(listenPort))},
			CABundle: servingCA.PEM(),
		},
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-tap-admin"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{tap.Group}, Resources: []string{"*"}, Verbs: []string{"watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "alice-tap"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}},
		deploy, pod, svc, apisvc, role, binding,
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
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
					return &aggregatedEnv{cfg: cfg, c: c, proxy: proxy}
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

func ptrTo[T any](v T) *T { return &v }

// watch is tapclient.Watch, retried while the aggregator itself answers 503 "service
// unavailable": its availability check of the APIService can time out on a loaded
// machine (2 cores shared by many test processes), which marks the APIService
// unavailable for a moment. The tap API's own 503s carry other messages and are not
// retried.
func watch(t *testing.T, ctx context.Context, cfg *rest.Config, req tapclient.Request, fn func(*api.TapEvent) error) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := tapclient.Watch(ctx, cfg, req, fn)
		if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "APIService v1alpha1.tap.weft.dev is not available") || time.Now().After(deadline) {
			return err
		}
		t.Logf("the aggregator answered %v; retrying", err)
		time.Sleep(500 * time.Millisecond)
	}
}

func as(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	return c
}

// TestThroughTheAPIServer taps through a real kube-apiserver's aggregation layer:
// discovery shows the group, `kubectl auth can-i` (a SelfSubjectAccessReview) answers
// per RoleBinding, a permitted user's tap streams the proxy's events, a user without a
// RoleBinding is refused naming the permission, and a workload that does not exist
// says so.
func TestThroughTheAPIServer(t *testing.T) {
	e := startAggregated(t)
	ctx := context.Background()

	t.Run("discovery through the API server lists deployments/tap", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, err := dc.ServerResourcesForGroupVersion("tap.weft.dev/v1alpha1")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range l.APIResources {
			found = found || (r.Name == "deployments/tap" && len(r.Verbs) == 1 && r.Verbs[0] == "watch")
		}
		if !found {
			t.Errorf("discovery %+v has no deployments/tap [watch]", l.APIResources)
		}
	})

	t.Run("kubectl auth can-i watch deployments.tap.weft.dev/tap answers per RoleBinding", func(t *testing.T) {
		for user, want := range map[string]bool{"alice": true, "bob": false} {
			uc, err := client.New(as(e.cfg, user), client.Options{Scheme: e.c.Scheme()})
			if err != nil {
				t.Fatal(err)
			}
			// What kubectl auth can-i sends.
			ssar := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: "shop", Verb: "watch", Group: tap.Group, Resource: "deployments", Subresource: "tap",
			}}}
			if err := uc.Create(ctx, ssar); err != nil {
				t.Fatal(err)
			}
			if ssar.Status.Allowed != want {
				t.Errorf("can-i for %s = %v, want %v", user, ssar.Status.Allowed, want)
			}
		}
	})

	t.Run("alice's tap streams the proxy's events through the API server", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		got := make(chan *api.TapEvent, 1)
		errc := make(chan error, 1)
		go func() {
			errc <- watch(t, tctx, as(e.cfg, "alice"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "web"},
				func(ev *api.TapEvent) error { got <- ev; return errors.New("enough") })
		}()
		// The proxy sends once the stream is open; until then the event waits in
		// its channel, so the latency measured is from the first send.
		start := time.Now()
		e.proxy.Events <- taptest.RequestEvent(1, "web.shop.svc")
		select {
		case ev := <-got:
			t.Logf("first event through the API server after %v: %v", time.Since(start).Round(time.Millisecond), ev)
			if ev.GetProxy().GetPod() != "web-0" || ev.GetRequestInit().GetAuthority() != "web.shop.svc" {
				t.Errorf("event %v, want web.shop.svc from shop/web-0", ev)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the first event took %v, want under 2s", d)
			}
		case err := <-errc:
			t.Fatalf("Watch ended before an event: %v", err)
		case <-tctx.Done():
			t.Fatal("no event within 20s")
		}
	})

	t.Run("bob has no RoleBinding: refused, naming the permission", func(t *testing.T) {
		err := watch(t, ctx, as(e.cfg, "bob"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "web"},
			func(*api.TapEvent) error { return errors.New("bob got an event") })
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "deployments/tap") {
			t.Fatalf("bob's tap: %v, want Forbidden naming bob and deployments/tap", err)
		}
		t.Logf("bob: %v", err)
	})

	t.Run("a workload that does not exist says so", func(t *testing.T) {
		err := watch(t, ctx, as(e.cfg, "alice"), tapclient.Request{Namespace: "shop", Resource: "deployments", Name: "nope"},
			func(*api.TapEvent) error { return errors.New("got an event") })
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `deployment "nope" does not exist in namespace "shop"`) {
			t.Fatalf("tap of deploy/nope: %v, want NotFound naming it", err)
		}
	})
}
