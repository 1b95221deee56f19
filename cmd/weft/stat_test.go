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

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/internal/freeport"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestParseMetrics: the proxies' text format, read by expfmt and flattened into the
// samples the wire shows, histograms included.
func TestParseMetrics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		text    string
		want    []sample
		wantErr bool
	}{
		{name: "labels", text: `request_total{direction="inbound",authority="web:80",tls="true"} 42`,
			want: []sample{{name: "request_total", labels: map[string]string{"direction": "inbound", "authority": "web:80", "tls": "true"}, value: 42}}},
		{name: "no labels", text: `process_cpu_seconds_total 1.5`, want: []sample{{name: "process_cpu_seconds_total", labels: map[string]string{}, value: 1.5}}},
		{name: "escaped quote and comma in a value", text: `x{a="say \"hi\", ok",b="c"} 1`,
			want: []sample{{name: "x", labels: map[string]string{"a": `say "hi", ok`, "b": "c"}, value: 1}}},
		{name: "+Inf bucket", text: `response_latency_ms_bucket{le="+Inf"} 7`,
			want: []sample{{name: "response_latency_ms_bucket", labels: map[string]string{"le": "+Inf"}, value: 7}}},
		{name: "typed histogram", text: "# TYPE response_latency_ms histogram\n" +
			`response_latency_ms_bucket{direction="inbound",le="10"} 3` + "\n" +
			`response_latency_ms_bucket{direction="inbound",le="+Inf"} 5` + "\n" +
			`response_latency_ms_sum{direction="inbound"} 40` + "\n" +
			`response_latency_ms_count{direction="inbound"} 5`,
			want: []sample{
				{name: "response_latency_ms_bucket", labels: map[string]string{"direction": "inbound", "le": "+Inf"}, value: 5},
				{name: "response_latency_ms_bucket", labels: map[string]string{"direction": "inbound", "le": "10"}, value: 3},
				{name: "response_latency_ms_count", labels: map[string]string{"direction": "inbound"}, value: 5},
				{name: "response_latency_ms_sum", labels: map[string]string{"direction": "inbound"}, value: 40},
			}},
		{name: "unterminated", text: `x{a="b} 1`, wantErr: true},
		{name: "no value", text: `x{a="b"}`, wantErr: true},
		{name: "bad value", text: `x 1e`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMetrics(tc.text + "\n")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("want %+v, got %+v", tc.want, got)
			}
		})
	}
}

func TestSubCounterReset(t *testing.T) {
	prev := &counters{requests: 100, responses: 100, successes: 90, buckets: map[float64]float64{10: 100}}
	for _, tc := range []struct {
		name string
		cur  *counters
		want float64
	}{
		{name: "growing counters subtract", cur: &counters{requests: 130, responses: 130, successes: 120, buckets: map[float64]float64{10: 130}}, want: 30},
		{name: "a restarted proxy counts from zero", cur: &counters{requests: 7, responses: 7, successes: 7, buckets: map[float64]float64{10: 7}}, want: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sub(tc.cur, prev)
			if d.responses != tc.want || d.requests != tc.want || d.buckets[10] != tc.want {
				t.Errorf("want %v, got %+v", tc.want, d)
			}
		})
	}
}

// TestGoldenFromRealProxies runs two real weft-proxy processes, a client proxy and a
// server proxy talking mTLS with certificates from a CA made here, sends a known mix of
// requests (successes, failures, and plaintext requests straight to the server's inbound
// port), and checks what weft stat computes from their real /metrics.
func TestGoldenFromRealProxies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs weft-proxy")
	}
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	caPEM, issue := newCA(t)
	clientFiles := issue(dir, "client", "spiffe://cluster.local/ns/demo/sa/web")
	serverFiles := issue(dir, "server", "spiffe://cluster.local/ns/demo/sa/backend")

	// The app: /ok answers 200 after about 15ms, /fail 500 at once.
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		time.Sleep(15 * time.Millisecond)
		io.WriteString(w, "ok")
	})}
	go appSrv.Serve(app)
	t.Cleanup(func() { appSrv.Close() })
	appPort := app.Addr().(*net.TCPAddr).Port

	server := startProxy(t, bin, dir, "server", fmt.Sprintf("inbound: {originalDstOverride: \"127.0.0.1:%d\"}\n", appPort), serverFiles, caPEM)
	client := startProxy(t, bin, dir, "client", fmt.Sprintf(`
outbound:
  originalDstOverride: 10.96.0.20:80
destinations:
- name: backend
  addresses: ["10.96.0.20:80"]
  endpoints:
  - {address: 127.0.0.1, port: %d, identity: "spiffe://cluster.local/ns/demo/sa/backend", proxyPort: %d}
`, appPort, server.inbound), clientFiles, caPEM)

	pods := []statPod{
		{uid: "c", namespace: "demo", name: "web-1", group: "deploy/web", meshed: true},
		{uid: "s", namespace: "demo", name: "backend-1", group: "deploy/backend", meshed: true},
		{uid: "u", namespace: "demo", name: "legacy", group: "deploy/legacy"},
	}
	scrapeBoth := func() map[types.UID]scrape {
		out := map[types.UID]scrape{}
		for uid, p := range map[types.UID]*proxyProc{"c": client, "s": server} {
			samples, err := parseMetrics(p.metrics(t))
			if err != nil {
				t.Fatal(err)
			}
			out[uid] = digest(time.Now(), samples)
		}
		return out
	}
	// Traffic before the first scrape must not count: only the window does.
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/ok", client.outbound), 5)
	prev := scrapeBoth()
	// Failures interleaved with successes: a run of consecutive 5xx would make the
	// client proxy eject the only endpoint and answer 503 itself.
	for range 10 {
		getN(t, fmt.Sprintf("http://127.0.0.1:%d/ok", client.outbound), 4)
		getN(t, fmt.Sprintf("http://127.0.0.1:%d/fail", client.outbound), 1)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/ok", server.inbound), 10) // plaintext, no identity
	cur := scrapeBoth()
	if os.Getenv("DEBUG_METRICS") != "" {
		t.Logf("client:\n%s\nserver:\n%s", client.metrics(t), server.metrics(t))
	}
	rows := summarize(pods, prev, cur, "")
	t.Run("edges", func(t *testing.T) { edgesFromRealProxies(t, client, server) })
	t.Run("routes", func(t *testing.T) { routesFromRealProxies(t, client) })

	byKey := map[string]Golden{}
	for _, r := range rows {
		byKey[r.Name+" "+r.Direction] = r
	}
	if len(rows) != 6 {
		t.Fatalf("want 6 rows (3 groups x 2 directions), got %d: %+v", len(rows), rows)
	}
	for _, tc := range []struct {
		row                   string
		requests, success     float64
		mtls                  *float64
		p50Min, p50Max, meshd int
	}{
		{row: "deploy/web outbound", requests: 50, success: 0.8, mtls: fptr(1), p50Min: 10, p50Max: 40, meshd: 1},
		{row: "deploy/backend inbound", requests: 60, success: 50.0 / 60, mtls: fptr(50.0 / 60), p50Min: 10, p50Max: 40, meshd: 1},
		{row: "deploy/web inbound", requests: 0, meshd: 1},
		{row: "deploy/legacy inbound", requests: 0, meshd: 0},
	} {
		t.Run(tc.row, func(t *testing.T) {
			g, ok := byKey[tc.row]
			if !ok {
				t.Fatalf("no row %q in %+v", tc.row, rows)
			}
			if g.Requests != tc.requests || g.Meshed != tc.meshd || g.Pods != 1 {
				t.Errorf("want %v requests from %d/1 meshed pods, got %+v", tc.requests, tc.meshd, g)
			}
			if tc.requests == 0 {
				if g.SuccessRate != nil || g.P50Ms != nil || g.MTLSShare != nil || g.RPS != 0 {
					t.Errorf("want no rates without traffic, got %+v", g)
				}
				return
			}
			if g.SuccessRate == nil || math.Abs(*g.SuccessRate-tc.success) > 1e-9 {
				t.Errorf("want success rate %v, got %v", tc.success, deref(g.SuccessRate))
			}
			if g.MTLSShare == nil || math.Abs(*g.MTLSShare-*tc.mtls) > 1e-9 {
				t.Errorf("want mTLS share %v, got %v", *tc.mtls, deref(g.MTLSShare))
			}
			// 80% of requests take ~15ms, 20% ~0: p50 lies in the 10-20ms bucket on an
			// idle machine; the bound leaves room for a loaded one.
			if g.P50Ms == nil || *g.P50Ms < float64(tc.p50Min) || *g.P50Ms > float64(tc.p50Max) {
				t.Errorf("want p50 in [%d, %d]ms, got %v", tc.p50Min, tc.p50Max, deref(g.P50Ms))
			}
			if g.P99Ms == nil || *g.P99Ms < *g.P50Ms {
				t.Errorf("want p99 >= p50, got %v", deref(g.P99Ms))
			}
			if want := tc.requests / g.WindowSeconds; math.Abs(g.RPS-want) > want*1e-9 {
				t.Errorf("want RPS %v (requests over the window), got %v", want, g.RPS)
			}
		})
	}

	// The table and JSON renderings carry the same numbers.
	var buf bytes.Buffer
	if err := printStat(&buf, rows, statOptions{output: "json"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var decoded struct{ Rows []Golden }
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil || len(decoded.Rows) != 6 {
		t.Fatalf("json output %s: %v", buf.String(), err)
	}
	buf.Reset()
	if err := printStat(&buf, rows, statOptions{output: "table"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("weft stat's table:\n%s", buf.String())
	for _, want := range []string{"deploy/web", "outbound", "80.00%", "100.00%", "0/1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func getN(t *testing.T, u string, n int) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	for range n {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

type proxyProc struct {
	inbound, outbound, admin int
}

func (p *proxyProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func buildProxy(t *testing.T, dir string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "weft-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/weft-proxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weft-proxy: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func startProxy(t *testing.T, bin, dir, name, config string, files [2]string, caPEM string) *proxyProc {
	t.Helper()
	p := &proxyProc{inbound: freePort(t), outbound: freePort(t), admin: freePort(t)}
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg, "--listen-addr", "127.0.0.1", "--admin-addr", "127.0.0.1",
		"--inbound-port", strconv.Itoa(p.inbound), "--outbound-port", strconv.Itoa(p.outbound), "--admin-port", strconv.Itoa(p.admin),
		"--identity-mode", "files", "--identity-cert", files[0], "--identity-key", files[1], "--identity-roots", caPEM,
		"--unsafe-loopback-apps") // the test's app listens on 127.0.0.1
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s proxy log:\n%s", name, logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", p.admin))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s proxy not ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newCA makes a self-signed ECDSA P-256 CA in the shape of the Mesh's trust anchor and
// returns its PEM file and a function issuing SPIFFE leaves (cert and key files).
func newCA(t *testing.T) (string, func(dir, name, spiffeID string) [2]string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test anchor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", der)
	serial := int64(2)
	return caFile, func(dir, name, id string) [2]string {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		ltpl := &x509.Certificate{SerialNumber: big.NewInt(serial), URIs: []*url.URL{u},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		lder, err := x509.CreateCertificate(rand.Reader, ltpl, ca, &lk.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(lk)
		if err != nil {
			t.Fatal(err)
		}
		files := [2]string{filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")}
		writePEM(t, files[0], "CERTIFICATE", lder)
		writePEM(t, files[1], "PRIVATE KEY", kder)
		return files
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStatDenials: the inbound policy's denials (Linkerd's inbound_http_authz_deny_total
// and inbound_tcp_authz_deny_total, which carry no direction label) are summed per
// workload over the window and shown inbound only, in the table and in JSON.
func TestStatDenials(t *testing.T) {
	scrapeText := func(httpDeny, tcpDeny int) []sample {
		text := fmt.Sprintf(`request_total{direction="inbound",tls="true"} 10
response_total{direction="inbound",classification="success"} 10
inbound_http_authz_deny_total{target_addr="10.0.0.1:8080",srv_group="policy.weft.dev",srv_kind="Server",srv_name="books-http",route_group="",route_kind="default",route_name="default"} %d
inbound_tcp_authz_deny_total{target_addr="10.0.0.1:5432",srv_group="",srv_kind="default",srv_name="deny"} %d
`, httpDeny, tcpDeny)
		out, err := parseMetrics(text)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t0 := time.Unix(1000, 0)
	pods := []statPod{{namespace: "shop", name: "books-1", uid: "a", group: "deploy/books"}, {namespace: "shop", name: "books-2", uid: "b", group: "deploy/books"}}
	prev := map[types.UID]scrape{"a": digest(t0, scrapeText(3, 1)), "b": digest(t0, scrapeText(0, 0))}
	cur := map[types.UID]scrape{"a": digest(t0.Add(5*time.Second), scrapeText(7, 2)), "b": digest(t0.Add(5*time.Second), scrapeText(4, 0))}
	rows := summarize(pods, prev, cur, "")
	var buf bytes.Buffer
	if err := printStat(&buf, rows, statOptions{output: "table"}, t0); err != nil {
		t.Fatal(err)
	}
	// 4+1 from books-1 and 4 from books-2: 9 denials inbound, none shown outbound.
	want := `NAMESPACE  NAME          DIRECTION  MESHED  RPS  SUCCESS  P50  P95  P99  MTLS  DENIED  
shop       deploy/books  inbound    2/2     0.0  -        -    -    -    -     9       
shop       deploy/books  outbound   2/2     0.0  -        -    -    -    -     -       
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := printStat(&buf, rows, statOptions{output: "json"}, t0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"denied":9`) || !strings.Contains(buf.String(), `"denied":null`) {
		t.Errorf("json lacks the denials: %s", buf.String())
	}
}

// realView is the pods and Service of TestGoldenFromRealProxies as the API would
// show them.
var realView = meshView{clusterDomain: "cluster.local",
	pods: []statPod{
		{uid: "c", namespace: "demo", name: "web-1", group: "deploy/web", meshed: true, serviceAccount: "web", labels: map[string]string{"app": "web"}},
		{uid: "s", namespace: "demo", name: "backend-1", group: "deploy/backend", meshed: true, serviceAccount: "backend", labels: map[string]string{"app": "backend"}},
	},
	services: []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "backend"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Selector: map[string]string{"app": "backend"}}}},
}

// edgesFromRealProxies: weft edges on the real proxies' metrics finds the one edge,
// web -> backend, with the identities each side verified; the plaintext requests
// straight to the server's inbound port (no identity) make no edge.
func edgesFromRealProxies(t *testing.T, client, server *proxyProc) {
	samples := map[types.UID][]sample{}
	for uid, p := range map[types.UID]*proxyProc{"c": client, "s": server} {
		s, err := parseMetrics(p.metrics(t))
		if err != nil {
			t.Fatal(err)
		}
		samples[uid] = s
	}
	got := computeEdges(realView, samples)
	want := []Edge{{SrcNamespace: "demo", Src: "deploy/web", DstNamespace: "demo", Dst: "deploy/backend",
		ClientID: "spiffe://cluster.local/ns/demo/sa/web", ServerID: "spiffe://cluster.local/ns/demo/sa/backend", Secured: true, Requests: 55}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("edges:\n got %+v\nwant %+v", got, want)
	}
}

// routesFromRealProxies: weft routes on the client proxy's real route_* series
// counts the window's requests of the backend Service's route, by its cluster IP.
func routesFromRealProxies(t *testing.T, client *proxyProc) {
	serviceOf := func(a string) (string, bool) {
		if s := realView.service("demo", a); s != nil {
			return s.Namespace + "/" + s.Name, true
		}
		return "", false
	}
	read := func() map[types.UID]routeScrape {
		s, err := parseMetrics(client.metrics(t))
		if err != nil {
			t.Fatal(err)
		}
		return map[types.UID]routeScrape{"c": digestRoutes(time.Now(), s, serviceOf)}
	}
	prev := read()
	for range 3 {
		getN(t, fmt.Sprintf("http://127.0.0.1:%d/ok", client.outbound), 4)
		getN(t, fmt.Sprintf("http://127.0.0.1:%d/fail", client.outbound), 1)
	}
	rows := summarizeRoutes(prev, read())
	if len(rows) != 1 || rows[0].Service != "demo/backend" || rows[0].Route != "default" || rows[0].Requests != 15 ||
		rows[0].SuccessRate == nil || math.Abs(*rows[0].SuccessRate-0.8) > 1e-9 || rows[0].P50Ms == nil || rows[0].RPS <= 0 {
		t.Errorf("want one row demo/backend default with 15 requests, 80%% success, got %+v", rows)
	}
}
