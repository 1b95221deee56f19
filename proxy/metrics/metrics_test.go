package metrics

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/internal/promtext"
)

func TestHistogramAndLabels(t *testing.T) {
	r := New()
	r.CertExpiry = func() time.Time { return time.Unix(1700000000, 0) }
	s := r.HTTP(HTTPKey{Dir: Outbound, Authority: "web.ns.svc:80", PeerID: "spiffe://td/ns/b/sa/web"})
	s.Request()
	s.Request()
	s.Response(200, false, 3*time.Millisecond)  // le=3
	s.Response(503, true, 120*time.Millisecond) // le=200
	s.Response(200, false, 60*time.Second)      // +Inf only
	in := r.HTTP(HTTPKey{Dir: Inbound, Authority: `we"ird`})
	in.Request()
	tcp := r.TCP(TCPKey{Dir: Inbound, Peer: Src, PeerID: "spiffe://td/ns/a/sa/c"})
	tcp.Open()
	tcp.AddBytes(10, 20)
	tcp.Close(5, 5, "ECONNRESET")
	r.DetectTimeouts[Outbound].Add(2)

	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	out200 := `direction="outbound",authority="web.ns.svc:80",tls="true",server_id="spiffe://td/ns/b/sa/web",status_code="200"`
	tests := []struct {
		name string
		line string
	}{
		{"request total with server_id", `request_total{direction="outbound",authority="web.ns.svc:80",tls="true",server_id="spiffe://td/ns/b/sa/web"} 2`},
		{"unauthenticated inbound with escaped authority", `request_total{direction="inbound",authority="we\"ird",tls="no_identity"} 1`},
		{"success response", `response_total{` + out200 + `,classification="success"} 2`},
		{"failure response", `response_total{direction="outbound",authority="web.ns.svc:80",tls="true",server_id="spiffe://td/ns/b/sa/web",status_code="503",classification="failure"} 1`},
		{"bucket below", `response_latency_ms_bucket{` + out200 + `,le="2"} 0`},
		{"bucket at 3ms", `response_latency_ms_bucket{` + out200 + `,le="3"} 1`},
		{"last finite bucket", `response_latency_ms_bucket{` + out200 + `,le="50000"} 1`},
		{"inf bucket", `response_latency_ms_bucket{` + out200 + `,le="+Inf"} 2`},
		{"count", `response_latency_ms_count{` + out200 + `} 2`},
		{"sum in ms", `response_latency_ms_sum{` + out200 + `} 60003`},
		{"tcp open", `tcp_open_total{direction="inbound",peer="src",tls="true",client_id="spiffe://td/ns/a/sa/c"} 1`},
		{"tcp gauge back to zero", `tcp_open_connections{direction="inbound",peer="src",tls="true",client_id="spiffe://td/ns/a/sa/c"} 0`},
		{"tcp read bytes", `tcp_read_bytes_total{direction="inbound",peer="src",tls="true",client_id="spiffe://td/ns/a/sa/c"} 15`},
		{"tcp close errno", `tcp_close_total{direction="inbound",peer="src",tls="true",client_id="spiffe://td/ns/a/sa/c",errno="ECONNRESET"} 1`},
		{"detect timeouts", `weft_detect_timeout_total{direction="outbound"} 2`},
		{"cert expiry", `identity_cert_expiration_timestamp_seconds 1700000000`},
		{"histogram type", `# TYPE response_latency_ms histogram`},
		{"process start", `# TYPE process_start_time_seconds gauge`},
		{"process cpu", `# TYPE process_cpu_seconds_total counter`},
		{"process rss", `# TYPE process_resident_memory_bytes gauge`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(out, tt.line+"\n") {
				t.Fatalf("missing line %q in:\n%s", tt.line, out)
			}
		})
	}
}

// The hot path must not allocate once a series exists.
func TestHotPathDoesNotAllocate(t *testing.T) {
	r := New()
	k := HTTPKey{Dir: Outbound, Authority: "a:80", PeerID: "spiffe://td/ns/b/sa/c"}
	r.HTTP(k).Response(200, false, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		s := r.HTTP(k)
		s.Request()
		s.Response(200, false, time.Millisecond)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}

func TestSeriesAreBounded(t *testing.T) {
	r := New()
	for i := 0; i < MaxHTTPSeries+500; i++ {
		r.HTTP(HTTPKey{Dir: Outbound, Authority: "host-" + strconv.Itoa(i) + ":80"}).Request()
	}
	if n := len(r.http); n > MaxHTTPSeries+1 {
		t.Fatalf("%d series, want at most %d", n, MaxHTTPSeries+1)
	}
	var b strings.Builder
	r.WriteText(&b)
	if !strings.Contains(b.String(), `request_total{direction="outbound",authority="overflow",tls="no_identity"} 500`) {
		t.Fatal("overflow requests not counted")
	}
}

// TestExpositionParsesWithPrometheus: the whole exposition, with every family in use
// and a collector's output, is read by Prometheus' own parser, and every family follows
// the naming rule (Linkerd's names or weft_*).
func TestExpositionParsesWithPrometheus(t *testing.T) {
	r := New()
	r.CertExpiry = func() time.Time { return time.Unix(1700000000, 0) }
	s := r.HTTP(HTTPKey{Dir: Outbound, Authority: "web.ns.svc:80", PeerID: "spiffe://td/ns/b/sa/web"})
	s.Request()
	s.Response(200, false, 3*time.Millisecond)
	r.HTTP(HTTPKey{Dir: Inbound, Authority: "we\"ird\\\n"}).Request()
	tcp := r.TCP(TCPKey{Dir: Inbound, Peer: Src})
	tcp.Open()
	tcp.Close(1, 2, "EPIPE")
	rs := r.Route(RouteKey{Dir: Outbound, Authority: "web.ns.svc:80", Route: "r"})
	rs.Request()
	rs.Response(503, true, time.Second)
	r.Mirror(MirrorKey{Authority: "web.ns.svc:80", Backend: "shadow.ns.svc:80"}).Count(MirrorSent)
	r.AddCollector(func(w io.Writer) {
		pw := promtext.NewWriter(w)
		pw.Family("weft_collected", promtext.Gauge, "From a collector.")
		pw.Uint("weft_collected", promtext.L("k", "v"), 3)
	})
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the exposition: %v\n%s", err, b.String())
	}
	for name := range fams {
		if err := promtext.CheckName(name); err != nil {
			t.Error(err)
		}
	}
	for _, want := range []string{"request_total", "response_latency_ms", "route_response_latency_ms", "tcp_close_total",
		"identity_cert_expiration_timestamp_seconds", "weft_collected", "process_start_time_seconds", "weft_mirror_requests_total"} {
		if fams[want] == nil {
			t.Errorf("family %s missing", want)
		}
	}
	h := fams["route_response_latency_ms"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 1000 {
		t.Errorf("route latency histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
}

// TestMisnamedCollectorFailsTheScrape: a collector's bare name is refused.
func TestMisnamedCollectorFailsTheScrape(t *testing.T) {
	r := New()
	r.AddCollector(func(w io.Writer) {
		pw := promtext.NewWriter(w)
		pw.Family("balancer_endpoints", promtext.Gauge, "bare")
	})
	if err := r.WriteText(io.Discard); err == nil {
		t.Fatal("a bare metric name was exported")
	}
}

func TestMirrorSeriesAreBounded(t *testing.T) {
	r := New()
	for i := range MaxMirrorSeries + 100 {
		r.Mirror(MirrorKey{Authority: "web:80", Backend: "m-" + strconv.Itoa(i) + ":80"}).Count(MirrorOverloaded)
	}
	if n := len(r.mirrors); n > MaxMirrorSeries+1 {
		t.Fatalf("%d series, want at most %d", n, MaxMirrorSeries+1)
	}
	var b strings.Builder
	r.WriteText(&b)
	for _, want := range []string{
		`weft_mirror_requests_total{direction="outbound",authority="overflow",backend="overflow",outcome="overloaded"} 100`,
		`weft_mirror_requests_total{direction="outbound",authority="web:80",backend="m-0:80",outcome="sent"} 0`,
		`weft_mirror_requests_total{direction="outbound",authority="web:80",backend="m-0:80",outcome="overloaded"} 1`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %s", want)
		}
	}
}
