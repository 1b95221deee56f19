package metrics

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/internal/promtext"
)

func seq(pairs ...string) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for i := 0; i+1 < len(pairs); i += 2 {
			if !yield(pairs[i], pairs[i+1]) {
				return
			}
		}
	}
}

func TestDstLabels(t *testing.T) {
	long := strings.Repeat("a", MaxDstLabelValue+1)
	many := make([]string, 0, 2*(MaxDstLabels+3))
	for i := range MaxDstLabels + 3 {
		many = append(many, "dst_l"+strconv.Itoa(100+i), "v")
	}
	tests := []struct {
		name  string
		pairs []string
		want  promtext.Labels
	}{
		{"workload labels kept in order", []string{"dst_deployment", "web", "dst_namespace", "shop"}, `dst_deployment="web",dst_namespace="shop"`},
		{"values escaped", []string{"dst_pod", "a\"b"}, `dst_pod="a\"b"`},
		{"proxy's own label names refused", []string{"authority", "x", "tls", "no", "status_code", "1"}, ``},
		{"invalid names refused", []string{"dst_", "x", "dst_a-b", "x", "dst_Pod", "x", "dst_a b", "x"}, ``},
		{"empty and oversized values dropped", []string{"dst_pod", "", "dst_job", long, "dst_service", "web"}, `dst_service="web"`},
		{"count bounded", many, promtext.L(many[:2*MaxDstLabels]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DstLabels(seq(tt.pairs...)); got != tt.want {
				t.Fatalf("DstLabels = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDstSeries: endpoints' labels make their own request, connection and route
// series, parsed by Prometheus' parser; past the bounds, new endpoints are counted
// without them; finding a labelled series does not allocate.
func TestDstSeries(t *testing.T) {
	r := New()
	dst := DstLabels(seq("dst_deployment", "web", "dst_pod", "web-1"))
	k := HTTPKey{Dir: Outbound, Authority: "web.shop.svc:80", PeerID: "spiffe://td/ns/shop/sa/web", Dst: dst}
	r.HTTP(k).Request()
	r.HTTP(k).Response(200, false, time.Millisecond)
	r.TCP(TCPKey{Dir: Outbound, Peer: Dst, Dst: dst}).Open()
	r.Route(RouteKey{Dir: Outbound, Authority: "web.shop.svc:80", Route: "r", Dst: DstLabels(seq("dst_namespace", "shop", "dst_service", "web"))}).Request()
	if allocs := testing.AllocsPerRun(1000, func() { r.HTTP(k).Request() }); allocs != 0 {
		t.Fatalf("%v allocations to find a labelled series, want 0", allocs)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the exposition: %v\n%s", err, b.String())
	}
	labelsOf := func(fam string) map[string]string {
		m := fams[fam].GetMetric()[0]
		out := map[string]string{}
		for _, l := range m.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	for fam, want := range map[string][]string{
		"request_total":       {"authority", "direction", "dst_deployment", "dst_pod", "server_id", "tls"},
		"response_latency_ms": {"authority", "direction", "dst_deployment", "dst_pod", "server_id", "status_code", "tls"},
		"tcp_open_total":      {"direction", "dst_deployment", "dst_pod", "peer", "tls"},
		"route_request_total": {"authority", "direction", "dst_namespace", "dst_service", "rt_route"},
	} {
		if got := slices.Sorted(maps.Keys(labelsOf(fam))); !slices.Equal(got, want) {
			t.Errorf("%s labels %v, want %v", fam, got, want)
		}
	}

	for i := range MaxTCPSeries + 10 {
		r.TCP(TCPKey{Dir: Outbound, Peer: Dst, Dst: DstLabels(seq("dst_pod", "p"+strconv.Itoa(i)))}).Open()
	}
	if n := len(r.tcp); n > MaxTCPSeries+1 {
		t.Fatalf("%d connection series, want at most %d", n, MaxTCPSeries+1)
	}
	for i := range MaxHTTPSeries + 10 {
		r.HTTP(HTTPKey{Dir: Outbound, Authority: "a:80", Dst: DstLabels(seq("dst_pod", "p"+strconv.Itoa(i)))}).Request()
	}
	if n := len(r.http); n > MaxHTTPSeries+1 {
		t.Fatalf("%d request series, want at most %d", n, MaxHTTPSeries+1)
	}
	if s := r.http[HTTPKey{Dir: Outbound, Authority: OverflowAuthority}]; s == nil || s.requests.Load() == 0 {
		t.Fatal("requests past the bound not counted under the overflow series without labels")
	}
}
