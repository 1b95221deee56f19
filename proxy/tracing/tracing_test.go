package tracing

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/proxy/api"
)

// receiver is a real OTLP/gRPC collector (grpc-go's server with the OTLP service
// definition), keeping every span it receives.
type receiver struct {
	collectorpb.UnimplementedTraceServiceServer
	addr string
	mu   sync.Mutex
	reqs []*collectorpb.ExportTraceServiceRequest
	// reject, when set, is the partial-success count of every answer.
	reject int64
	got    chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{addr: ln.Addr().String(), got: make(chan struct{}, 1024)}
	s := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return r
}

func (r *receiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	reject := r.reject
	r.mu.Unlock()
	r.got <- struct{}{}
	resp := &collectorpb.ExportTraceServiceResponse{}
	if reject > 0 {
		resp.PartialSuccess = &collectorpb.ExportTracePartialSuccess{RejectedSpans: reject, ErrorMessage: "no"}
	}
	return resp, nil
}

// spans waits until the receiver holds n spans and returns them.
func (r *receiver) spans(t *testing.T, n int) []*tracepb.Span {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		var out []*tracepb.Span
		for _, req := range r.reqs {
			for _, rs := range req.GetResourceSpans() {
				for _, ss := range rs.GetScopeSpans() {
					out = append(out, ss.GetSpans()...)
				}
			}
		}
		r.mu.Unlock()
		if len(out) >= n {
			return out
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("receiver has %d spans, want %d", len(out), n)
		}
	}
}

func fastOptions() Options {
	return Options{BatchInterval: 20 * time.Millisecond, ExportTimeout: 300 * time.Millisecond, Backoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
}

func request(kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://web.shop:8080/api/items?id=7", nil)
	for i := 0; i < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	return r
}

func TestOffDoesNothing(t *testing.T) {
	tr := New(Options{})
	r := request("traceparent", "00-"+tid32+"-"+sid+"-01")
	if n := testing.AllocsPerRun(100, func() {
		if tr.Start(Client, r) != nil {
			t.Fatal("a span while off")
		}
	}); n != 0 {
		t.Fatalf("Start allocates %v times per request while off", n)
	}
	var nilTracer *Tracer
	if nilTracer.Start(Server, r) != nil || nilTracer.Enabled() {
		t.Fatal("a nil tracer traced")
	}
	if got := r.Header.Get("traceparent"); got != "00-"+tid32+"-"+sid+"-01" {
		t.Fatalf("traceparent changed while off: %q", got)
	}
}

func TestSampling(t *testing.T) {
	rcv := newReceiver(t)
	for _, tc := range []struct {
		name     string
		perM     uint32
		headers  []string
		n        int
		min, max int // sampled requests
		unchange bool
	}{
		{name: "rate 0, no parent", perM: 0, n: 2000, min: 0, max: 0},
		{name: "rate 100%, no parent", perM: 1_000_000, n: 2000, min: 2000, max: 2000},
		// 1% of 20,000 is 200; ±5 standard deviations (sd ~14) is 130..270.
		{name: "rate 1%, no parent", perM: 10_000, n: 20000, min: 130, max: 270},
		{name: "rate 0, parent sampled", perM: 0, headers: []string{"traceparent", "00-" + tid32 + "-" + sid + "-01"}, n: 500, min: 500, max: 500},
		{name: "rate 100%, parent unsampled", perM: 1_000_000, headers: []string{"traceparent", "00-" + tid32 + "-" + sid + "-00"}, n: 500, min: 0, max: 0, unchange: true},
		{name: "rate 100%, b3 parent unsampled", perM: 1_000_000, headers: []string{"b3", tid32 + "-" + sid + "-0"}, n: 500, min: 0, max: 0, unchange: true},
		{name: "rate 0, b3 debug", perM: 0, headers: []string{"X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-Flags", "1"}, n: 500, min: 500, max: 500},
		{name: "rate 100%, b3 deferred", perM: 1_000_000, headers: []string{"X-B3-TraceId", tid32, "X-B3-SpanId", sid}, n: 500, min: 500, max: 500},
		{name: "rate 0, b3 deferred", perM: 0, headers: []string{"X-B3-TraceId", tid32, "X-B3-SpanId", sid}, n: 500, min: 0, max: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(Options{QueueSize: 1})
			defer tr.Close()
			tr.Update(&api.Tracing{Collector: rcv.addr, SamplingPerMillion: tc.perM})
			sampled := 0
			for range tc.n {
				r := request(tc.headers...)
				before := r.Header.Clone()
				if s := tr.Start(Client, r); s != nil {
					sampled++
					if c, ok := Extract(r.Header); !ok || !c.Sampled || c.SpanID != s.SpanID || c.TraceID != s.TraceID {
						t.Fatalf("the outgoing context is not the span's: %+v", c)
					}
				} else if tc.unchange {
					for k := range before {
						if before.Get(k) != r.Header.Get(k) {
							t.Fatalf("unsampled request's %s changed", k)
						}
					}
				} else if c, ok := Extract(r.Header); !ok || !c.Decided || c.Sampled {
					// A decision this proxy made goes on to the next hop.
					t.Fatalf("unsampled request carries %+v, ok=%v", c, ok)
				}
			}
			if sampled < tc.min || sampled > tc.max {
				t.Fatalf("sampled %d of %d, want %d..%d", sampled, tc.n, tc.min, tc.max)
			}
		})
	}
}

func attrs(s *tracepb.Span) map[string]any {
	m := map[string]any{}
	for _, kv := range s.GetAttributes() {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		default:
			m[kv.GetKey()] = kv.GetValue().GetIntValue()
		}
	}
	return m
}

func TestExportSpanContents(t *testing.T) {
	rcv := newReceiver(t)
	tr := New(fastOptions())
	defer tr.Close()
	tr.Update(&api.Tracing{Collector: rcv.addr, SamplingPerMillion: 1_000_000, ServiceName: "web",
		Attributes: []*api.Attribute{{Key: "k8s.namespace.name", Value: "shop"}, {Key: "k8s.pod.name", Value: "web-1"}}})

	out := tr.Start(Client, request("traceparent", "00-"+tid32+"-"+sid+"-01"))
	out.SetRoute("shop/web/0")
	out.SetPeer("spiffe://cluster.local/ns/shop/sa/api", "10.0.0.7:8080")
	out.SetStatus(503, -1)
	tr.Finish(out)
	in := tr.Start(Server, request("Content-Type", "application/grpc"))
	in.SetStatus(200, 14)
	tr.Finish(in)
	ok := tr.Start(Server, request())
	ok.SetStatus(404, -1)
	tr.Finish(ok)

	spans := rcv.spans(t, 3)
	rcv.mu.Lock()
	res := rcv.reqs[0].GetResourceSpans()[0].GetResource()
	rcv.mu.Unlock()
	wantRes := map[string]string{"service.name": "web", "k8s.namespace.name": "shop", "k8s.pod.name": "web-1"}
	for _, kv := range res.GetAttributes() {
		if wantRes[kv.GetKey()] != kv.GetValue().GetStringValue() {
			t.Errorf("resource %s = %q", kv.GetKey(), kv.GetValue().GetStringValue())
		}
		delete(wantRes, kv.GetKey())
	}
	if len(wantRes) != 0 {
		t.Errorf("resource attributes missing: %v", wantRes)
	}
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[string(s.GetSpanId())] = s
	}
	c := byID[string(out.SpanID[:])]
	if c == nil {
		t.Fatal("client span missing")
	}
	if c.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || TraceID(c.GetTraceId()).String() != tid32 || SpanID(c.GetParentSpanId()).String() != sid {
		t.Errorf("client span ids/kind: %v %x %x", c.GetKind(), c.GetTraceId(), c.GetParentSpanId())
	}
	if c.GetName() != "/api/items" || c.GetEndTimeUnixNano() < c.GetStartTimeUnixNano() || c.GetStartTimeUnixNano() == 0 {
		t.Errorf("client span name %q times %d..%d", c.GetName(), c.GetStartTimeUnixNano(), c.GetEndTimeUnixNano())
	}
	want := map[string]any{"direction": "outbound", "http.request.method": "GET", "url.scheme": "http", "url.path": "/api/items",
		"url.query": "id=7", "server.address": "web.shop", "server.port": int64(8080), "http.response.status_code": int64(503),
		"http.route": "shop/web/0", "weft.peer.identity": "spiffe://cluster.local/ns/shop/sa/api", "network.peer.address": "10.0.0.7:8080"}
	got := attrs(c)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("client span %s = %v, want %v", k, got[k], v)
		}
	}
	if c.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("503: status %v", c.GetStatus())
	}
	s := byID[string(in.SpanID[:])]
	if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || len(s.GetParentSpanId()) != 0 || attrs(s)["direction"] != "inbound" || attrs(s)["rpc.grpc.status_code"] != int64(14) {
		t.Errorf("server span: kind %v parent %x attrs %v", s.GetKind(), s.GetParentSpanId(), attrs(s))
	}
	if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("grpc-status 14: span status %v", s.GetStatus())
	}
	if st := byID[string(ok.SpanID[:])].GetStatus().GetCode(); st != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("404: span status %v, want unset", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Exported() != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if tr.Exported() != 3 || tr.Dropped() != 0 {
		t.Errorf("exported %d dropped %d, want 3 and 0", tr.Exported(), tr.Dropped())
	}
}

func TestRejectedSpansCounted(t *testing.T) {
	rcv := newReceiver(t)
	rcv.reject = 1
	tr := New(fastOptions())
	defer tr.Close()
	tr.Update(&api.Tracing{Collector: rcv.addr, SamplingPerMillion: 1_000_000})
	for range 2 {
		s := tr.Start(Client, request())
		s.SetStatus(200, -1)
		tr.Finish(s)
	}
	rcv.spans(t, 2)
	deadline := time.Now().Add(5 * time.Second)
	for tr.Exported()+tr.dropped[dropRejected].Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if tr.dropped[dropRejected].Load() == 0 {
		t.Fatalf("rejected spans not counted: exported %d", tr.Exported())
	}
}

// TestUnreachableCollector: a stalled collector (accepts TCP, never answers) and an
// absent one cost requests nothing: Start and Finish never wait, the spans beyond the
// queue are dropped and counted, and the queue never holds more than its bound.
func TestUnreachableCollector(t *testing.T) {
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	absent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	absentAddr := absent.Addr().String()
	absent.Close()

	for _, tc := range []struct{ name, addr string }{{"stalled", stalled.Addr().String()}, {"absent", absentAddr}} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions()
			o.ExportTimeout = 2 * time.Second // a wait on it would stand out
			o.QueueSize = 64
			o.BatchSize = 16
			tr := New(o)
			defer tr.Close()
			tr.Update(&api.Tracing{Collector: tc.addr, SamplingPerMillion: 1_000_000})
			const n = 20000
			var worst time.Duration
			start := time.Now()
			for range n {
				t0 := time.Now()
				s := tr.Start(Client, request())
				s.SetStatus(200, -1)
				tr.Finish(s)
				worst = max(worst, time.Since(t0))
				if q := len(tr.cur.Load().exp.queue); q > o.QueueSize {
					t.Fatalf("queue holds %d spans, bound %d", q, o.QueueSize)
				}
			}
			total := time.Since(start)
			// Each request's tracing is microseconds of CPU; a wait on the collector
			// would be the export timeout (2s) or more. (The worst case allows for
			// a scheduler pause on a loaded 2-core machine.)
			if worst > time.Second || total > 10*time.Second {
				t.Fatalf("tracing delayed requests: worst %v, %d requests in %v", worst, n, total)
			}
			if tr.Exported() != 0 {
				t.Fatalf("exported %d to an unreachable collector", tr.Exported())
			}
			// Every span is accounted for: dropped (queue full, or with its failed
			// batch), or still queued, or in the batch being tried.
			if d := tr.Dropped(); d > n || d < n-uint64(o.QueueSize)-uint64(o.BatchSize) || tr.dropped[dropQueueFull].Load() == 0 {
				t.Fatalf("dropped %d of %d (queue full %d)", d, n, tr.dropped[dropQueueFull].Load())
			}
			t.Logf("%d requests in %v (worst %v); dropped queue_full %d, export_failed %d", n, total, worst,
				tr.dropped[dropQueueFull].Load(), tr.dropped[dropExportFailed].Load())
		})
	}
}

func TestUpdateLive(t *testing.T) {
	a, b := newReceiver(t), newReceiver(t)
	tr := New(fastOptions())
	defer tr.Close()
	tr.Update(&api.Tracing{Collector: a.addr, SamplingPerMillion: 1_000_000})
	exp := tr.cur.Load().exp
	tr.Finish(tr.Start(Client, request()))
	a.spans(t, 1)

	// A new rate keeps the exporter; 0 samples nothing.
	tr.Update(&api.Tracing{Collector: a.addr, SamplingPerMillion: 0})
	if tr.cur.Load().exp != exp {
		t.Fatal("a rate change replaced the exporter")
	}
	if tr.Start(Client, request()) != nil {
		t.Fatal("sampled at rate 0")
	}
	// A new collector gets the spans from then on.
	tr.Update(&api.Tracing{Collector: b.addr, SamplingPerMillion: 1_000_000})
	s := tr.Start(Client, request())
	tr.Update(&api.Tracing{Collector: b.addr, SamplingPerMillion: 1_000_000, ServiceName: "renamed"})
	tr.Finish(s)
	b.spans(t, 1)
	// Off: no span, nothing rewritten; a span begun before is dropped as such.
	s = tr.Start(Client, request())
	tr.Update(nil)
	if tr.Enabled() || tr.Start(Client, request()) != nil {
		t.Fatal("still tracing after the configuration was removed")
	}
	tr.Finish(s)
	if tr.dropped[dropDisabled].Load() != 1 {
		t.Fatalf("dropped (disabled) %d, want 1", tr.dropped[dropDisabled].Load())
	}
	select {
	case <-exp.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced exporter's goroutine did not end")
	}
}

func TestWriteMetrics(t *testing.T) {
	tr := New(Options{})
	tr.dropped[dropQueueFull].Add(3)
	tr.exported.Add(2)
	var b strings.Builder
	tr.WriteMetrics(&b)
	for _, want := range []string{
		"weft_tracing_spans_exported_total 2\n",
		`weft_tracing_spans_dropped_total{reason="queue_full"} 3` + "\n",
		`weft_tracing_spans_dropped_total{reason="export_failed"} 0` + "\n",
		"weft_tracing_enabled 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}
