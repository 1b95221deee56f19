package promtext

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads an exposition with Prometheus' own parser (a parser we did not write).
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the exposition: %v\n%s", err, text)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestWriterParsesWithPrometheus(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	nasty := "a\"b\\c\nd ü {x=\"y\"}"
	l := L("direction", "outbound", "authority", nasty)
	w.Family("request_total", Counter, "Total count of HTTP requests.\nWith a \\ in the help.")
	w.Uint("request_total", l, 7)
	w.Family("weft_destination_subscriptions", Gauge, `Destinations the proxy is subscribed to ("watched").`)
	w.Int("weft_destination_subscriptions", "", -3)
	w.Family("weft_ratio", Gauge, "A float.")
	w.Float("weft_ratio", L("k", "v"), 0.25)
	w.Float("weft_ratio", L("k", "inf"), math.Inf(1))
	w.Family("response_latency_ms", Histogram, "Latency.")
	w.Histogram("response_latency_ms", l.With("status_code", "200"), []float64{1, 2.5, 10}, []uint64{3, 0, 2, 1}, 41.5)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fams := parse(t, buf.String())

	req := fams["request_total"]
	if req.GetType() != dto.MetricType_COUNTER || req.GetHelp() != "Total count of HTTP requests.\nWith a \\ in the help." {
		t.Fatalf("request_total: %v %q", req.GetType(), req.GetHelp())
	}
	if got := labelsOf(req.Metric[0]); got["authority"] != nasty || got["direction"] != "outbound" {
		t.Fatalf("labels came back as %q", got)
	}
	if v := req.Metric[0].GetCounter().GetValue(); v != 7 {
		t.Fatalf("request_total = %v", v)
	}
	if v := fams["weft_destination_subscriptions"].Metric[0].GetGauge().GetValue(); v != -3 {
		t.Fatalf("gauge = %v", v)
	}
	ratio := fams["weft_ratio"].Metric
	if ratio[0].GetGauge().GetValue() != 0.25 || !math.IsInf(ratio[1].GetGauge().GetValue(), 1) {
		t.Fatalf("floats: %v", ratio)
	}
	h := fams["response_latency_ms"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.Metric) != 1 {
		t.Fatalf("histogram family %v with %d series", h.GetType(), len(h.Metric))
	}
	hist := h.Metric[0].GetHistogram()
	if hist.GetSampleCount() != 6 || hist.GetSampleSum() != 41.5 {
		t.Fatalf("count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	wantCum := []uint64{3, 3, 5, 6}
	wantLe := []float64{1, 2.5, 10, math.Inf(1)}
	if len(hist.Bucket) != len(wantCum) {
		t.Fatalf("%d buckets", len(hist.Bucket))
	}
	for i, b := range hist.Bucket {
		if b.GetCumulativeCount() != wantCum[i] || b.GetUpperBound() != wantLe[i] {
			t.Fatalf("bucket %d: le %v count %d, want le %v count %d", i, b.GetUpperBound(), b.GetCumulativeCount(), wantLe[i], wantCum[i])
		}
	}
	if got := labelsOf(h.Metric[0]); got["status_code"] != "200" || got["authority"] != nasty {
		t.Fatalf("histogram labels %q", got)
	}
}

func TestCheckName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"request_total", true},
		{"tcp_open_connections", true},
		{"process_cpu_seconds_total", true},
		{"weft_destination_subscriptions", true},
		{"destination_subscriptions", false},
		{"balancer_endpoints", false},
		{"weft-bad", false},
		{"9weft", false},
		{"", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckName(tc.name); (err == nil) != tc.ok {
				t.Fatalf("CheckName(%q) = %v, want ok %v", tc.name, err, tc.ok)
			}
		})
	}
}

// TestMisnamedFamilyFailsTheExposition: the rule is enforced where series are
// written, so a bare name cannot ship unnoticed.
func TestMisnamedFamilyFailsTheExposition(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Family("destination_subscriptions", Gauge, "Bare name.")
	w.Uint("destination_subscriptions", "", 1)
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "weft_") {
		t.Fatalf("Flush = %v, want the naming rule's error", err)
	}
}

func TestHistogramCountsMismatch(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Family("weft_h", Histogram, "h")
	w.Histogram("weft_h", "", []float64{1}, []uint64{1}, 0)
	if err := w.Flush(); err == nil {
		t.Fatal("a histogram with too few counts was accepted")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("gone") }

func TestWriteErrorIsReported(t *testing.T) {
	w := NewWriter(failWriter{})
	w.Family("weft_x", Counter, "x")
	w.Uint("weft_x", "", 1)
	if err := w.Flush(); err == nil {
		t.Fatal("a failed write was not reported")
	}
}

// TestNewWriterOfWriter: a collector handed the exposition's io.Writer writes into the
// same buffer, in order.
func TestNewWriterOfWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Family("weft_a", Counter, "a")
	w.Uint("weft_a", "", 1)
	func(out interface{ Write([]byte) (int, error) }) {
		c := NewWriter(out.(*Writer))
		c.Family("weft_b", Counter, "b")
		c.Uint("weft_b", "", 2)
	}(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if fams := parse(t, buf.String()); len(fams) != 2 {
		t.Fatalf("%d families", len(fams))
	}
}

func TestEscapeLabelValue(t *testing.T) {
	if got := EscapeLabelValue("a\\b\"c\nd"); got != `a\\b\"c\nd` {
		t.Fatalf("got %q", got)
	}
	if got := EscapeLabelValue("plain"); got != "plain" {
		t.Fatalf("got %q", got)
	}
}

// FuzzLabels: any label value survives escaping and Prometheus' parser unchanged.
func FuzzLabels(f *testing.F) {
	f.Add("web.shop.svc.cluster.local:80")
	f.Add("a\"b\\c\nd")
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8Valid(v) {
			return // the format is UTF-8; peers' strings are checked before they become labels
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.Family("weft_x", Counter, "x")
		w.Uint("weft_x", L("v", v), 1)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		fams := parse(t, buf.String())
		if got := labelsOf(fams["weft_x"].Metric[0])["v"]; got != v {
			t.Fatalf("%q came back as %q", v, got)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
