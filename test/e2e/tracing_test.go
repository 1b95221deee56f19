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

package e2e

// Distributed tracing (issue 20, item 1) on the local cluster, with a real OTLP
// receiver: Jaeger v2 (hack/jaeger.sh), in a namespace of its own that is not meshed.
// Tracing is switched on by setting the Mesh's spec.tracing and off by removing it,
// while the steady load runs and must see no failure; in between, Jaeger's query API
// must hold a trace of the demo's traffic that goes load -> web -> grpc and backend,
// each hop's client span the parent of the next proxy's server span.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

const (
	tracingNS = "weft-tracing" // testdata/jaeger.yaml
	collector = "jaeger." + tracingNS + ".svc.cluster.local:4317"
	// tracingService is the spans' service.name the test sets on the Mesh.
	tracingService = "weft-e2e-proxy"
)

// TestTracing: Jaeger accepts OTLP from a grpc-go client; spec.tracing (rate 1) makes the
// demo's proxies report linked spans; removing it stops them; the steady load never
// fails while tracing is switched on and off.
func TestTracing(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	jaegerIP := deployJaeger(ctx, t)

	// The receiver on its own, before any proxy is involved: a span sent with grpc-go's
	// OTLP client comes back from the query API.
	t.Run("Jaeger accepts OTLP/gRPC", func(t *testing.T) {
		traceID := sendProbeSpan(ctx, t, net.JoinHostPort(jaegerIP, "4317"))
		if err := eventually(ctx, 30*time.Second, time.Second, func() error {
			traces, err := jaegerTraces(ctx, map[string]string{"service": "weft-e2e-probe", "lookback": "5m", "limit": "20"})
			if err != nil {
				return err
			}
			for _, tr := range traces {
				if tr.TraceID == traceID {
					return nil
				}
			}
			return fmt.Errorf("trace %s not found among %d", traceID, len(traces))
		}); err != nil {
			t.Fatalf("Jaeger did not store the probe span: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	on := time.Now()
	sent, failed := steadyFailures(ctx, t, func() {
		setMeshTracing(ctx, t, map[string]any{"collector": collector, "samplingRate": "1", "serviceName": tracingService})
		t.Cleanup(func() { setMeshTracing(context.Background(), t, nil) })
		waitTracingReady(ctx, t, true)
	})
	t.Logf("switching tracing on: the steady load sent %d requests, %d failed", sent, failed)
	if failed != 0 {
		t.Errorf("switching tracing on: %d of the steady load's %d requests failed", failed, sent)
	}

	// The demo's load sends 20 requests/s to web, which calls grpc and backend: within
	// seconds of the proxies taking the configuration, Jaeger holds whole traces.
	var chain string
	if err := eventually(ctx, 90*time.Second, 2*time.Second, func() error {
		traces, err := jaegerTraces(ctx, map[string]string{
			"service": tracingService, "lookback": "5m", "limit": "50",
			"tags": `{"k8s.namespace.name":"` + demoNS + `","k8s.deployment.name":"load"}`,
		})
		if err != nil {
			return err
		}
		if len(traces) == 0 {
			return fmt.Errorf("no trace with a span of the demo's load")
		}
		var last error
		for _, tr := range traces {
			if chain, last = tr.demoChain(); last == nil {
				return nil
			}
		}
		return fmt.Errorf("%d traces, none complete; the last: %w", len(traces), last)
	}); err != nil {
		t.Fatalf("no end-to-end trace of the demo in Jaeger: %v", err)
	}
	t.Logf("tracing on -> a whole trace in Jaeger in %s: %s", time.Since(on).Round(100*time.Millisecond), chain)
	// The query the switch-off check below relies on (by start time, no tags) finds
	// the spans of a window while tracing is on, so its empty answer later means
	// something.
	window := func(from, to time.Time) ([]jaegerTrace, error) {
		return jaegerTraces(ctx, map[string]string{"service": tracingService, "limit": "20",
			"start": strconv.FormatInt(from.UnixMicro(), 10), "end": strconv.FormatInt(to.UnixMicro(), 10)})
	}
	if traces, err := window(on, time.Now()); err != nil || len(traces) == 0 {
		t.Fatalf("the time-window query finds %d traces while tracing is on (err %v)", len(traces), err)
	}

	sent, failed = steadyFailures(ctx, t, func() {
		setMeshTracing(ctx, t, nil)
		waitTracingReady(ctx, t, false)
	})
	t.Logf("switching tracing off: the steady load sent %d requests, %d failed", sent, failed)
	if failed != 0 {
		t.Errorf("switching tracing off: %d of the steady load's %d requests failed", failed, sent)
	}
	// steadyFailures waited 5 s after the removal: time for the proxies to take it and
	// flush what they had. From now on no proxy may start a span.
	quiet := time.Now()
	time.Sleep(6 * time.Second)
	traces, err := window(quiet, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) != 0 {
		t.Errorf("%d traces with spans that started after tracing was removed, want none", len(traces))
	}
}

// deployJaeger applies testdata/jaeger.yaml, waits for it, and returns the pod's IP
// (this machine sits on the cluster's bridge). The namespace goes when the test ends.
func deployJaeger(ctx context.Context, t *testing.T) string {
	t.Helper()
	if out, err := kubectl(ctx, "apply", "-f", filepath.Join(env.root, "test/e2e/testdata/jaeger.yaml")); err != nil {
		t.Fatalf("applying testdata/jaeger.yaml: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := kubectl(context.Background(), "delete", "namespace", tracingNS, "--wait=true", "--timeout=120s"); err != nil {
			t.Logf("deleting namespace %s: %v\n%s", tracingNS, err, out)
		}
	})
	if out, err := kubectl(ctx, "-n", tracingNS, "rollout", "status", "deployment/jaeger", "--timeout=90s"); err != nil {
		desc, _ := kubectl(ctx, "-n", tracingNS, "describe", "pods")
		t.Fatalf("Jaeger is not ready: %v\n%s\n%s", err, out, desc)
	}
	pods, err := env.kube.CoreV1().Pods(tracingNS).List(ctx, metav1.ListOptions{LabelSelector: "app=jaeger"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			return p.Status.PodIP
		}
	}
	t.Fatal("no running Jaeger pod")
	return ""
}

// sendProbeSpan exports one span of service weft-e2e-probe over OTLP/gRPC and returns
// its trace ID in hex.
func sendProbeSpan(ctx context.Context, t *testing.T, addr string) string {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	traceID, spanID := make([]byte, 16), make([]byte, 8)
	_, _ = rand.Read(traceID)
	_, _ = rand.Read(spanID)
	now := time.Now()
	req := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracev1.ResourceSpans{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{{Key: "service.name",
			Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: "weft-e2e-probe"}}}}},
		ScopeSpans: []*tracev1.ScopeSpans{{Spans: []*tracev1.Span{{
			TraceId: traceID, SpanId: spanID, Name: "probe", Kind: tracev1.Span_SPAN_KIND_CLIENT,
			StartTimeUnixNano: uint64(now.Add(-time.Millisecond).UnixNano()), EndTimeUnixNano: uint64(now.UnixNano()),
		}}}},
	}}}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := collectortrace.NewTraceServiceClient(cc).Export(ectx, req)
	if err != nil {
		t.Fatalf("exporting a span to Jaeger at %s: %v", addr, err)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedSpans() != 0 {
		t.Fatalf("Jaeger rejected the span: %s", ps.GetErrorMessage())
	}
	return hex.EncodeToString(traceID)
}

// setMeshTracing sets (nil: removes) the Mesh's spec.tracing with a merge patch.
func setMeshTracing(ctx context.Context, t *testing.T, tracing map[string]any) {
	t.Helper()
	// A nil map marshals as null, which a merge patch reads as "remove".
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"tracing": tracing}})
	mesh := &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}
	if err := env.client.Patch(ctx, mesh, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("setting the Mesh's spec.tracing to %v: %v", tracing, err)
	}
}

// waitTracingReady waits until the Mesh's status reports tracing on (TracingReady True
// for the current generation) or off (no TracingReady).
func waitTracingReady(ctx context.Context, t *testing.T, on bool) {
	t.Helper()
	if err := eventually(ctx, time.Minute, time.Second, func() error {
		mesh := &meshv1alpha1.Mesh{}
		if err := env.client.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); err != nil {
			return err
		}
		c := meta.FindStatusCondition(mesh.Status.Conditions, meshv1alpha1.ConditionTracingReady)
		switch {
		case mesh.Status.ObservedGeneration != mesh.Generation:
			return fmt.Errorf("status at generation %d, Mesh at %d", mesh.Status.ObservedGeneration, mesh.Generation)
		case on && (c == nil || c.Status != metav1.ConditionTrue):
			return fmt.Errorf("TracingReady %+v", c)
		case !on && c != nil:
			return fmt.Errorf("TracingReady %+v after spec.tracing was removed", c)
		}
		return nil
	}); err != nil {
		t.Fatalf("the Mesh's status does not report tracing %v: %v", map[bool]string{true: "on", false: "off"}[on], err)
	}
}

// The parts of Jaeger's query API (GET /api/traces) the test reads.
type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type jaegerSpan struct {
	SpanID     string `json:"spanID"`
	Operation  string `json:"operationName"`
	ProcessID  string `json:"processID"`
	References []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []jaegerKV `json:"tags"`
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string     `json:"serviceName"`
		Tags        []jaegerKV `json:"tags"`
	} `json:"processes"`
}

func tag(kvs []jaegerKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// jaegerTraces queries Jaeger's HTTP API through the API server's service proxy.
func jaegerTraces(ctx context.Context, params map[string]string) ([]jaegerTrace, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := env.kube.CoreV1().Services(tracingNS).ProxyGet("http", "jaeger", "16686", "api/traces", params).DoRaw(qctx)
	if err != nil {
		return nil, fmt.Errorf("querying Jaeger: %w", err)
	}
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("reading Jaeger's answer: %w (%.200s)", err, b)
	}
	return out.Data, nil
}

// hop is one span of a trace with what the chain check needs.
type hop struct {
	id, parent, kind, workload string
}

// demoChain finds, in one trace, the path of one demo request through four proxies:
// load's client span -> web's server span -> web's client span -> grpc's server span,
// and the same web server span -> a web client span -> a backend server span. Each
// link is a CHILD_OF reference to the span before it. It returns the path it found, or
// why there is none.
func (tr jaegerTrace) demoChain() (string, error) {
	byID := map[string]hop{}
	for _, s := range tr.Spans {
		p := tr.Processes[s.ProcessID]
		h := hop{id: s.SpanID, kind: tag(s.Tags, "span.kind"), workload: tag(p.Tags, "k8s.deployment.name")}
		if tag(p.Tags, "k8s.namespace.name") != demoNS {
			continue
		}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				h.parent = r.SpanID
			}
		}
		byID[s.SpanID] = h
	}
	// up checks that h's parent is a span of kind and workload (by prefix) and
	// returns it.
	up := func(h hop, kind, workload string) (hop, bool) {
		p, ok := byID[h.parent]
		return p, ok && p.kind == kind && strings.HasPrefix(p.workload, workload)
	}
	var found []string
	for _, target := range []string{"grpc", "backend"} {
		ok := false
		for _, h := range byID {
			if h.kind != "server" || !strings.HasPrefix(h.workload, target) {
				continue
			}
			webClient, ok1 := up(h, "client", "web")
			webServer, ok2 := up(webClient, "server", "web")
			load, ok3 := up(webServer, "client", "load")
			if ok1 && ok2 && ok3 {
				found = append(found, fmt.Sprintf("load client %s -> web server %s -> web client %s -> %s server %s (%s)",
					load.id, webServer.id, webClient.id, target, h.id, h.workload))
				ok = true
				break
			}
		}
		if !ok {
			kinds := map[string]int{}
			for _, h := range byID {
				kinds[h.workload+"/"+h.kind]++
			}
			return "", fmt.Errorf("trace %s (%d spans of the demo: %v) has no linked path load -> web -> %s", tr.TraceID, len(byID), kinds, target)
		}
	}
	return strings.Join(found, "; "), nil
}
