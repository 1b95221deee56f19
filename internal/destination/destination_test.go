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

package destination

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

const (
	controlNS  = "weft-system"
	serverName = "weft-destination.weft-system.svc"
)

// The suite shares one API server and one destination service: each test works in
// namespaces of its own.
var suite struct {
	client client.Client
	pki    *desttest.PKI
	addr   string
	server *Server
	// probeAddr serves the manager's /readyz.
	probeAddr string
}

func TestMain(m *testing.M) {
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env, err := testenv.New()
	if err != nil {
		return 0, err
	}
	// A /16: the API server allocates Services without a fixed cluster IP from the
	// upper part of the range, leaving 10.0.0.0/24 to the tests' fixed IPs.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		return 0, fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if suite.client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme}); err != nil {
		return 0, err
	}
	if err := suite.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controlNS}}); err != nil {
		return 0, err
	}
	if suite.pki, err = desttest.NewPKI("cluster.local"); err != nil {
		return 0, err
	}
	if err := suite.pki.Install(ctx, suite.client, controlNS); err != nil {
		return 0, err
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	suite.probeAddr = probe.Addr().String()
	_ = probe.Close()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: suite.probeAddr,
		Logger:                 zap.New(zap.WriteTo(io.Discard)),
		Controller:             ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return 0, err
	}
	addrc := make(chan net.Addr, 1)
	testHookServer = func(s *Server) { suite.server = s }
	if err := AddToManager(mgr, Options{Namespace: controlNS, Addr: "127.0.0.1:0", OnListen: func(a net.Addr) { addrc <- a }}); err != nil {
		return 0, err
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	select {
	case a := <-addrc:
		suite.addr = a.String()
	case err := <-mgrDone:
		return 0, fmt.Errorf("the manager stopped: %w", err)
	case <-time.After(time.Minute):
		return 0, errors.New("the destination service did not listen within a minute")
	}
	// Subscriptions are refused with Unavailable until the informers synced.
	for !suite.server.synced.Load() {
		select {
		case err := <-mgrDone:
			return 0, fmt.Errorf("the manager stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	code := m.Run()
	cancel()
	select {
	case err := <-mgrDone:
		if err != nil {
			return code, fmt.Errorf("the manager stopped with an error: %w", err)
		}
	case <-time.After(15 * time.Second):
		return code, errors.New("the manager did not stop within 15s")
	}
	return code, nil
}

// apply server-side-applies YAML documents.
func apply(t *testing.T, docs string) {
	t.Helper()
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := suite.client.Patch(context.Background(), u, client.Apply, client.FieldOwner("test"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

func remove(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.client.Delete(context.Background(), obj); err != nil {
		t.Fatalf("deleting %s: %v", obj.GetName(), err)
	}
}

// conn dials the service as a proxy of namespace ns (ns "": no client certificate).
func conn(t *testing.T, ns string, opts ...grpc.DialOption) apigrpc.DestinationClient {
	t.Helper()
	var cert *tls.Certificate
	if ns != "" {
		c, err := suite.pki.WorkloadCert(ns, "default")
		if err != nil {
			t.Fatal(err)
		}
		cert = &c
	}
	cc, err := desttest.Dial(suite.addr, suite.pki.ClientTLS(serverName, cert), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return apigrpc.NewDestinationClient(cc)
}

// stream is a subscription read by a goroutine into a channel.
type stream struct {
	msgs   chan *api.DestinationUpdate
	errc   chan error
	cancel context.CancelFunc
	// cfg is the configuration the messages read so far add up to.
	cfg *api.DestinationConfig
}

func subscribe(t *testing.T, c apigrpc.DestinationClient, req *api.GetDestination) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &stream{msgs: make(chan *api.DestinationUpdate, 100), errc: make(chan error, 1), cancel: cancel}
	st, err := c.Get(ctx, req)
	if err != nil {
		s.errc <- err
		return s
	}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				s.errc <- err
				return
			}
			s.msgs <- m
		}
	}()
	return s
}

// next returns the next message, failing unless it arrives within d.
func (s *stream) next(t *testing.T, d time.Duration) *api.DestinationUpdate {
	t.Helper()
	select {
	case m := <-s.msgs:
		s.apply(t, m)
		return m
	case err := <-s.errc:
		t.Fatalf("the stream ended: %v", err)
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
	}
	return nil
}

// drain applies the messages already received.
func (s *stream) drain(t *testing.T) {
	t.Helper()
	for {
		select {
		case m := <-s.msgs:
			s.apply(t, m)
		default:
			return
		}
	}
}

// none fails if a message arrives within d.
func (s *stream) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Fatalf("unexpected message: %v", m)
	case <-time.After(d):
	}
}

func (s *stream) err(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errc:
		return err
	case m := <-s.msgs:
		t.Fatalf("expected an error, got a message: %v", m)
	case <-time.After(10 * time.Second):
		t.Fatal("expected an error, got nothing")
	}
	return nil
}

// apply folds a message into s.cfg as a proxy does.
func (s *stream) apply(t *testing.T, m *api.DestinationUpdate) {
	t.Helper()
	switch k := m.GetKind().(type) {
	case *api.DestinationUpdate_Snapshot:
		s.cfg = k.Snapshot
	case *api.DestinationUpdate_NotFound:
		s.cfg = nil
	case *api.DestinationUpdate_Endpoints:
		if s.cfg == nil {
			t.Fatal("an endpoint delta before any snapshot")
		}
		cfg := proto.CloneOf(s.cfg)
		cfg.Version = k.Endpoints.Version
		i := slices.IndexFunc(cfg.Backends, func(b *api.Backend) bool { return b.Key == k.Endpoints.Backend })
		if i < 0 {
			t.Fatalf("a delta for unknown backend %q", k.Endpoints.Backend)
		}
		b := cfg.Backends[i]
		b.Endpoints = slices.DeleteFunc(b.Endpoints, func(e *api.Endpoint) bool {
			return slices.ContainsFunc(k.Endpoints.Remove, func(r *api.EndpointAddress) bool { return r.Address == e.Address && r.Port == e.Port }) ||
				slices.ContainsFunc(k.Endpoints.Add, func(a *api.Endpoint) bool { return a.Address == e.Address && a.Port == e.Port })
		})
		b.Endpoints = append(b.Endpoints, k.Endpoints.Add...)
		sortEndpointsForTest(b.Endpoints)
		s.cfg = cfg
	}
}

func sortEndpointsForTest(eps []*api.Endpoint) {
	slices.SortFunc(eps, func(a, b *api.Endpoint) int {
		if c := bytes.Compare(net.ParseIP(a.Address).To16(), net.ParseIP(b.Address).To16()); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
}

// checkFresh asserts that what s's messages add up to is exactly what a new
// subscription gets as its snapshot: deltas lose nothing.
func (s *stream) checkFresh(t *testing.T, c apigrpc.DestinationClient, req *api.GetDestination) {
	t.Helper()
	fresh := subscribe(t, c, req)
	defer fresh.cancel()
	m := fresh.next(t, 5*time.Second)
	if diff := cmp.Diff(m.GetSnapshot(), s.cfg, protocmp.Transform()); diff != "" {
		t.Errorf("the streamed configuration differs from a fresh snapshot (-fresh +streamed):\n%s", diff)
	}
}

func addresses(b *api.Backend) []string {
	var out []string
	for _, e := range b.GetEndpoints() {
		out = append(out, fmt.Sprintf("%s:%d", e.Address, e.Port))
	}
	return out
}

func backend(t *testing.T, cfg *api.DestinationConfig, key string) *api.Backend {
	t.Helper()
	for _, b := range cfg.GetBackends() {
		if b.Key == key {
			return b
		}
	}
	t.Fatalf("no backend %q in %v", key, cfg)
	return nil
}

func authority(name, ns string, port int) *api.GetDestination {
	return &api.GetDestination{Target: &api.GetDestination_Authority{Authority: fmt.Sprintf("%s.%s.svc.cluster.local:%d", name, ns, port)}}
}

// within is the time a change must reach a subscriber in.
const within = time.Second

// namespace creates a namespace named after base, new at each call so that tests can
// run again (go test -count) against the same API server.
func namespace(t *testing.T, base string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", base, nsCounter.Add(1))
	apply(t, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name))
	return name
}

var nsCounter, ipCounter atomic.Int32

// clusterIP returns a cluster IP no other Service of the suite has: from the static
// band of the Service range (.1 is the kubernetes Service's).
func clusterIP(t *testing.T) string {
	n := 10 + ipCounter.Add(1)
	if n > 254 {
		t.Fatal("out of cluster IPs")
	}
	return fmt.Sprintf("10.0.0.%d", n)
}

const webYAML = `
apiVersion: v1
kind: Service
metadata: {namespace: %[1]s, name: web}
spec:
  clusterIP: %[2]s
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {namespace: %[1]s, name: web-v2}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: %[1]s, name: web-1}
spec:
  serviceAccountName: web
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  namespace: %[1]s
  name: web-a
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
  zone: z1
  targetRef: {kind: Pod, namespace: %[1]s, name: web-1}
- addresses: [10.1.0.2]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  namespace: %[1]s
  name: web-v2-a
  labels: {kubernetes.io/service-name: web-v2}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.2.0.1]
`

// TestSubscribe follows one destination through the changes that concern it, checking
// each message's content and that it arrives within a second of the API write.
func TestSubscribe(t *testing.T) {
	ns := namespace(t, "sub")
	ip := clusterIP(t)
	apply(t, fmt.Sprintf(webYAML, ns, ip))
	c := conn(t, ns)
	req := authority("web", ns, 80)
	req.ContextNamespace = ns
	s := subscribe(t, c, req)

	snap := s.next(t, 5*time.Second).GetSnapshot()
	if snap == nil {
		t.Fatalf("the first message is not a snapshot: %v", s.cfg)
	}
	if got, want := snap.Service.GetName(), "web"; got != want {
		t.Fatalf("service %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{ip + ":80"}, snap.Addresses); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	web := backend(t, snap, ns+"/web:80")
	if diff := cmp.Diff([]string{"10.1.0.1:8080", "10.1.0.2:8080"}, addresses(web)); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if got, want := web.Endpoints[0].Identity, "spiffe://cluster.local/ns/"+ns+"/sa/web"; got != want {
		t.Errorf("identity of the meshed endpoint %q, want %q", got, want)
	}
	if web.Endpoints[1].Identity != "" || web.Endpoints[0].Zone != "z1" {
		t.Errorf("endpoint identities/zones wrong: %v", web.Endpoints)
	}

	steps := []struct {
		name   string
		change func(t *testing.T)
		check  func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig)
	}{{
		name: "an endpoint is added",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: web-b, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.3]}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			d := m.GetEndpoints()
			if d == nil || len(d.Add) != 1 || d.Add[0].Address != "10.1.0.3" || len(d.Remove) != 0 {
				t.Fatalf("want a delta adding 10.1.0.3, got %v", m)
			}
			if diff := cmp.Diff([]string{"10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"}, addresses(backend(t, cfg, ns+"/web:80"))); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "an endpoint becomes unready",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %[1]s, name: web-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
  zone: z1
  targetRef: {kind: Pod, namespace: %[1]s, name: web-1}
- addresses: [10.1.0.2]
  conditions: {ready: false}
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			d := m.GetEndpoints()
			if d == nil || len(d.Add) != 0 || len(d.Remove) != 1 || d.Remove[0].Address != "10.1.0.2" {
				t.Fatalf("want a delta removing 10.1.0.2, got %v", m)
			}
		},
	}, {
		name:   "an EndpointSlice is deleted",
		change: func(t *testing.T) { remove(t, sliceRef(ns, "web-b")) },
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if diff := cmp.Diff([]string{"10.1.0.1:8080"}, addresses(backend(t, cfg, ns+"/web:80"))); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "a ServiceProfile is created",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: %s, name: web.%[1]s.svc.cluster.local}
spec:
  routes: [{name: get-books, condition: {method: GET, pathRegex: '/books/[^/]*'}, isRetryable: true}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if m.GetSnapshot() == nil || cfg.RouteSource != api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE ||
				len(cfg.Routes) != 1 || cfg.Routes[0].Name != "get-books" || cfg.Routes[0].Retry == nil {
				t.Fatalf("want a snapshot with the retryable route get-books, got %v", m)
			}
		},
	}, {
		name: "the ServiceProfile changes",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: %s, name: web.%[1]s.svc.cluster.local}
spec:
  routes: [{name: list-books, condition: {method: GET, pathRegex: /books}}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if len(cfg.Routes) != 1 || cfg.Routes[0].Name != "list-books" || cfg.Routes[0].Retry != nil {
				t.Fatalf("want the non-retryable route list-books, got %v", cfg.Routes)
			}
		},
	}, {
		name: "an HTTPRoute takes precedence",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: %s, name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: canary
    matches: [{headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: web-v2, port: 80}]
  - backendRefs: [{name: web, port: 80}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if cfg.RouteSource != api.RouteSource_ROUTE_SOURCE_GATEWAY_API || len(cfg.Routes) != 2 || cfg.Fallback != nil {
				t.Fatalf("want two Gateway API routes and no fallback, got %v", cfg)
			}
			r := cfg.Routes[0]
			if r.Name != "web/canary" || len(r.Matches) != 1 || r.Matches[0].Headers[0].GetName() != "x-canary" ||
				r.Backends[0].Backend != ns+"/web-v2:80" {
				t.Errorf("the canary rule compiled to %v", r)
			}
			if diff := cmp.Diff([]string{"10.2.0.1:8080"}, addresses(backend(t, cfg, ns+"/web-v2:80"))); diff != "" {
				t.Errorf("web-v2 endpoints (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "an endpoint of a route's backend Service changes",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: web-v2-a, labels: {kubernetes.io/service-name: web-v2}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.2.0.1]}, {addresses: [10.2.0.2]}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			d := m.GetEndpoints()
			if d == nil || d.Backend != ns+"/web-v2:80" || len(d.Add) != 1 || d.Add[0].Address != "10.2.0.2" {
				t.Fatalf("want a delta adding 10.2.0.2 to web-v2, got %v", m)
			}
		},
	}, {
		name: "the HTTPRoute changes",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: %s, name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: canary
    matches: [{path: {type: PathPrefix, value: /beta}}]
    backendRefs: [{name: web-v2, port: 80, weight: 3}, {name: web, port: 80, weight: 1}]
    timeouts: {request: 2s}
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if len(cfg.Routes) != 1 {
				t.Fatalf("want one route, got %v", cfg.Routes)
			}
			r := cfg.Routes[0]
			if r.Matches[0].GetPath().GetPrefix() != "/beta" || len(r.Backends) != 2 || r.Timeouts.GetRequest().AsDuration() != 2*time.Second {
				t.Fatalf("the changed rule compiled to %v", r)
			}
			weights := map[string]uint32{}
			for _, b := range r.Backends {
				weights[b.Backend] = b.Weight
			}
			if diff := cmp.Diff(map[string]uint32{ns + "/web-v2:80": 3, ns + "/web:80": 1}, weights); diff != "" {
				t.Errorf("weights (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "a GRPCRoute joins the HTTPRoute",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {namespace: %s, name: web-grpc}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: get
    matches: [{method: {service: shop.Books, method: Get}}]
    backendRefs: [{name: web-v2, port: 80}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			var names []string
			for _, r := range cfg.Routes {
				names = append(names, r.Name)
			}
			i := slices.Index(names, "web-grpc/get")
			if i < 0 || len(cfg.Routes) != 2 {
				t.Fatalf("want the HTTPRoute's and the GRPCRoute's rules, got %v", names)
			}
			if g := cfg.Routes[i].Matches[0].GetGrpc(); g.GetService().GetExact() != "shop.Books" || g.GetMethod().GetExact() != "Get" {
				t.Errorf("the gRPC match compiled to %v", g)
			}
		},
	}, {
		name: "the GRPCRoute is deleted",
		change: func(t *testing.T) {
			remove(t, &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-grpc"}})
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if len(cfg.Routes) != 1 || cfg.Routes[0].Name != "web/canary" {
				t.Fatalf("want the HTTPRoute's rule only, got %v", cfg.Routes)
			}
		},
	}, {
		name: "the HTTPRoute is deleted",
		change: func(t *testing.T) {
			remove(t, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if cfg.RouteSource != api.RouteSource_ROUTE_SOURCE_SERVICE_PROFILE || cfg.Routes[0].Name != "list-books" {
				t.Fatalf("want the ServiceProfile's routes back, got %v", cfg)
			}
		},
	}, {
		name: "a TrafficSplit shifts the fallback",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {namespace: %s, name: web}
spec:
  service: web
  backends: [{service: web, weight: 900}, {service: web-v2, weight: 100}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			got := map[string]uint32{}
			for _, b := range cfg.GetFallback().GetBackends() {
				got[b.Backend] = b.Weight
			}
			if diff := cmp.Diff(map[string]uint32{ns + "/web:80": 900, ns + "/web-v2:80": 100}, got); diff != "" {
				t.Fatalf("fallback weights (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "the TrafficSplit changes",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {namespace: %s, name: web}
spec:
  service: web
  backends: [{service: web, weight: 0}, {service: web-v2, weight: 100}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if bs := cfg.GetFallback().GetBackends(); len(bs) != 2 || bs[0].Weight != 0 || bs[1].Weight != 100 {
				t.Fatalf("want weights 0 and 100, got %v", bs)
			}
		},
	}, {
		name: "the TrafficSplit and the ServiceProfile are deleted",
		change: func(t *testing.T) {
			remove(t, splitRef(ns, "web"))
			remove(t, profileRef(ns, "web."+ns+".svc.cluster.local"))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			// Two deletions may arrive as one or two snapshots; wait for the last.
			if cfg.RouteSource != api.RouteSource_ROUTE_SOURCE_DEFAULT || len(cfg.Fallback.GetBackends()) != 1 {
				t.Fatalf("want the default route to web only, got %v", cfg)
			}
		},
	}, {
		name: "a ServiceProfile's dstOverrides send traffic to another Service",
		change: func(t *testing.T) {
			apply(t, fmt.Sprintf(`
apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: %s, name: web.%[1]s.svc.cluster.local}
spec:
  dstOverrides: [{authority: "web-v2.%[1]s.svc.cluster.local:80", weight: 1}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			bs := cfg.GetFallback().GetBackends()
			if len(bs) != 1 || bs[0].Backend != ns+"/web-v2:80" {
				t.Fatalf("want the fallback to go to web-v2, got %v", bs)
			}
			// The override's endpoints, which the destination did not read before.
			if diff := cmp.Diff([]string{"10.2.0.1:8080", "10.2.0.2:8080"}, addresses(backend(t, cfg, ns+"/web-v2:80"))); diff != "" {
				t.Errorf("web-v2 endpoints (-want +got):\n%s", diff)
			}
		},
	}, {
		name:   "the overriding ServiceProfile is deleted",
		change: func(t *testing.T) { remove(t, profileRef(ns, "web."+ns+".svc.cluster.local")) },
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if bs := cfg.GetFallback().GetBackends(); len(bs) != 1 || bs[0].Backend != ns+"/web:80" {
				t.Fatalf("want the fallback back to web, got %v", bs)
			}
		},
	}, {
		name: "a meshed pod's ServiceAccount changes",
		change: func(t *testing.T) {
			remove(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1"}})
			apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {namespace: %s, name: web-1}
spec:
  serviceAccountName: web-new
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
`, ns))
		},
		check: func(t *testing.T, m *api.DestinationUpdate, cfg *api.DestinationConfig) {
			if got := backend(t, cfg, ns+"/web:80").Endpoints[0].Identity; got != "spiffe://cluster.local/ns/"+ns+"/sa/web-new" {
				t.Fatalf("identity %q, want the new ServiceAccount's", got)
			}
		},
	}}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			start := time.Now()
			step.change(t)
			m := s.next(t, within)
			t.Logf("received %T %v after the write", m.GetKind(), time.Since(start).Round(time.Millisecond))
			// A change made of several writes may arrive in several messages; the
			// check holds for the configuration once they have all arrived.
			settle := time.After(200 * time.Millisecond)
		drain:
			for {
				select {
				case more := <-s.msgs:
					s.apply(t, more)
					m = more
				case <-settle:
					break drain
				}
			}
			step.check(t, m, s.cfg)
			s.checkFresh(t, c, req)
		})
	}

	t.Run("nothing is sent when nothing changed for the destination", func(t *testing.T) {
		apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: other-a, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.9.0.1]}]
`, ns))
		s.none(t, 500*time.Millisecond)
	})
}

// TestAddressAndNames: the forms of target that name the same Service port.
func TestAddressAndNames(t *testing.T) {
	ns := namespace(t, "names")
	ip := clusterIP(t)
	apply(t, fmt.Sprintf(webYAML, ns, ip))
	c := conn(t, ns)
	for _, tc := range []struct {
		name string
		req  *api.GetDestination
	}{
		{"cluster IP and port", &api.GetDestination{Target: &api.GetDestination_Address{Address: ip + ":80"}}},
		{"IP authority", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: ip + ":80"}}},
		{"name.ns", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "web." + ns}}},
		{"name.ns.svc:port", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "web." + ns + ".svc:80"}}},
		{"fully qualified with a trailing dot", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "WEB." + ns + ".svc.cluster.local.:80"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := subscribe(t, c, tc.req)
			defer s.cancel()
			snap := s.next(t, 5*time.Second).GetSnapshot()
			if snap.GetService().GetName() != "web" || snap.GetService().GetNamespace() != ns || snap.GetService().GetPort() != 80 {
				t.Fatalf("want a snapshot of %s/web:80, got %v", ns, s.cfg)
			}
		})
	}
	for _, tc := range []struct {
		name string
		req  *api.GetDestination
	}{
		{"an unknown port", &api.GetDestination{Target: &api.GetDestination_Address{Address: ip + ":81"}}},
		{"an unknown IP", &api.GetDestination{Target: &api.GetDestination_Address{Address: "10.96.20.21:80"}}},
		{"an external name", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "example.com:443"}}},
		{"another cluster domain", &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "web." + ns + ".svc.example.org:80"}}},
	} {
		t.Run("not found: "+tc.name, func(t *testing.T) {
			s := subscribe(t, c, tc.req)
			defer s.cancel()
			if m := s.next(t, 5*time.Second); m.GetNotFound() == nil || m.GetNotFound().Reason == "" {
				t.Fatalf("want not_found with a reason, got %v", m)
			}
		})
	}
}

// TestNotFoundThenCreated: a subscription to a Service that does not exist yet gets
// not_found, stays open, and gets the snapshot once the Service appears; and
// not_found again when it is deleted.
func TestNotFoundThenCreated(t *testing.T) {
	ns := namespace(t, "later")
	c := conn(t, ns)
	s := subscribe(t, c, authority("web", ns, 80))
	if m := s.next(t, 5*time.Second); m.GetNotFound() == nil {
		t.Fatalf("want not_found, got %v", m)
	}
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	if s.next(t, within).GetSnapshot() == nil {
		t.Fatalf("want a snapshot once the Service exists, got not_found")
	}
	// The Service and its EndpointSlices are separate writes, which may arrive in
	// separate messages.
	deadline := time.Now().Add(within)
	for len(backend(t, s.cfg, ns+"/web:80").Endpoints) != 2 {
		s.next(t, time.Until(deadline))
	}
	remove(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})
	if m := s.next(t, within); m.GetNotFound() == nil {
		t.Fatalf("want not_found after the Service was deleted, got %v", m)
	}
}

// TestRefused: the errors a subscription can get.
func TestRefused(t *testing.T) {
	ns := namespace(t, "refused")
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	other, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.WorkloadCert(ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	foreignConn, err := desttest.Dial(suite.addr, suite.pki.ClientTLS(serverName, &foreign))
	if err != nil {
		t.Fatal(err)
	}
	defer foreignConn.Close()

	for _, tc := range []struct {
		name string
		c    apigrpc.DestinationClient
		req  *api.GetDestination
		want codes.Code
	}{
		{"no client certificate", conn(t, ""), authority("web", ns, 80), codes.Unauthenticated},
		{"a certificate from another CA", apigrpc.NewDestinationClient(foreignConn), authority("web", ns, 80), codes.Unavailable},
		{"another namespace's context", conn(t, "elsewhere"), &api.GetDestination{
			Target: &api.GetDestination_Authority{Authority: "web." + ns + ":80"}, ContextNamespace: ns}, codes.PermissionDenied},
		{"no target", conn(t, ns), &api.GetDestination{ContextNamespace: ns}, codes.InvalidArgument},
		{"a malformed address", conn(t, ns), &api.GetDestination{Target: &api.GetDestination_Address{Address: "10.0.0.1"}}, codes.InvalidArgument},
		{"a malformed authority port", conn(t, ns), &api.GetDestination{Target: &api.GetDestination_Authority{Authority: "web." + ns + ":http"}}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := subscribe(t, tc.c, tc.req)
			err := s.err(t)
			if status.Code(err) != tc.want {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
	t.Run("another namespace's client with an empty context", func(t *testing.T) {
		s := subscribe(t, conn(t, "elsewhere"), authority("web", ns, 80))
		if s.next(t, 5*time.Second).GetSnapshot() == nil {
			t.Fatalf("want a snapshot, got %v", s.cfg)
		}
	})
}

// TestSlowSubscriberDoesNotDelayOthers: a proxy that never reads its stream (its
// flow-control window fills up and the server's Send blocks) does not delay another
// subscriber of the same destination, and gets the latest version, not a backlog,
// once it reads.
func TestSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	ns := namespace(t, "slow")
	var eps strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&eps, "- addresses: [10.5.%d.%d]\n  zone: zone-with-a-long-name-%d\n", i/250, i%250, i)
	}
	apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {namespace: %[1]s, name: big}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %[1]s, name: big-a, labels: {kubernetes.io/service-name: big}}
addressType: IPv4
ports: [{name: http, port: 80}]
endpoints:
%[2]s`, ns, eps.String()))

	// Fixed windows turn off gRPC's BDP estimation, which would otherwise grow the
	// window and let the server keep sending to the reader that never reads.
	slowConn := conn(t, ns, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := slowConn.Get(ctx, authority("big", ns, 80))
	if err != nil {
		t.Fatal(err)
	}
	fast := subscribe(t, conn(t, ns), authority("big", ns, 80))
	if fast.next(t, 5*time.Second).GetSnapshot() == nil {
		t.Fatal("want a snapshot first")
	}
	// The informers may have seen the Service before its EndpointSlice (a loaded
	// machine): wait for the endpoints, so that every snapshot below carries them.
	for len(fast.cfg.GetBackends()) == 0 || len(fast.cfg.GetBackends()[0].GetEndpoints()) < 1000 {
		fast.next(t, within)
	}
	t.Logf("a snapshot is %d bytes", proto.Size(fast.cfg))

	// Each ServiceProfile version is a new snapshot of the 1,000 endpoints.
	const changes = 12
	for i := range changes {
		start := time.Now()
		apply(t, fmt.Sprintf(`
apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: %s, name: big.%[1]s.svc.cluster.local}
spec:
  routes: [{name: route-%d, condition: {method: GET}}]
`, ns, i))
		m := fast.next(t, within)
		var got string
		if r := fast.cfg.GetRoutes(); len(r) > 0 {
			got = r[0].GetName()
		}
		if want := fmt.Sprintf("route-%d", i); m.GetSnapshot() == nil || got != want {
			t.Fatalf("change %d: want a snapshot with %s, got %s", i, want, got)
		}
		t.Logf("change %d reached the reading subscriber in %v", i, time.Since(start).Round(time.Millisecond))
	}

	// The server is really blocked on the slow stream: its slot holds a version it
	// has not been able to send.
	if !slowHasPending(ns) {
		t.Fatal("the slow subscriber is not behind: the test did not fill its window")
	}

	// Once it reads, it catches up to the latest version without a backlog of every
	// version in between.
	want := fast.cfg.Version
	got := 0
	deadline := time.After(10 * time.Second)
	for {
		m, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got++
		if m.GetSnapshot().GetVersion() == want {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the slow subscriber did not catch up within 10s")
		default:
		}
	}
	if got >= changes+1 {
		t.Errorf("the slow subscriber read %d messages for %d versions: latest-wins should skip some", got, changes+1)
	}
	t.Logf("the slow subscriber caught up in %d messages", got)
}

func slowHasPending(ns string) bool {
	s := suite.server
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if !strings.Contains(k.target, ns+"/big") {
			continue
		}
		for sub := range e.subs {
			if sub.Pending() {
				return true
			}
		}
	}
	return false
}

// TestTrustRootsRotate: the roots are read at each handshake, so a client whose anchor
// left the bundle is refused on its next connection, and a new anchor is accepted
// without a restart.
func TestTrustRootsRotate(t *testing.T) {
	ns := namespace(t, "rotate")
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	next, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	restore := func() {
		if err := suite.client.Update(ctx, withRV(t, suite.pki.TrustRootsConfigMap(controlNS))); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()
	// The bundle now holds only the new anchor. The server keeps its certificate from
	// the old issuer, which clients still trust: only client verification changes.
	if err := suite.client.Update(ctx, withRV(t, next.TrustRootsConfigMap(controlNS))); err != nil {
		t.Fatal(err)
	}
	newCert, err := next.WorkloadCert(ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		oldErr := tryGet(t, suite.pki.ClientTLS(serverName, ptrCert(t, suite.pki, ns)), ns)
		newErr := tryGet(t, suite.pki.ClientTLS(serverName, &newCert), ns)
		if status.Code(oldErr) == codes.Unavailable && newErr == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after rotation: old anchor's client got %v (want Unavailable), new anchor's got %v (want success)", oldErr, newErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryGet(t *testing.T, cfg *tls.Config, ns string) error {
	t.Helper()
	cc, err := desttest.Dial(suite.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := apigrpc.NewDestinationClient(cc).Get(ctx, authority("web", ns, 80))
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

func ptrCert(t *testing.T, p *desttest.PKI, ns string) *tls.Certificate {
	c, err := p.WorkloadCert(ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func withRV(t *testing.T, cm *corev1.ConfigMap) *corev1.ConfigMap {
	t.Helper()
	cur := &corev1.ConfigMap{}
	if err := suite.client.Get(context.Background(), client.ObjectKeyFromObject(cm), cur); err != nil {
		t.Fatal(err)
	}
	cm.ResourceVersion = cur.ResourceVersion
	return cm
}

func sliceRef(ns, name string) client.Object {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func splitRef(ns, name string) client.Object {
	return &splitv1alpha2.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func profileRef(ns, name string) client.Object {
	return &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// TestRouteReferences: a change reaches the destinations it affects through the
// references between objects: consumer routes in the client's namespace, and a
// backend Service that appears after the route naming it.
func TestRouteReferences(t *testing.T) {
	ns, consumer := namespace(t, "refs"), namespace(t, "refs-consumer")
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	producerReq := authority("web", ns, 80)
	producerReq.ContextNamespace = ns
	producer := subscribe(t, conn(t, ns), producerReq)
	consumerReq := authority("web", ns, 80)
	consumerReq.ContextNamespace = consumer
	cons := subscribe(t, conn(t, consumer), consumerReq)
	for _, s := range []*stream{producer, cons} {
		if s.next(t, 5*time.Second).GetSnapshot() == nil {
			t.Fatal("want a snapshot first")
		}
	}

	t.Run("a consumer route applies to its namespace's clients only", func(t *testing.T) {
		apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: %s, name: to-web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, namespace: %s, port: 80}]
  rules:
  - name: all
    backendRefs: [{name: web, namespace: %[2]s, port: 80}]
`, consumer, ns))
		cons.next(t, within)
		if cons.cfg.RouteSource != api.RouteSource_ROUTE_SOURCE_GATEWAY_API || cons.cfg.Routes[0].Name != "to-web/all" {
			t.Fatalf("the consumer's client: want the consumer route, got %v", cons.cfg)
		}
		producer.none(t, 300*time.Millisecond)
	})

	t.Run("a backend Service created after the route that names it", func(t *testing.T) {
		apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: %s, name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: next
    backendRefs: [{name: web-v3, port: 80}]
`, ns))
		producer.next(t, within)
		if b := producer.cfg.GetRoutes()[0].GetBackends(); len(b) != 1 || b[0].Invalid == "" {
			t.Fatalf("want an invalid backend while web-v3 does not exist, got %v", b)
		}
		apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {namespace: %s, name: web-v3}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
`, ns))
		producer.next(t, within)
		if b := producer.cfg.GetRoutes()[0].GetBackends(); len(b) != 1 || b[0].Backend != ns+"/web-v3:80" {
			t.Fatalf("want web-v3 as the backend once it exists, got %v", b)
		}
		// Its endpoints, which the destination did not read before, now count.
		apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: web-v3-a, labels: {kubernetes.io/service-name: web-v3}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.3.0.1]}]
`, ns))
		producer.next(t, within)
		if diff := cmp.Diff([]string{"10.3.0.1:8080"}, addresses(backend(t, producer.cfg, ns+"/web-v3:80"))); diff != "" {
			t.Fatalf("web-v3 endpoints (-want +got):\n%s", diff)
		}
		producer.checkFresh(t, conn(t, ns), producerReq)
	})

	t.Run("a status-only update is not even recompiled", func(t *testing.T) {
		// The route reconcilers write status, which changes no configuration: the
		// generation does not move, and the service skips the event.
		time.Sleep(100 * time.Millisecond)
		before := compilations(t)
		r := &gatewayv1.HTTPRoute{}
		if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, r); err != nil {
			t.Fatal(err)
		}
		r.Status.Parents = []gatewayv1.RouteParentStatus{{
			ParentRef:      gatewayv1.ParentReference{Name: "web"},
			ControllerName: "weft.dev/test",
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted",
				LastTransitionTime: metav1.Now()}},
		}}
		if err := suite.client.Status().Update(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		producer.none(t, 300*time.Millisecond)
		if n := compilations(t) - before; n != 0 {
			t.Errorf("a status write caused %d recompilations", n)
		}
	})

	t.Run("a retry annotation added to the live route reaches its clients", func(t *testing.T) {
		// Metadata only: the generation does not move, yet the compiler reads it.
		r := &gatewayv1.HTTPRoute{}
		if err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, r); err != nil {
			t.Fatal(err)
		}
		gen := r.Generation
		r.Annotations = map[string]string{"retry.weft.dev/http": "gateway-error", "timeout.weft.dev/idle": "30s"}
		if err := suite.client.Update(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if r.Generation != gen {
			t.Fatalf("generation moved %d -> %d: the case tests nothing", gen, r.Generation)
		}
		producer.next(t, within)
		rt := producer.cfg.GetRoutes()[0]
		if rt.GetRetry().GetMaxAttempts() != 2 || len(rt.GetRetry().GetStatuses()) != 1 || rt.GetTimeouts().GetIdle().AsDuration() != 30*time.Second {
			t.Fatalf("want the annotations' retry (gateway-error, 2 attempts) and idle 30s, got retry %v timeouts %v", rt.GetRetry(), rt.GetTimeouts())
		}
	})
}

// compilations is the number of recompilations so far.
func compilations(t *testing.T) uint64 {
	t.Helper()
	m := &dto.Metric{}
	if err := CompileSeconds.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestAddressResolvesLater: a subscription by an IP that is no Service's yet gets
// not_found, then the snapshot once a Service takes that cluster IP; another Service's
// change does not disturb a resolved one.
func TestAddressResolvesLater(t *testing.T) {
	ns := namespace(t, "addr-later")
	c := conn(t, ns)
	ip := clusterIP(t)
	s := subscribe(t, c, &api.GetDestination{Target: &api.GetDestination_Address{Address: ip + ":80"}})
	if m := s.next(t, 5*time.Second); m.GetNotFound() == nil {
		t.Fatalf("want not_found, got %v", m)
	}
	apply(t, fmt.Sprintf(webYAML, ns, ip))
	if s.next(t, within).GetSnapshot().GetService().GetName() != "web" {
		t.Fatalf("want web's snapshot once it has the IP, got %v", s.cfg)
	}
	// Let the EndpointSlices' messages arrive, then change an unrelated Service.
	time.Sleep(300 * time.Millisecond)
	s.drain(t)
	before := compilations(t)
	apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {namespace: %s, name: unrelated}
spec:
  ports: [{name: http, port: 80}]
`, ns))
	s.none(t, 300*time.Millisecond)
	// Nothing subscribed depends on it: not even a compilation.
	if n := compilations(t) - before; n != 0 {
		t.Errorf("an unrelated Service caused %d recompilations", n)
	}
	remove(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})
	if m := s.next(t, within); m.GetNotFound() == nil {
		t.Fatalf("want not_found once the Service is gone, got %v", m)
	}
}

// TestReadyz: the manager's readiness includes the destination service's sync.
func TestReadyz(t *testing.T) {
	resp, err := http.Get("http://" + suite.probeAddr + "/readyz/destination")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/readyz/destination: %s %s", resp.Status, b)
	}
}

// TestAuthorityAndAddressTogether: subscribers of one Service port by name and by
// address share a compilation and get the same versions.
func TestAuthorityAndAddressTogether(t *testing.T) {
	ns := namespace(t, "both")
	ip := clusterIP(t)
	apply(t, fmt.Sprintf(webYAML, ns, ip))
	c := conn(t, ns)
	byName := subscribe(t, c, authority("web", ns, 80))
	byAddr := subscribe(t, c, &api.GetDestination{Target: &api.GetDestination_Address{Address: ip + ":80"}})
	for _, s := range []*stream{byName, byAddr} {
		if s.next(t, 5*time.Second).GetSnapshot() == nil {
			t.Fatal("want a snapshot first")
		}
	}
	time.Sleep(200 * time.Millisecond)
	byName.drain(t)
	byAddr.drain(t)
	if byName.cfg.Version != byAddr.cfg.Version {
		t.Fatalf("versions differ: %s by name, %s by address", byName.cfg.Version, byAddr.cfg.Version)
	}
	apply(t, fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: %s, name: web-b, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.9]}]
`, ns))
	a, b := byName.next(t, within).GetEndpoints(), byAddr.next(t, within).GetEndpoints()
	if a == nil || b == nil || a.Version != b.Version || len(a.Add) != 1 || a.Add[0].Address != "10.1.0.9" {
		t.Fatalf("want the same delta adding 10.1.0.9 on both streams, got %v and %v", a, b)
	}
}

// TestMeshChanges: the Mesh's trust domain and opaque ports reach every subscriber.
func TestMeshChanges(t *testing.T) {
	ns := namespace(t, "mesh")
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	s := subscribe(t, conn(t, ns), authority("web", ns, 80))
	s.next(t, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(backend(t, s.cfg, ns+"/web:80").Endpoints) != 2 {
		s.next(t, time.Until(deadline))
	}
	identity := func() string { return backend(t, s.cfg, ns+"/web:80").Endpoints[0].Identity }
	if got, want := identity(), "spiffe://cluster.local/ns/"+ns+"/sa/web"; got != want {
		t.Fatalf("identity %q, want %q", got, want)
	}

	apply(t, `
apiVersion: mesh.weft.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  trustDomain: example.org
  proxy: {opaquePorts: [80]}
`)
	t.Cleanup(func() {
		remove(t, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}})
		// Later tests expect the default trust domain: wait until it is back.
		deadline := time.Now().Add(5 * time.Second)
		for identity() != "spiffe://cluster.local/ns/"+ns+"/sa/web" {
			s.next(t, time.Until(deadline))
		}
	})
	s.next(t, within)
	if got, want := identity(), "spiffe://example.org/ns/"+ns+"/sa/web"; got != want {
		t.Errorf("identity %q after the Mesh changed the trust domain, want %q", got, want)
	}
	if s.cfg.Protocol != api.ProtocolHint_PROTOCOL_HINT_OPAQUE {
		t.Errorf("protocol %v, want opaque: port 80 is one of the Mesh's opaque ports", s.cfg.Protocol)
	}
}
