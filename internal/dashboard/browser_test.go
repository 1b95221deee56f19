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

package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/dashboard/browsercheck"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/tap/taptest/aggregated"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// fakeProxy serves a proxy's /metrics with the series names and labels the Weft proxy
// writes (proxy/metrics), counters growing with time at rps requests per second.
type fakeProxy struct {
	start    time.Time
	inRPS    float64
	outCalls map[string]float64 // authority -> rps
	routes   map[string]float64 // "authority|route" -> rps
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	el := time.Since(f.start).Seconds()
	var b strings.Builder
	series := func(prefix, labels string, rps float64) {
		n := rps * el
		ok, fail := n*0.98, n*0.02
		fmt.Fprintf(&b, "%srequest_total{%s} %.0f\n", prefix, labels, n)
		fmt.Fprintf(&b, "%sresponse_total{%s,status_code=\"200\",classification=\"success\"} %.0f\n", prefix, labels, ok)
		fmt.Fprintf(&b, "%sresponse_total{%s,status_code=\"500\",classification=\"failure\"} %.0f\n", prefix, labels, fail)
		for _, le := range []string{"1", "5", "10", "50", "+Inf"} {
			frac := map[string]float64{"1": 0.1, "5": 0.6, "10": 0.9, "50": 0.99, "+Inf": 1}[le]
			fmt.Fprintf(&b, "%sresponse_latency_ms_bucket{%s,status_code=\"200\",le=\"%s\"} %.0f\n", prefix, labels, le, n*frac)
		}
	}
	b.WriteString("# TYPE request_total counter\n# TYPE response_total counter\n# TYPE response_latency_ms histogram\n")
	b.WriteString("# TYPE identity_cert_expiration_timestamp_seconds gauge\n")
	fmt.Fprintf(&b, "identity_cert_expiration_timestamp_seconds %d\n", f.start.Add(24*time.Hour).Unix())
	if f.inRPS > 0 {
		series("", `direction="inbound",authority="x",tls="true",client_id="load.weft-demo.serviceaccount.identity.weft.cluster.local"`, f.inRPS)
	}
	for a, r := range f.outCalls {
		series("", `direction="outbound",authority="`+a+`",tls="true",server_id="`+strings.Split(a, ".")[0]+`.weft-demo.serviceaccount.identity.weft.cluster.local"`, r)
	}
	b.WriteString("# TYPE route_request_total counter\n# TYPE route_response_total counter\n# TYPE route_response_latency_ms histogram\n")
	for k, r := range f.routes {
		a, rt, _ := strings.Cut(k, "|")
		series("route_", `direction="outbound",authority="`+a+`",rt_route="`+rt+`"`, r)
	}
	_, _ = w.Write([]byte(b.String()))
}

// TestDashboardInBrowser runs the dashboard against a real API server (envtest) whose
// meshed pods' admin ports answer with proxy metrics and with the tap API aggregated
// into it (web's tap port a real proxy tap server sending the demo's requests), loads
// every page in headless Chromium, checks that live data renders without console
// errors, and writes screenshots to $E2E_RESULTS (else test/e2e/results/dashboard)
// and, with WEFT_DOCS_IMAGES=1, to docs/images.
func TestDashboardInBrowser(t *testing.T) {
	browsercheck.Chromium(t) // skips before the API server starts when there is none
	const ns = "weft-demo"
	tapEnv := aggregated.Start(t, ns, "web")
	cfg := tapEnv.Config
	kube := kubernetes.NewForConfigOrDie(cfg)
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	start := time.Now()
	web := "web.weft-demo.svc.cluster.local:8080"
	backend := "backend.weft-demo.svc.cluster.local:8080"
	grpc := "grpc.weft-demo.svc.cluster.local:8080"
	proxies := map[string]*fakeProxy{
		"load":    {start: start, outCalls: map[string]float64{web: 20}},
		"web":     {start: start, inRPS: 20, outCalls: map[string]float64{backend: 20, grpc: 20}, routes: map[string]float64{backend + "|backend/default": 18, backend + "|backend/canary": 2}},
		"backend": {start: start, inRPS: 20},
		"grpc":    {start: start, inRPS: 20},
	}
	for name, fp := range proxies {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		srv := &http.Server{Handler: fp, ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		port := int32(ln.Addr().(*net.TCPAddr).Port)
		meshedPod(ctx, t, c, ns, name, port)
	}

	// A Mesh whose status says what is wrong, as the controller writes it.
	mesh := &meshv1alpha1.Mesh{}
	must(yaml.Unmarshal(mustRead(t, "config/samples/mesh.yaml"), mesh))
	must(c.Create(ctx, mesh))
	mesh.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "IssuerNotReady",
		Message: "the identity issuer's certificate is not issued yet; see kubectl describe certificate -n weft-system", LastTransitionTime: metav1.Now()}}
	must(c.Status().Update(ctx, mesh))

	col := &Collector{Kube: kube, Interval: time.Second, HTTP: &http.Client{Timeout: 3 * time.Second}}
	go col.Run(ctx)
	tap := &TapStreams{Config: withDashboardRBAC(t, tapEnv)}
	ts := httptest.NewServer((&Server{Collector: col, Client: c, Discovery: kube.Discovery(), ClusterDomain: "cluster.local", APITimeout: 5 * time.Second, Tap: tap}).Handler())
	defer ts.Close()
	go demoTapEvents(ctx, tapEnv.Proxy.Events)

	// Wait for two scrapes, so rates exist, before the browser looks.
	waitFor(ctx, t, func() error {
		var pg struct {
			Rows []Row `json:"rows"`
		}
		if err := getJSON(ts.URL+"/api/workloads?ns="+ns, &pg); err != nil {
			return err
		}
		for _, r := range pg.Rows {
			if r.Name == "deploy/web" && r.Inbound.RPS > 0 {
				return nil
			}
		}
		return fmt.Errorf("no inbound RPS for deploy/web yet: %+v", pg.Rows)
	})

	var routes struct {
		Rows []RouteRow `json:"rows"`
	}
	must(getJSON(ts.URL+"/api/routes?ns="+ns, &routes))
	if len(routes.Rows) != 2 || routes.Rows[0].Route != "backend/canary" || routes.Rows[0].RPS <= 0 {
		t.Errorf("routes of weft-demo = %+v, want backend/canary and backend/default with traffic", routes.Rows)
	}
	var health healthPage
	must(getJSON(ts.URL+"/api/health", &health))
	if len(health.Certs) != 4 || len(health.Objects) != 1 || health.Objects[0].Conditions[0].Reason != "IssuerNotReady" {
		t.Errorf("health = %+v, want 4 certificates and the Mesh's condition", health)
	}
	browsercheck.RunFromSource(ctx, t, ts.URL, ns, "envtest", SourceProxies)
}

// demoTapEvents is what web's proxy would tap of the demo: load calling web (inbound)
// and web calling backend (outbound), 20 requests a second, until ctx is done. What no
// tap reads is dropped, as the proxy drops it.
func demoTapEvents(ctx context.Context, out chan<- *api.TapEvent) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	web := &api.TapPeer{Address: "10.244.0.7:8080", Identity: "spiffe://cluster.local/ns/weft-demo/sa/web",
		Labels: []*api.TapLabel{{Name: "deployment", Value: "web"}, {Name: "pod", Value: "web-1-abcde"}}}
	load := &api.TapPeer{Address: "10.244.0.9:41234", Identity: "spiffe://cluster.local/ns/weft-demo/sa/load"}
	backend := &api.TapPeer{Address: "10.244.0.8:8080", Identity: "spiffe://cluster.local/ns/weft-demo/sa/backend",
		Labels: []*api.TapLabel{{Name: "deployment", Value: "backend"}, {Name: "pod", Value: "backend-1-fghij"}}}
	for id := uint64(1); ; id++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dir, src, dst, auth, path := api.TapDirection_TAP_DIRECTION_INBOUND, load, web, "web.weft-demo.svc.cluster.local:8080", "/"
		if id%2 == 0 {
			dir, src, dst, auth, path = api.TapDirection_TAP_DIRECTION_OUTBOUND, web, backend, "backend.weft-demo.svc.cluster.local:8080", "/api/items"
		}
		status := uint32(200)
		if id%17 == 0 {
			status = 503
		}
		lat := time.Duration(800+id%7*300) * time.Microsecond
		for _, ev := range []*api.TapEvent{
			{Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{Method: "GET", Scheme: "http", Authority: auth, Path: path, Tls: true, Protocol: "HTTP/1.1"}}},
			{Event: &api.TapEvent_ResponseInit{ResponseInit: &api.TapResponseInit{HttpStatus: status, SinceRequestInit: durationpb.New(lat)}}},
			{Event: &api.TapEvent_ResponseEnd{ResponseEnd: &api.TapResponseEnd{SinceRequestInit: durationpb.New(lat + 200*time.Microsecond), ResponseBytes: 512 + id%5*100}}},
		} {
			ev.Id, ev.Direction, ev.Source, ev.Destination, ev.Time = id, dir, src, dst, timestamppb.Now()
			select {
			case out <- ev:
			default:
			}
		}
	}
}

func mustRead(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitFor(ctx context.Context, t *testing.T, f func() error) {
	t.Helper()
	var err error
	for ctx.Err() == nil {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out: %v", err)
}

func ptr[T any](v T) *T { return &v }
