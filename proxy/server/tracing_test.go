package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/server"
	"github.com/weftmesh/weft/proxy/tracing"
)

// Distributed tracing (issue 20) through real proxies over real sockets: an app's
// request through its outbound proxy A and the server's inbound proxy B to the server
// app, both proxies reporting to a real OTLP/gRPC receiver (grpc-go's server with the
// OpenTelemetry collector's service definition).

const svcTraced = "10.96.2.1:80"

// otlpReceiver keeps every span a proxy exports.
type otlpReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	addr string
	mu   sync.Mutex
	rs   []*tracepb.ResourceSpans
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln := listen(t)
	r := &otlpReceiver{addr: ln.Addr().String()}
	s := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	r.rs = append(r.rs, req.GetResourceSpans()...)
	r.mu.Unlock()
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// receivedSpan is a span with its resource's service.name.
type receivedSpan struct {
	service string
	*tracepb.Span
}

// trace waits for n spans of trace id and returns them.
func (r *otlpReceiver) trace(t *testing.T, id tracing.TraceID, n int) []receivedSpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []receivedSpan
		r.mu.Lock()
		for _, rs := range r.rs {
			svc := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					svc = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if tracing.TraceID(s.GetTraceId()) == id {
						out = append(out, receivedSpan{svc, s})
					}
				}
			}
		}
		r.mu.Unlock()
		if len(out) >= n || time.Now().After(deadline) {
			if len(out) != n {
				t.Fatalf("trace %s: %d spans received, want %d", id, len(out), n)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *otlpReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rs := range r.rs {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// tracedPair is client proxy A (namespace a) and server proxy B (namespace b) in front
// of app, with tracing to collector at perMillion.
type tracedPair struct {
	a, b   *proxy
	addr   string // what the client app dials
	policy func(tr *api.Tracing)
}

// appSeen is the trace context the server app received, per request path.
type appSeen struct {
	mu  sync.Mutex
	ctx map[string]http.Header
}

func startTracedPair(t *testing.T, app http.Handler, tr *api.Tracing, mods ...func(*server.Options)) *tracedPair {
	t.Helper()
	ca := newMeshPair(t, pairOpts{}).ca // a CA (the pair itself is not used)
	backend := serveHTTP(t, app)
	fast := func(o *server.Options) {
		o.Tracing = tracing.Options{BatchInterval: 20 * time.Millisecond, ExportTimeout: time.Second}
	}
	b := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca), append([]func(*server.Options){fast}, mods...)...)
	cfg := &config.Config{
		DetectTimeout: config.Duration{Duration: 10 * time.Second},
		Destinations: []config.Destination{{Name: svcTraced, Addresses: []string{svcTraced},
			Endpoints: []config.Endpoint{endpoint(backend, b, spiffe("b", serverSA))}}},
	}
	a := startProxy(t, cfg, newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), append([]func(*server.Options){fast}, mods...)...)
	p := &tracedPair{a: a, b: b, addr: a.outbound(svcTraced)}
	p.policy = func(tr *api.Tracing) {
		withService := func(svc string) *api.Tracing {
			if tr == nil {
				return nil
			}
			c := proto.Clone(tr).(*api.Tracing)
			c.ServiceName = svc
			return c
		}
		a.srv.SetInboundPolicy(&api.InboundPolicy{Version: "a", DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}, Tracing: withService("client")})
		b.srv.SetInboundPolicy(&api.InboundPolicy{Version: "b", DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}},
			Servers: []*api.InboundServer{portServer("web", backend, admitAll)}, Tracing: withService("server")})
	}
	p.policy(tr)
	return p
}

func (s *appSeen) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ctx[r.URL.Path] = r.Header.Clone()
		s.mu.Unlock()
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/grpcfail":
			// A gRPC failure in trailers, after a 200 head and a body.
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte{0, 0, 0, 0, 0})
			w.Header().Set("Grpc-Status", "14")
		default:
			io.WriteString(w, "ok")
		}
	})
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
				return v.StringValue
			}
			return fmt.Sprint(kv.GetValue().GetIntValue())
		}
	}
	return ""
}

// TestTracingThroughPair: the client app's span → A's client span → B's server span →
// the server app, linked parent to child across both proxies, in W3C and both B3
// forms, and a trace the proxy starts itself; spans carry the route, the peers'
// identities and the status, and a 5xx is an error.
func TestTracingThroughPair(t *testing.T) {
	rcv := startReceiver(t)
	seen := &appSeen{ctx: map[string]http.Header{}}
	p := startTracedPair(t, seen.handler(), &api.Tracing{Collector: rcv.addr, SamplingPerMillion: 1_000_000})
	appSpan := "00f067aa0ba902b7"
	for _, tc := range []struct {
		name   string
		path   string
		header []string
		// read is how the server app reads its context.
		read   func(http.Header) (tracing.Context, bool)
		status int
		root   bool // the proxy started the trace
		h2c    bool // the app speaks HTTP/2 (prior knowledge) to its proxy
	}{
		{name: "w3c", path: "/w3c", header: []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-" + appSpan + "-01", "tracestate", "app=1"}, status: 200},
		{name: "w3c over h2c", path: "/w3ch2c", header: []string{"traceparent", "00-7bf92f3577b34da6a3ce929d0e0e4736-" + appSpan + "-01"}, status: 200, h2c: true},
		{name: "grpc failure in trailers", path: "/grpcfail", header: []string{"traceparent", "00-8bf92f3577b34da6a3ce929d0e0e4736-" + appSpan + "-01"}, status: 200, h2c: true},
		{name: "b3 multi, 64-bit", path: "/b3multi", header: []string{"X-B3-TraceId", "a3ce929d0e0e4736", "X-B3-SpanId", appSpan, "X-B3-Sampled", "1"}, status: 200},
		{name: "b3 single", path: "/b3single", header: []string{"b3", "5bf92f3577b34da6a3ce929d0e0e4736-" + appSpan + "-1"}, status: 200},
		{name: "started by the proxy", path: "/root", root: true, status: 200},
		{name: "5xx", path: "/fail", header: []string{"traceparent", "00-6bf92f3577b34da6a3ce929d0e0e4736-" + appSpan + "-01"}, status: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+tc.path+"?q=1", nil)
			req.Host = "web.b.svc.cluster.local"
			for i := 0; i < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			c := h1Client()
			if tc.h2c {
				c = h2cClient()
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if tc.h2c && resp.ProtoMajor != 2 {
				t.Fatalf("answered over HTTP/%d, want 2", resp.ProtoMajor)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			seen.mu.Lock()
			got := seen.ctx[tc.path]
			seen.mu.Unlock()
			app, ok := tracing.Extract(got)
			if !ok || !app.Sampled {
				t.Fatalf("the server app got no sampled context: %v", got)
			}
			if tc.header != nil {
				in, _ := tracing.Extract(req.Header)
				if app.Format != in.Format || app.TraceID != in.TraceID {
					t.Fatalf("the app's context %+v is not the client's trace %+v", app, in)
				}
			}
			if tc.name == "w3c" && got.Get("Tracestate") != "app=1" {
				t.Errorf("tracestate %q, want it carried through", got.Get("Tracestate"))
			}
			spans := rcv.trace(t, app.TraceID, 2)
			var client, srv receivedSpan
			for _, s := range spans {
				switch s.GetKind() {
				case tracepb.Span_SPAN_KIND_CLIENT:
					client = s
				case tracepb.Span_SPAN_KIND_SERVER:
					srv = s
				}
			}
			if client.Span == nil || srv.Span == nil || client.service != "client" || srv.service != "server" {
				t.Fatalf("want a client span from A and a server span from B, got %v", spans)
			}
			// The links: app → A → B → server app.
			if tracing.SpanID(srv.GetSpanId()) != app.SpanID {
				t.Errorf("the server app's parent %s is not B's span %x", app.SpanID, srv.GetSpanId())
			}
			if string(srv.GetParentSpanId()) != string(client.GetSpanId()) {
				t.Errorf("B's parent %x is not A's span %x", srv.GetParentSpanId(), client.GetSpanId())
			}
			if tc.root {
				if len(client.GetParentSpanId()) != 0 {
					t.Errorf("A started the trace, yet its span has parent %x", client.GetParentSpanId())
				}
			} else if tracing.SpanID(client.GetParentSpanId()).String() != appSpan {
				t.Errorf("A's parent %x is not the client app's span %s", client.GetParentSpanId(), appSpan)
			}
			for _, s := range []receivedSpan{client, srv} {
				if attr(s.Span, "url.path") != tc.path || attr(s.Span, "http.request.method") != "GET" ||
					attr(s.Span, "http.response.status_code") != fmt.Sprint(tc.status) || attr(s.Span, "server.address") != "web.b.svc.cluster.local" {
					t.Errorf("%v span attributes %v", s.GetKind(), s.GetAttributes())
				}
				wantErr := tc.status >= 500 || tc.path == "/grpcfail"
				if tc.path == "/grpcfail" && attr(s.Span, "rpc.grpc.status_code") != "14" {
					t.Errorf("%v span rpc.grpc.status_code %q, want 14", s.GetKind(), attr(s.Span, "rpc.grpc.status_code"))
				}
				if (s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR) != wantErr {
					t.Errorf("%v span status %v, want error %v", s.GetKind(), s.GetStatus(), wantErr)
				}
			}
			if attr(client.Span, "direction") != "outbound" || attr(client.Span, "weft.peer.identity") != spiffe("b", serverSA) || attr(client.Span, "http.route") == "" {
				t.Errorf("client span attributes %v", client.GetAttributes())
			}
			if attr(srv.Span, "direction") != "inbound" || attr(srv.Span, "weft.peer.identity") != spiffe("a", clientSA) {
				t.Errorf("server span attributes %v", srv.GetAttributes())
			}
		})
	}
	if v := counter(p.a.metricsText(), "weft_tracing_spans_exported_total"); v < 7 {
		t.Errorf("A's weft_tracing_spans_exported_total = %v, want 7", v)
	}
}

// counter is a label-less series' value, or -1.
func counter(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestTracingSwitchesLive: tracing switched on, re-pointed and off by policy updates
// while requests flow: none fails, spans go to the collector in force, none after off.
func TestTracingSwitchesLive(t *testing.T) {
	r1, r2 := startReceiver(t), startReceiver(t)
	seen := &appSeen{ctx: map[string]http.Header{}}
	p := startTracedPair(t, seen.handler(), nil)
	var failures, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + p.addr + "/x")
				sent.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	step := func() { time.Sleep(300 * time.Millisecond) }
	step()
	p.policy(&api.Tracing{Collector: r1.addr, SamplingPerMillion: 1_000_000})
	step()
	p.policy(&api.Tracing{Collector: r2.addr, SamplingPerMillion: 1_000_000})
	step()
	p.policy(nil)
	step()
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed across the switches", failures.Load(), sent.Load())
	}
	time.Sleep(200 * time.Millisecond) // the last batches
	n1, n2 := r1.count(), r2.count()
	if n1 == 0 || n2 == 0 {
		t.Fatalf("spans: first collector %d, second %d; want both", n1, n2)
	}
	time.Sleep(300 * time.Millisecond)
	if r1.count() != n1 || r2.count() != n2 {
		t.Fatalf("spans kept coming after tracing was switched off")
	}
	if p.a.srv.Tracer().Enabled() || p.b.srv.Tracer().Enabled() {
		t.Fatal("tracer still on")
	}
	t.Logf("%d requests, spans %d then %d", sent.Load(), n1, n2)
}

// TestTracingStalledCollectorAddsNoLatency: with every request sampled and the
// collector stalled (it accepts connections and never answers) or absent, requests
// take as long as with tracing off (p50 within noise), and the spans are dropped and
// counted.
func TestTracingStalledCollectorAddsNoLatency(t *testing.T) {
	stalled := listen(t)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	gone := listen(t)
	goneAddr := gone.Addr().String()
	gone.Close()

	seen := &appSeen{ctx: map[string]http.Header{}}
	small := func(o *server.Options) {
		o.Tracing = tracing.Options{QueueSize: 32, BatchSize: 8, BatchInterval: 10 * time.Millisecond, ExportTimeout: 2 * time.Second}
	}
	p := startTracedPair(t, seen.handler(), nil, small)
	c := h1Client()
	p50 := func() time.Duration {
		const n = 300
		lat := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			resp, err := c.Get("http://" + p.addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat[n/2]
	}
	p50() // warm the connections
	off := p50()
	for _, tc := range []struct{ name, addr string }{{"stalled", stalled.Addr().String()}, {"absent", goneAddr}} {
		t.Run(tc.name, func(t *testing.T) {
			p.policy(&api.Tracing{Collector: tc.addr, SamplingPerMillion: 1_000_000})
			before := counter(p.a.metricsText(), "weft_tracing_spans_exported_total")
			on := p50()
			p.policy(nil)
			// Within noise: the loopback round trip is a few hundred microseconds, a
			// wait on the collector would be its 2s timeout.
			if on > 2*off+2*time.Millisecond {
				t.Fatalf("p50 %v with the collector %s, %v with tracing off", on, tc.name, off)
			}
			text := p.a.metricsText()
			dropped := metricValue(text, "weft_tracing_spans_dropped_total", `reason="queue_full"`) + metricValue(text, "weft_tracing_spans_dropped_total", `reason="export_failed"`)
			if dropped < 100 || counter(text, "weft_tracing_spans_exported_total") != before {
				t.Fatalf("dropped %v, exported %v", dropped, counter(text, "weft_tracing_spans_exported_total"))
			}
			t.Logf("p50 off %v, on (collector %s) %v; A dropped %v so far", off, tc.name, on, dropped)
		})
	}
}

// TestTracingFromConfigFile: the configuration file's tracing applies until the
// control plane's inbound policy arrives; from then on only the control plane's does,
// whatever a reload of the file says.
func TestTracingFromConfigFile(t *testing.T) {
	rcv := startReceiver(t)
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	cfg := &config.Config{Tracing: &config.Tracing{Collector: rcv.addr, SamplingPerMillion: 1_000_000, ServiceName: "static"}}
	p := startProxy(t, cfg, nil, func(o *server.Options) { o.Tracing = tracing.Options{BatchInterval: 10 * time.Millisecond} })
	addr := p.outbound(backend)
	get := func() {
		t.Helper()
		resp, err := h1Client().Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get()
	deadline := time.Now().Add(5 * time.Second)
	for rcv.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if rcv.count() != 1 {
		t.Fatalf("%d spans from the file's tracing, want 1", rcv.count())
	}
	p.srv.SetInboundPolicy(&api.InboundPolicy{Version: "cp"})
	p.srv.SetConfig(cfg)
	if p.srv.Tracer().Enabled() {
		t.Fatal("the file's tracing came back after the control plane's policy (without tracing)")
	}
	get()
	time.Sleep(100 * time.Millisecond)
	if rcv.count() != 1 {
		t.Fatalf("%d spans after the control plane switched tracing off", rcv.count())
	}
}
