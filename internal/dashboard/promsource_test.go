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
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/metrics"
)

const prometheusBin = "/usr/bin/prometheus"

// requirePrometheus returns Debian's Prometheus, skipping the test without it except
// under CI, which installs it.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(prometheusBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v; CI must install it (apt-get install prometheus)", prometheusBin, err)
		}
		t.Skipf("%s not installed (apt-get install prometheus); the Prometheus source is not tested", prometheusBin)
	}
	return prometheusBin
}

// demoTraffic drives real proxy metric registries (proxy/metrics, what a weft-proxy
// serves on its admin port) as the demo's pods would count a steady load of 200
// requests per second: load calls web, web calls api on two routes (three gets to a
// post). The count follows the clock, not the ticks (a ticker on a busy machine drops
// ticks), so every window of either source sees the same rate; every 20th web response
// is a 500, and the latencies spread over 1-250 ms so that no quantile's rank sits on a
// bucket bound, where a one-request difference between two windows would move the
// estimate across a bucket.
func demoTraffic(ctx context.Context, load, web, api *metrics.Registry) {
	const (
		rps     = 200
		webAuth = "web.weft-demo.svc.cluster.local:8080"
		apiAuth = "api.weft-demo.svc.cluster.local:8080"
		loadID  = "spiffe://cluster.local/ns/weft-demo/sa/load"
		webID   = "spiffe://cluster.local/ns/weft-demo/sa/web"
		apiID   = "spiffe://cluster.local/ns/weft-demo/sa/api"
	)
	loadOut := load.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: webAuth, PeerID: webID})
	webIn := web.HTTP(metrics.HTTPKey{Dir: metrics.Inbound, Authority: webAuth, PeerID: loadID})
	webOut := web.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: apiAuth, PeerID: apiID})
	apiIn := api.HTTP(metrics.HTTPKey{Dir: metrics.Inbound, Authority: apiAuth, PeerID: webID})
	routes := []*metrics.RouteSeries{
		web.Route(metrics.RouteKey{Dir: metrics.Outbound, Authority: apiAuth, Route: "api/get"}),
		web.Route(metrics.RouteKey{Dir: metrics.Outbound, Authority: apiAuth, Route: "api/post"}),
	}
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for due := int(time.Since(start).Seconds() * rps); i < due; i++ {
			k := i % 100
			lat := time.Duration(1000+k*k*25) * time.Microsecond // 1 ms to 246 ms
			status := 200
			if i%20 == 0 {
				status = 500
			}
			for _, s := range []*metrics.HTTPSeries{loadOut, webIn} {
				s.Request()
				s.Response(status, status >= 500, lat)
			}
			for _, s := range []*metrics.HTTPSeries{webOut, apiIn} {
				s.Request()
				s.Response(200, false, lat/2)
			}
			rt := routes[i%4/3]
			rt.Request()
			rt.Response(200, false, lat/2)
		}
	}
}

// meshedPods creates, in a real API server, a Deployment with one running meshed pod
// per name whose proxy admin port is that name's listener on 127.0.0.1.
func meshedPods(ctx context.Context, t *testing.T, c client.Client, ns string, ports map[string]int32) {
	t.Helper()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for name, port := range ports {
		meshedPod(ctx, t, c, ns, name, port)
	}
}

// meshedPod creates a Deployment name, its ReplicaSet and one running pod whose
// ServiceAccount is name and whose proxy admin port is port on 127.0.0.1.
func meshedPod(ctx context.Context, t *testing.T, c client.Client, ns, name string, port int32) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "x"}}}},
	}}
	must(c.Create(ctx, d))
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: d.UID, Controller: ptr(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template}}
	must(c.Create(ctx, rs))
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-1-abcde", Namespace: ns, Labels: labels, OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr(true)}}},
		Spec: corev1.PodSpec{
			ServiceAccountName: name,
			InitContainers:     []corev1.Container{{Name: inject.ProxyContainerName, Image: "weft-proxy", Ports: []corev1.ContainerPort{{Name: "weft-admin", ContainerPort: port}}}},
			Containers:         []corev1.Container{{Name: name, Image: "x"}},
		}}
	must(c.Create(ctx, p))
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}
	must(c.Status().Update(ctx, p))
}

// startPrometheus runs Debian's Prometheus scraping targets (pod name -> host:port) of
// namespace ns every second, labelled as config/prometheus' weft-proxy job labels them,
// and returns its URL once it is ready.
func startPrometheus(ctx context.Context, t *testing.T, bin, ns string, targets map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: weft-proxy\n  static_configs:\n")
	for pod, addr := range targets {
		fmt.Fprintf(&cfg, "  - targets: [%q]\n    labels: {namespace: %q, pod: %q}\n", addr, ns, pod)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	pctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	waitFor(ctx, t, func() error {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("prometheus /-/ready: %s", resp.Status)
		}
		return nil
	})
	return url
}

// within reports whether got is within frac of want (both nil counts as equal).
func within(got, want *float64, frac float64) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	return math.Abs(*got-*want) <= frac*math.Abs(*want)+1e-9
}

func fmtp(v *float64) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%.3f", *v)
}

// compareGolden reports where Prometheus' figures differ from the proxies' for the same
// traffic by more than the tolerances: RPS 10%, success rate and mTLS share 0.02,
// quantiles 15% (both interpolate in the same buckets).
func compareGolden(t *testing.T, what string, prom, prox Golden) {
	t.Helper()
	ok := within(&prom.RPS, &prox.RPS, 0.10) && prom.RPS > 0
	diff := func(a, b *float64) bool {
		return (a == nil) != (b == nil) || (a != nil && math.Abs(*a-*b) > 0.02)
	}
	if diff(prom.SuccessRate, prox.SuccessRate) || diff(prom.MTLSShare, prox.MTLSShare) {
		ok = false
	}
	for _, q := range [][2]*float64{{prom.P50Ms, prox.P50Ms}, {prom.P95Ms, prox.P95Ms}, {prom.P99Ms, prox.P99Ms}} {
		ok = ok && within(q[0], q[1], 0.15)
	}
	if !ok {
		t.Errorf("%s: prometheus rps %.2f success %s mtls %s p50 %s p95 %s p99 %s; proxies rps %.2f success %s mtls %s p50 %s p95 %s p99 %s", what,
			prom.RPS, fmtp(prom.SuccessRate), fmtp(prom.MTLSShare), fmtp(prom.P50Ms), fmtp(prom.P95Ms), fmtp(prom.P99Ms),
			prox.RPS, fmtp(prox.SuccessRate), fmtp(prox.MTLSShare), fmtp(prox.P50Ms), fmtp(prox.P95Ms), fmtp(prox.P99Ms))
	} else {
		t.Logf("%s: prometheus rps %.2f p95 %s, proxies rps %.2f p95 %s", what, prom.RPS, fmtp(prom.P95Ms), prox.RPS, fmtp(prox.P95Ms))
	}
}

// TestPrometheusSourceMatchesProxies runs Debian's real Prometheus scraping real proxy
// metric registries (proxy/metrics) under a steady load, and requires every page's rows
// from Prometheus (rate over 15 s) to match the rows the dashboard computes from its own
// scrapes of the same proxies (over 3 s). Then Prometheus stops, and the pages say so
// and show the proxies' data.
func TestPrometheusSourceMatchesProxies(t *testing.T) {
	bin := requirePrometheus(t)
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kube := kubernetes.NewForConfigOrDie(cfg)
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	const ns = "weft-demo"
	regs := map[string]*metrics.Registry{"load": metrics.New(), "web": metrics.New(), "api": metrics.New()}
	ports, targets := map[string]int32{}, map[string]string{}
	for name, reg := range regs {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _ = reg.WriteText(w) }))
		t.Cleanup(srv.Close)
		addr := srv.Listener.Addr().(*net.TCPAddr)
		ports[name] = int32(addr.Port)
		targets[name+"-1-abcde"] = addr.String()
	}
	meshedPods(ctx, t, c, ns, ports)
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	go demoTraffic(tctx, regs["load"], regs["web"], regs["api"])
	promURL := startPrometheus(ctx, t, bin, ns, targets)

	col := &Collector{Kube: kube, Interval: 3 * time.Second, HTTP: &http.Client{Timeout: 3 * time.Second}}
	go col.Run(ctx)
	prom, err := NewPromSource(promURL)
	if err != nil {
		t.Fatal(err)
	}
	prom.Window, prom.CacheFor = 15*time.Second, time.Second
	ts := httptest.NewServer((&Server{Collector: col, Client: c, Discovery: kube.Discovery(), ClusterDomain: "cluster.local", APITimeout: 5 * time.Second, Prometheus: prom}).Handler())
	defer ts.Close()

	// Wait until Prometheus' rate window is full of scrapes: rate() divides the increase
	// it saw by the whole window, so a window that began before Prometheus' first scrape
	// (its discovery hands over targets only after some seconds) reads low.
	waitFor(ctx, t, func() error {
		v, _, err := prom.api.Query(ctx, `min(count_over_time(up{job="weft-proxy"}[16s])) >= 16`, time.Now())
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) == 0 {
			return fmt.Errorf("the 15s rate window is not full of scrapes yet")
		}
		var pg struct {
			Source string `json:"source"`
			Error  string `json:"error"`
			Rows   []Row  `json:"rows"`
		}
		if err := getJSON(ts.URL+"/api/workloads?ns="+ns, &pg); err != nil {
			return err
		}
		if pg.Source != SourcePrometheus {
			return fmt.Errorf("source %q, error %q", pg.Source, pg.Error)
		}
		for _, r := range pg.Rows {
			if r.Name == "deploy/web" && r.Inbound.RPS > 0 && r.Inbound.P99Ms != nil {
				return nil
			}
		}
		return fmt.Errorf("no inbound traffic of deploy/web from prometheus yet: %+v", pg.Rows)
	})

	type pageOf[R any] struct {
		Source        string  `json:"source"`
		Error         string  `json:"error"`
		WindowSeconds float64 `json:"windowSeconds"`
		Rows          []R     `json:"rows"`
	}
	get := func(path string, v any) {
		t.Helper()
		if err := getJSON(ts.URL+path, v); err != nil {
			t.Fatal(err)
		}
	}
	var promW, proxW pageOf[Row]
	get("/api/workloads?ns="+ns, &promW)
	get("/api/workloads?ns="+ns+"&source=proxies", &proxW)
	var promN, proxN pageOf[Row]
	get("/api/namespaces", &promN)
	get("/api/namespaces?source=proxies", &proxN)
	var promE, proxE pageOf[Edge]
	get("/api/edges?ns="+ns, &promE)
	get("/api/edges?ns="+ns+"&source=proxies", &proxE)
	var promR, proxR pageOf[RouteRow]
	get("/api/routes?ns="+ns, &promR)
	get("/api/routes?ns="+ns+"&source=proxies", &proxR)

	for _, p := range []struct {
		name, src, err string
		window         float64
	}{
		{"workloads", promW.Source, promW.Error, promW.WindowSeconds}, {"namespaces", promN.Source, promN.Error, promN.WindowSeconds},
		{"edges", promE.Source, promE.Error, promE.WindowSeconds}, {"routes", promR.Source, promR.Error, promR.WindowSeconds},
	} {
		if p.src != SourcePrometheus || p.err != "" || p.window != 15 {
			t.Errorf("%s page: source %q error %q window %vs, want prometheus over 15s without error", p.name, p.src, p.err, p.window)
		}
	}
	if proxW.Source != SourceProxies || proxE.Source != SourceProxies {
		t.Errorf("?source=proxies answered from %q, %q", proxW.Source, proxE.Source)
	}

	rowsByName := func(rows []Row) map[string]Row {
		m := map[string]Row{}
		for _, r := range rows {
			m[r.Namespace+"/"+r.Name] = r
		}
		return m
	}
	pw, xw := rowsByName(promW.Rows), rowsByName(proxW.Rows)
	for _, w := range []string{"deploy/load", "deploy/web", "deploy/api"} {
		p, x := pw[ns+"/"+w], xw[ns+"/"+w]
		if p.Meshed != 1 || p.Pods != 1 {
			t.Errorf("%s from prometheus: %d of %d pods meshed, want 1 of 1 (the API server's count)", w, p.Meshed, p.Pods)
		}
		if w != "deploy/load" {
			compareGolden(t, w+" inbound", p.Inbound, x.Inbound)
		}
		if w != "deploy/api" {
			compareGolden(t, w+" outbound", p.Outbound, x.Outbound)
		}
	}
	// The quantiles estimated from the summed bucket rates are histogram_quantile's.
	for q, got := range map[float64]*float64{0.5: pw[ns+"/deploy/web"].Inbound.P50Ms, 0.95: pw[ns+"/deploy/web"].Inbound.P95Ms, 0.99: pw[ns+"/deploy/web"].Inbound.P99Ms} {
		expr := fmt.Sprintf(`histogram_quantile(%v, sum by (le) (rate(response_latency_ms_bucket{job="weft-proxy", namespace=%q, pod="web-1-abcde", direction="inbound"}[15s])))`, q, ns)
		v, _, err := prom.api.Query(ctx, expr, time.Now())
		vec, ok := v.(model.Vector)
		if err != nil || !ok || len(vec) != 1 {
			t.Errorf("%s: %v %v", expr, v, err)
			continue
		}
		want := float64(vec[0].Value)
		if !within(got, &want, 0.02) {
			t.Errorf("deploy/web inbound p%v = %s, Prometheus' histogram_quantile says %.3f", q*100, fmtp(got), want)
		}
	}
	compareGolden(t, "namespace "+ns, rowsByName(promN.Rows)["/"+ns].Inbound, rowsByName(proxN.Rows)["/"+ns].Inbound)

	if len(promE.Rows) != 2 || len(proxE.Rows) != 2 {
		t.Fatalf("edges: prometheus %+v, proxies %+v; want load->web and web->api", promE.Rows, proxE.Rows)
	}
	for i := range promE.Rows {
		p, x := promE.Rows[i], proxE.Rows[i]
		if p.From != x.From || p.To != x.To || p.ServerID != x.ServerID {
			t.Errorf("edge %d: prometheus %s -> %s (%s), proxies %s -> %s (%s)", i, p.From, p.To, p.ServerID, x.From, x.To, x.ServerID)
		}
		compareGolden(t, "edge "+p.From+" -> "+p.To, p.Golden, x.Golden)
	}
	if len(promR.Rows) != 2 || len(proxR.Rows) != 2 {
		t.Fatalf("routes: prometheus %+v, proxies %+v; want api/get and api/post", promR.Rows, proxR.Rows)
	}
	for i := range promR.Rows {
		p, x := promR.Rows[i], proxR.Rows[i]
		if p.Route != x.Route || p.Service != x.Service {
			t.Errorf("route %d: prometheus %s %s, proxies %s %s", i, p.Service, p.Route, x.Service, x.Route)
		}
		compareGolden(t, "route "+p.Route, p.Golden, x.Golden)
	}

	// Prometheus goes away: the pages fall back to the proxies and say so.
	dead, err := NewPromSource("http://" + closedAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	fallback := httptest.NewServer((&Server{Collector: col, Client: c, Discovery: kube.Discovery(), ClusterDomain: "cluster.local", APITimeout: 5 * time.Second, Prometheus: dead}).Handler())
	defer fallback.Close()
	var fb pageOf[Row]
	if err := getJSON(fallback.URL+"/api/workloads?ns="+ns, &fb); err != nil {
		t.Fatal(err)
	}
	web := rowsByName(fb.Rows)[ns+"/deploy/web"]
	if fb.Source != SourceProxies || !strings.Contains(fb.Error, "prometheus") || !strings.Contains(fb.Error, "showing the proxies' own metrics") || web.Inbound.RPS <= 0 {
		t.Errorf("with Prometheus unreachable: source %q error %q web %+v; want the proxies' rows and an error that says so", fb.Source, fb.Error, web.Inbound)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// A Prometheus (or anything at its URL) that answers with more than
// MaxPromResponseBytes, or slower than Timeout, fails the query set rather than grow
// the dashboard's memory or hold its pages; a failure is cached, so it costs one query
// set per CacheFor however many viewers come.
func TestPromSourceBounds(t *testing.T) {
	for _, bad := range []string{"prometheus:9090", "ftp://prometheus", "http://", "://x"} {
		if _, err := NewPromSource(bad); err == nil || !strings.Contains(err.Error(), "want http(s)://") {
			t.Errorf("NewPromSource(%q): err %v, want a refusal that says what to give", bad, err)
		}
	}
	var queries int
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[`))
		chunk := []byte(`{"metric":{"namespace":"a","pod":"b","direction":"inbound"},"value":[1,"1"]},`)
		for n := 0; n <= MaxPromResponseBytes/len(chunk); n++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte(`{"metric":{},"value":[1,"1"]}]}}`))
	}))
	defer huge.Close()
	p, err := NewPromSource(huge.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.CacheFor = time.Minute
	if _, err := p.rates(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an answer over %d bytes: err %v, want refused", MaxPromResponseBytes, err)
	}
	seen := queries
	for range 5 {
		_, _ = p.rates(context.Background())
	}
	if queries != seen {
		t.Errorf("five more page loads cost %d more queries, want 0 (the failure is cached)", queries-seen)
	}

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	p, err = NewPromSource(slow.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = p.rates(context.Background())
	if took := time.Since(start); err == nil || took > 3*time.Second {
		t.Errorf("a Prometheus that does not answer: err %v after %v, want a failure within the 300ms timeout", err, took)
	}
}
