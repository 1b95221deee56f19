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

package tap

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// handlerEnv is the tap API's handler served over TLS on loopback, against a real API
// server (envtest, RBAC on) that holds namespace shop with Deployment web and its pod,
// whose "proxy" is a real tap server on loopback.
type handlerEnv struct {
	url        string
	frontProxy *tls.Certificate // the kube-apiserver's front-proxy client certificate
	stranger   *tls.Certificate // a certificate from another CA with the same name
	proxy      *taptest.TapServer
}

func startHandlerEnv(t *testing.T) *handlerEnv {
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
	ctx := context.Background()
	issuer := taptest.NewCA(t, "identity issuer")
	proxy := taptest.StartTapServer(t, issuer, "shop", "web")
	_, port, _ := net.SplitHostPort(proxy.Addr)
	tapPort, _ := strconv.Atoi(port)

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
	pod := func(name string, meshed bool) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
			Spec:       corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if meshed {
			p.Annotations = map[string]string{meshdefaults.AnnotationInjected: "true"}
		}
		return p
	}
	lonely := &appsv1.Deployment{}
	deploy.DeepCopyInto(lonely)
	lonely.Name = "unmeshed"
	lonely.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "unmeshed"}}
	lonely.Spec.Template.Labels = map[string]string{"app": "unmeshed"}
	unmeshedPod := pod("unmeshed-0", false)
	unmeshedPod.Labels = map[string]string{"app": "unmeshed"}
	// alice may tap the deployments of shop; bob may do nothing.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tap-deployments"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{Group}, Resources: []string{"deployments/tap"}, Verbs: []string{Verb}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "alice-taps"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		deploy, lonely, pod("web-0", true), unmeshedPod, role, binding,
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// No kubelet: the pods are made running by hand.
	for _, name := range []string{"web-0", "unmeshed-0"} {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, p); err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "127.0.0.1"
		p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
		if err := c.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	front := taptest.NewCA(t, "front-proxy-ca")
	fp := &FrontProxy{
		CA: front.Pool(), AllowedNames: []string{"front-proxy-client"},
		UserHeaders: []string{"X-Remote-User"}, GroupHeaders: []string{"X-Remote-Group"}, ExtraPrefixes: []string{"X-Remote-Extra-"},
	}
	srv := &Server{
		FrontProxy:   func(*http.Request) (*FrontProxy, error) { return fp, nil },
		Reviewer:     c,
		Reader:       c,
		Fanout:       &Fanout{Credentials: taptest.NewCreds(t, issuer), ConnectTimeout: 2 * time.Second, Log: logr.Discard()},
		ProxyTapPort: tapPort,
		Log:          logr.Discard(),
	}
	serving := taptest.NewCA(t, "tap serving").Leaf(t, "weft-tap", "", "localhost")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(sctx, lis, srv, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving, nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &handlerEnv{
		url:        "https://" + lis.Addr().String(),
		frontProxy: front.Leaf(t, "front-proxy-client", ""),
		stranger:   taptest.NewCA(t, "front-proxy-ca").Leaf(t, "front-proxy-client", ""),
		proxy:      proxy,
	}
}

// do sends a request as the kube-apiserver would (with cert, when not nil) for user.
func (e *handlerEnv) do(t *testing.T, ctx context.Context, cert *tls.Certificate, method, path, user, body string) *http.Response {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test checks the server's behaviour, not its name
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-Remote-User", user)
		req.Header.Add("X-Remote-Group", "system:authenticated")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readStatus(t *testing.T, resp *http.Response) metav1.Status {
	t.Helper()
	defer resp.Body.Close()
	var st metav1.Status
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("response %d is not a Status: %v: %s", resp.StatusCode, err, b)
	}
	return st
}

const tapPath = "/apis/tap.weft.dev/v1alpha1/watch/namespaces/shop/"

// TestHandler runs the tap API's handler against a real API server: discovery, the
// front-proxy authentication, SubjectAccessReview decisions for a user with and
// without a RoleBinding, request validation, the not-found errors, and a tap whose
// events come from a real tap server.
func TestHandler(t *testing.T) {
	e := startHandlerEnv(t)
	ctx := context.Background()

	t.Run("discovery lists each resource's tap subresource with verb watch", func(t *testing.T) {
		resp := e.do(t, ctx, e.frontProxy, http.MethodGet, "/apis/tap.weft.dev/v1alpha1", "", "")
		defer resp.Body.Close()
		var l metav1.APIResourceList
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET discovery: %d %v", resp.StatusCode, err)
		}
		found := false
		for _, r := range l.APIResources {
			found = found || (r.Name == "deployments/tap" && r.Namespaced && len(r.Verbs) == 1 && r.Verbs[0] == "watch")
		}
		if l.GroupVersion != "tap.weft.dev/v1alpha1" || !found {
			t.Errorf("APIResourceList = %+v, want tap.weft.dev/v1alpha1 with deployments/tap [watch]", l)
		}
		for _, p := range []string{"/apis", "/apis/tap.weft.dev"} {
			resp := e.do(t, ctx, e.frontProxy, http.MethodGet, p, "", "")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"preferredVersion":{"groupVersion":"tap.weft.dev/v1alpha1"`) {
				t.Errorf("GET %s = %d %s, want the group with its preferred version", p, resp.StatusCode, b)
			}
		}
	})

	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		user     string
		path     string
		body     string
		code     int
		contains []string
	}{
		{name: "no client certificate: 401 whatever the headers say", cert: nil, user: "alice", path: tapPath + "deployments/web/tap",
			code: 401, contains: []string{"only through the kube-apiserver"}},
		{name: "a certificate from another CA: 401", cert: e.stranger, user: "alice", path: tapPath + "deployments/web/tap",
			code: 401, contains: []string{"only through the kube-apiserver"}},
		{name: "no RoleBinding: 403 naming the permission", cert: e.frontProxy, user: "bob", path: tapPath + "deployments/web/tap",
			code: 403, contains: []string{`"bob"`, `verb "watch"`, `"deployments/tap"`, `"tap.weft.dev"`, `"shop"`}},
		{name: "a RoleBinding for deployments does not cover the namespace", cert: e.frontProxy, user: "alice", path: tapPath + "tap",
			code: 403, contains: []string{`"namespaces/tap"`}},
		{name: "a workload that does not exist: 404 with its name", cert: e.frontProxy, user: "alice", path: tapPath + "deployments/nope/tap",
			code: 404, contains: []string{`deployment "nope" does not exist in namespace "shop"`}},
		{name: "a workload without meshed pods: 404 saying why", cert: e.frontProxy, user: "alice", path: tapPath + "deployments/unmeshed/tap",
			code: 404, contains: []string{"no running meshed pod", "1 running pods have no proxy"}},
		{name: "an unknown resource: 400", cert: e.frontProxy, user: "alice", path: tapPath + "secrets/x/tap",
			code: 400, contains: []string{`resource "secrets" cannot be tapped`}},
		{name: "a body that is not an ObserveRequest: 400", cert: e.frontProxy, user: "alice", path: tapPath + "deployments/web/tap",
			body: `{"match":{"bogus":1}}`, code: 400, contains: []string{"not a protojson weft.tap.v1.ObserveRequest"}},
		{name: "a path prefix without a slash: 400", cert: e.frontProxy, user: "alice", path: tapPath + "deployments/web/tap",
			body: `{"match":{"pathPrefix":"api"}}`, code: 400, contains: []string{"must start with /"}},
		{name: "a method that is not a token: 400", cert: e.frontProxy, user: "alice", path: tapPath + "deployments/web/tap",
			body: `{"match":{"method":"GET /"}}`, code: 400, contains: []string{"not an HTTP method"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counted := testutil.ToFloat64(RequestsTotal.WithLabelValues(strconv.Itoa(tc.code)))
			st := readStatus(t, e.do(t, ctx, tc.cert, http.MethodPost, tc.path, tc.user, tc.body))
			if int(st.Code) != tc.code {
				t.Errorf("code %d (%s), want %d", st.Code, st.Message, tc.code)
			}
			if got := testutil.ToFloat64(RequestsTotal.WithLabelValues(strconv.Itoa(tc.code))) - counted; got != 1 {
				t.Errorf("weft_tap_requests_total{code=%q} grew by %v, want 1", strconv.Itoa(tc.code), got)
			}
			for _, s := range tc.contains {
				if !strings.Contains(st.Message, s) {
					t.Errorf("message %q does not say %q", st.Message, s)
				}
			}
		})
	}

	t.Run("alice taps deployment web: the proxy's events arrive as ndjson, tagged with the pod", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		resp := e.do(t, tctx, e.frontProxy, http.MethodPost, tapPath+"deployments/web/tap", "alice", `{"match":{"pathPrefix":"/api"},"maxEventsPerSecond":5000}`)
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ContentType {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("tap = %d %s %s, want 200 %s", resp.StatusCode, resp.Header.Get("Content-Type"), b, ContentType)
		}
		start := time.Now()
		e.proxy.Events <- taptest.RequestEvent(7, "web.shop.svc")
		line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("first event %v after the proxy sent it: %s", time.Since(start).Round(time.Millisecond), line)
		ev := &api.TapEvent{}
		if err := protojson.Unmarshal(line, ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetId() != 7 || ev.GetProxy().GetPod() != "web-0" || ev.GetProxy().GetNamespace() != "shop" || ev.GetRequestInit().GetAuthority() != "web.shop.svc" {
			t.Errorf("event %v, want id 7 from shop/web-0", ev)
		}
		reqs := e.proxy.Requests()
		last := reqs[len(reqs)-1]
		if last.GetMatch().GetPathPrefix() != "/api" || last.GetMaxEventsPerSecond() != MaxEventsPerSecond {
			t.Errorf("the proxy was asked %v, want path prefix /api and the rate capped at %d", last, MaxEventsPerSecond)
		}
	})

	t.Run("the merged stream is bounded in rate and counts what it dropped", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		before := len(e.proxy.Requests())
		resp := e.do(t, tctx, e.frontProxy, http.MethodPost, tapPath+"deployments/web/tap", "alice", `{"maxEventsPerSecond":10}`)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("tap = %d", resp.StatusCode)
		}
		for len(e.proxy.Requests()) == before {
			time.Sleep(10 * time.Millisecond)
		}
		for i := range 500 {
			e.proxy.Events <- taptest.RequestEvent(uint64(i), "web.shop.svc")
		}
		start := time.Now()
		lines := make(chan []byte, 1000)
		go func() {
			r := bufio.NewReader(resp.Body)
			for {
				l, err := r.ReadBytes('\n')
				if err != nil {
					close(lines)
					return
				}
				lines <- l
			}
		}()
		var n int
		var dropped uint64
		window := time.After(1500 * time.Millisecond)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				ev := &api.TapEvent{}
				if err := protojson.Unmarshal(l, ev); err != nil {
					t.Fatal(err)
				}
				n++
				dropped += ev.GetDropped()
			case <-window:
				break read
			}
		}
		elapsed := time.Since(start)
		t.Logf("500 events offered at once, 10/s allowed: %d sent in %v, %d counted as dropped", n, elapsed.Round(time.Millisecond), dropped)
		if limit := 10 + int(10*elapsed.Seconds()) + 1; n > limit || n < 10 {
			t.Errorf("%d events in %v, want between 10 and %d", n, elapsed, limit)
		}
		if dropped == 0 {
			t.Errorf("no event says what was dropped")
		}
	})
}
