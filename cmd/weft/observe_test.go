package main

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// demoView is config/demo as the API shows it: backend-v1 and backend-v2 share the
// ServiceAccount backend and are both selected by Service backend (the canary).
func demoView() meshView {
	pod := func(uid, name, group, sa, app string) statPod {
		return statPod{uid: types.UID(uid), namespace: "weft-demo", name: name, group: group, meshed: true, serviceAccount: sa, labels: map[string]string{"app": app}}
	}
	svc := func(name string) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-demo", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0." + fmt.Sprint(len(name)), Selector: map[string]string{"app": name}}}
	}
	return meshView{clusterDomain: "cluster.local",
		pods: []statPod{
			pod("load", "load-1", "deploy/load", "load", "load"),
			pod("web", "web-1", "deploy/web", "web", "web"),
			pod("v1", "backend-v1-1", "deploy/backend-v1", "backend", "backend"),
			pod("v2", "backend-v2-1", "deploy/backend-v2", "backend", "backend"),
			pod("grpc", "grpc-1", "deploy/grpc", "grpc", "grpc"),
		},
		services: []corev1.Service{svc("web"), svc("backend"), svc("grpc")},
	}
}

const id = "spiffe://cluster.local/ns/"

func mustParse(t *testing.T, text string) []sample {
	t.Helper()
	s, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEdges: the demo's call graph from its proxies' request counters, each side's
// identity merged per pair of workloads; the canary's two Deployments behind one
// Service are told apart by their own inbound counts; probes (no identity) make no
// edge; a caller from a namespace not read is named by its ServiceAccount.
func TestEdges(t *testing.T) {
	samples := map[types.UID][]sample{
		"load": mustParse(t, `request_total{direction="outbound",authority="web.weft-demo.svc.cluster.local:8080",tls="true",server_id="`+id+`weft-demo/sa/web"} 100
`),
		"web": mustParse(t, `request_total{direction="inbound",authority="web.weft-demo.svc.cluster.local:8080",tls="true",client_id="`+id+`weft-demo/sa/load"} 100
request_total{direction="inbound",authority="10.0.0.7:8080",tls="no_identity"} 30
request_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",tls="true",server_id="`+id+`weft-demo/sa/backend"} 100
request_total{direction="outbound",authority="grpc.weft-demo.svc.cluster.local:8080",tls="true",server_id="`+id+`weft-demo/sa/grpc"} 100
`),
		"v1": mustParse(t, `request_total{direction="inbound",authority="backend.weft-demo.svc.cluster.local:8080",tls="true",client_id="`+id+`weft-demo/sa/web"} 90
request_total{direction="inbound",authority="backend.weft-demo.svc.cluster.local:8080",tls="true",client_id="`+id+`batch/sa/cron"} 5
`),
		"v2": mustParse(t, `request_total{direction="inbound",authority="backend.weft-demo.svc.cluster.local:8080",tls="true",client_id="`+id+`weft-demo/sa/web"} 10
`),
		"grpc": mustParse(t, `request_total{direction="inbound",authority="grpc.weft-demo.svc.cluster.local:8080",tls="true",client_id="`+id+`weft-demo/sa/web"} 100
`),
	}
	edges := computeEdges(demoView(), samples)
	for _, tc := range []struct {
		format, want string
	}{
		{"table", `SRC                   DST                 SRC_NS      DST_NS      SECURED   CLIENT_ID                                     SERVER_ID
serviceaccount/cron   deploy/backend-v1   batch       weft-demo   yes       spiffe://cluster.local/ns/batch/sa/cron       -
deploy/load           deploy/web          weft-demo   weft-demo   yes       spiffe://cluster.local/ns/weft-demo/sa/load   spiffe://cluster.local/ns/weft-demo/sa/web
deploy/web            deploy/backend-v1   weft-demo   weft-demo   yes       spiffe://cluster.local/ns/weft-demo/sa/web    spiffe://cluster.local/ns/weft-demo/sa/backend
deploy/web            deploy/backend-v2   weft-demo   weft-demo   yes       spiffe://cluster.local/ns/weft-demo/sa/web    spiffe://cluster.local/ns/weft-demo/sa/backend
deploy/web            deploy/grpc         weft-demo   weft-demo   yes       spiffe://cluster.local/ns/weft-demo/sa/web    spiffe://cluster.local/ns/weft-demo/sa/grpc
`},
		{"json", `{"edges":[{"srcNamespace":"batch","src":"serviceaccount/cron","dstNamespace":"weft-demo","dst":"deploy/backend-v1","clientId":"spiffe://cluster.local/ns/batch/sa/cron","serverId":"","secured":true,"requests":5},{"srcNamespace":"weft-demo","src":"deploy/load","dstNamespace":"weft-demo","dst":"deploy/web","clientId":"spiffe://cluster.local/ns/weft-demo/sa/load","serverId":"spiffe://cluster.local/ns/weft-demo/sa/web","secured":true,"requests":100},{"srcNamespace":"weft-demo","src":"deploy/web","dstNamespace":"weft-demo","dst":"deploy/backend-v1","clientId":"spiffe://cluster.local/ns/weft-demo/sa/web","serverId":"spiffe://cluster.local/ns/weft-demo/sa/backend","secured":true,"requests":90},{"srcNamespace":"weft-demo","src":"deploy/web","dstNamespace":"weft-demo","dst":"deploy/backend-v2","clientId":"spiffe://cluster.local/ns/weft-demo/sa/web","serverId":"spiffe://cluster.local/ns/weft-demo/sa/backend","secured":true,"requests":10},{"srcNamespace":"weft-demo","src":"deploy/web","dstNamespace":"weft-demo","dst":"deploy/grpc","clientId":"spiffe://cluster.local/ns/weft-demo/sa/web","serverId":"spiffe://cluster.local/ns/weft-demo/sa/grpc","secured":true,"requests":100}]}
`},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printEdges(&buf, tc.format, edges); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", buf.String(), tc.want)
			}
		})
	}
}

// TestEdgeCallees: how an outbound series' destination is resolved.
func TestEdgeCallees(t *testing.T) {
	v := demoView()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"FQDN", map[string]string{"authority": "web.weft-demo.svc.cluster.local:8080"}, "[{weft-demo deploy/web}]"},
		{"one label, in the client's namespace", map[string]string{"authority": "web:8080"}, "[{weft-demo deploy/web}]"},
		{"cluster IP", map[string]string{"authority": "10.96.0.3:8080"}, "[{weft-demo deploy/web}]"},
		{"canary Service without identity: both", map[string]string{"authority": "backend.weft-demo:8080"}, "[{weft-demo deploy/backend-v1} {weft-demo deploy/backend-v2}]"},
		{"identity of another namespace does not narrow", map[string]string{"authority": "web.weft-demo.svc:8080", "server_id": id + "x/sa/web"}, "[{weft-demo deploy/web}]"},
		{"dst labels win", map[string]string{"authority": "backend:8080", "dst_namespace": "weft-demo", "dst_deployment": "backend-v2"}, "[{weft-demo deploy/backend-v2}]"},
		{"unknown host, identity known", map[string]string{"authority": "127.0.0.1:4140", "server_id": id + "weft-demo/sa/grpc"}, "[{weft-demo deploy/grpc}]"},
		{"external host", map[string]string{"authority": "example.com:443"}, "[{ example.com:443}]"},
		{"Service of another cluster domain", map[string]string{"authority": "web.weft-demo.svc.other.local:80"}, "[{ web.weft-demo.svc.other.local:80}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(v.callees("weft-demo", tc.labels)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRoutes: the window's per-route golden metrics of the clients' route_* series,
// two clients' rates added, other Services' routes and inbound series left out.
func TestRoutes(t *testing.T) {
	v := demoView()
	serviceOf := func(ns string) func(string) (string, bool) {
		return func(a string) (string, bool) {
			if s := v.service(ns, a); s != nil && s.Name == "backend" {
				return s.Namespace + "/" + s.Name, true
			}
			return "", false
		}
	}
	text := func(canary, other, ok, fail int, fast int) string {
		return fmt.Sprintf(`# TYPE route_request_total counter
route_request_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/0"} %[1]d
route_request_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1"} %[2]d
route_request_total{direction="outbound",authority="web.weft-demo.svc.cluster.local:8080",rt_route="default"} 999
route_request_total{direction="inbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1"} 999
# TYPE route_response_total counter
route_response_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/0",status_code="200",classification="success"} %[1]d
route_response_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200",classification="success"} %[3]d
route_response_total{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="503",classification="failure"} %[4]d
# TYPE route_response_latency_ms histogram
route_response_latency_ms_bucket{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200",le="10"} %[5]d
route_response_latency_ms_bucket{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200",le="20"} %[3]d
route_response_latency_ms_bucket{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200",le="+Inf"} %[3]d
route_response_latency_ms_sum{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200"} 0
route_response_latency_ms_count{direction="outbound",authority="backend.weft-demo.svc.cluster.local:8080",rt_route="backend/1",status_code="200"} %[3]d
`, canary, other, ok, fail, fast)
	}
	t0 := time.Unix(1000, 0)
	prev := map[types.UID]routeScrape{
		"web":  digestRoutes(t0, mustParse(t, text(0, 100, 100, 0, 50)), serviceOf("weft-demo")),
		"load": digestRoutes(t0, mustParse(t, text(0, 0, 0, 0, 0)), serviceOf("weft-demo")),
	}
	// In 10s: web gets 200 more responses on backend/1 (190 ok, 10 failed; 95 of the
	// successes under 10ms); load sends 2 canary requests and 100 on backend/1: 300
	// responses (30 RPS), 290 successes, p50 at the 10ms bound (145 of 290).
	cur := map[types.UID]routeScrape{
		"web":  digestRoutes(t0.Add(10*time.Second), mustParse(t, text(0, 300, 290, 10, 145)), serviceOf("weft-demo")),
		"load": digestRoutes(t0.Add(10*time.Second), mustParse(t, text(2, 100, 100, 0, 50)), serviceOf("weft-demo")),
	}
	rows := summarizeRoutes(prev, cur)
	for _, tc := range []struct{ format, want string }{
		{"table", `SERVICE             ROUTE       RPS    SUCCESS   P50    P95    P99
weft-demo/backend   backend/0   0.2    100.00%   -      -      -
weft-demo/backend   backend/1   30.0   96.67%    10ms   19ms   20ms
`},
		{"wide", `SERVICE             ROUTE       RPS    SUCCESS   P50    P95    P99    REQUESTS   CLIENTS
weft-demo/backend   backend/0   0.2    100.00%   -      -      -      2          2
weft-demo/backend   backend/1   30.0   96.67%    10ms   19ms   20ms   300        2
`},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printRoutes(&buf, routesOptions{output: tc.format}, rows); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", buf.String(), tc.want)
			}
		})
	}
}

func TestClientVersion(t *testing.T) {
	bi := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: v}, Settings: settings}
	}
	for _, tc := range []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		ok            bool
		want          string
	}{
		{"-ldflags wins", "v0.3.0", bi("v0.2.0"), true, "v0.3.0"},
		{"module version (go install weft@v0.2.0)", "", bi("v0.2.0"), true, "v0.2.0"},
		{"source build with VCS stamp", "", bi("(devel)", debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), true, "dev+0123456789ab-dirty"},
		{"nothing known", "", bi("(devel)"), true, "dev"},
		{"no build info", "", nil, false, "dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := buildVersion
			buildVersion = tc.ldflags
			defer func() { buildVersion = old }()
			if got := clientVersion(tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for ref, want := range map[string]string{
		"weft-controller:dev":                        "dev",
		"registry:5000/weft/weft-controller:v0.3.0":  "v0.3.0",
		"registry:5000/weft-controller":              "latest",
		"ghcr.io/weft/c@sha256:abc":                  "sha256:abc",
		"ghcr.io/weft/c:v1@sha256:abc":               "v1",
		"localhost:5000/weft-controller:v1.2.3-rc.1": "v1.2.3-rc.1",
	} {
		if got := imageTag(ref); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", ref, got, want)
		}
	}
}

// TestControlPlaneVersion: the version printed from the controller Deployment (a
// pure rendering test: a fake clientset holds the Deployment).
func TestControlPlaneVersion(t *testing.T) {
	replicas := int32(2)
	kube := fake.NewClientset(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: controllerDeployment},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "sidecar", Image: "other:1"}, {Name: "controller", Image: "registry:5000/weft-controller:v0.3.0"}}}}},
		Status: appsv1.DeploymentStatus{ReadyReplicas: 1},
	})
	cp, err := readControlPlaneVersion(t.Context(), kube, "weft-system")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := printVersion(&buf, "table", versionInfo{Client: "v0.3.0", ControlPlane: cp}, false); err != nil {
		t.Fatal(err)
	}
	want := "Client version: v0.3.0\nControl plane version: v0.3.0 (weft-system/weft-controller, image registry:5000/weft-controller:v0.3.0, 1/2 ready)\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := printVersion(&buf, "yaml", versionInfo{Client: "v0.3.0", ControlPlane: cp}, false); err != nil {
		t.Fatal(err)
	}
	wantYAML := "---\nclientVersion: v0.3.0\ncontrolPlane:\n  image: registry:5000/weft-controller:v0.3.0\n  namespace: weft-system\n  readyReplicas: 1\n  replicas: 2\n  version: v0.3.0\n"
	if buf.String() != wantYAML {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), wantYAML)
	}
	if _, err := readControlPlaneVersion(t.Context(), kube, "elsewhere"); err == nil || !strings.Contains(err.Error(), "--control-plane-namespace") {
		t.Errorf("a missing control plane: %v, want a hint at --control-plane-namespace", err)
	}
}

// TestCommandLine: the cobra tree's surface: exit codes, the plugin name, completion.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		stdout   []string
		stderr   []string
	}{
		{"version --client needs no cluster", []string{"version", "--client", "-o", "json"}, 0, []string{`{"clientVersion":"`}, nil},
		{"bash completion", []string{"completion", "bash"}, 0, []string{"__start_weft"}, nil},
		{"zsh completion", []string{"completion", "zsh"}, 0, []string{"#compdef weft"}, nil},
		{"fish completion", []string{"completion", "fish"}, 0, []string{"complete -c weft"}, nil},
		{"powershell completion", []string{"completion", "powershell"}, 0, []string{"Register-ArgumentCompleter"}, nil},
		{"kinds complete", []string{"__complete", "stat", ""}, 0, []string{"deploy\npod\nns\n"}, nil},
		{"output formats complete", []string{"__complete", "edges", "deploy", "-o", ""}, 0, []string{"table\nwide\njson\nyaml\n"}, nil},
		{"bad output format", []string{"edges", "deploy", "-o", "xml"}, 2, nil, []string{`-o "xml"`, "weft edges --help"}},
		{"edges of an unknown kind", []string{"edges", "svc"}, 2, nil, []string{`unknown resource "svc"`}},
		{"routes wants one target", []string{"routes"}, 2, nil, []string{"accepts 1 arg"}},
		{"stat too many arguments", []string{"stat", "deploy", "a", "b"}, 2, nil, []string{"accepts at most 2 arg"}},
		{"kubectl's flags are there", []string{"version", "--client", "--context", "x", "--as", "y", "--request-timeout", "5s", "-n", "z"}, 0, []string{"Client version: "}, nil},
		{"no command", nil, 2, nil, []string{"Usage:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := weft(t, "", tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestPluginName: run as kubectl-weft (kubectl's plugin), the usage lines say
// "kubectl weft".
func TestPluginName(t *testing.T) {
	for argv0, want := range map[string]string{"/usr/local/bin/kubectl-weft": "kubectl weft", "kubectl-weft.exe": "kubectl weft", "bin/weft": "weft", "weft.test": "weft"} {
		if got := displayName(argv0); got != want {
			t.Errorf("displayName(%q) = %q, want %q", argv0, got, want)
		}
	}
	var out bytes.Buffer
	root := newRootCommand(&cli{in: strings.NewReader(""), out: &out, errOut: &out, config: newConfigFlags()}, "kubectl weft")
	root.SetArgs([]string{"edges", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Usage:\n  kubectl weft edges (deploy|pod|ns) [flags]") ||
		!strings.Contains(out.String(), "Examples:\n  kubectl weft edges deploy -n weft-demo") {
		t.Errorf("usage does not name kubectl weft:\n%s", out.String())
	}
}

// TestPrintable: what a workload wrote reaches the terminal with its control
// characters escaped.
func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want, wantLines string }{
		{"deploy/web", "deploy/web", "deploy/web"},
		{"evil\x1b[2J:80", `evil\x1b[2J:80`, `evil\x1b[2J:80`},
		{"a\nb\tc", `a\x0ab\x09c`, "a\nb\tc"},
		{"c1\u009bx", `c1\x9bx`, `c1\x9bx`},
		{"bad\xffutf8", `bad\xffutf8`, `bad\xffutf8`},
		{"héllo ✓", "héllo ✓", "héllo ✓"},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := escapeControls(tc.in, true); got != tc.wantLines {
			t.Errorf("escapeControls(%q, true) = %q, want %q", tc.in, got, tc.wantLines)
		}
	}
	// An edge to an authority that names no Service shows the authority, escaped.
	v := demoView()
	edges := computeEdges(v, map[types.UID][]sample{"web": mustParse(t, "request_total{direction=\"outbound\",authority=\"x\x1b[31m:80\",tls=\"no_identity\"} 1\n")})
	var buf bytes.Buffer
	if err := printEdges(&buf, "table", edges); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "\x1b") || !strings.Contains(buf.String(), `x\x1b[31m:80`) {
		t.Errorf("the table carries the escape raw:\n%q", buf.String())
	}
}
