package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestRouteSeries(t *testing.T) {
	r := New()
	s := r.Route(RouteKey{Dir: Outbound, Authority: "web.ns.svc.cluster.local:80", Route: "books/rule-0"})
	s.Request()
	s.Attempt()
	s.AttemptResponse(503, true, 5*time.Millisecond)
	s.Retry()
	s.Attempt()
	s.AttemptResponse(200, false, 4*time.Millisecond)
	s.Response(200, false, 12*time.Millisecond)
	s.Skip(SkipBudget)
	s.Skip(SkipBudget)
	s.Skip(SkipBody)
	if r.Route(RouteKey{Dir: Outbound, Authority: "web.ns.svc.cluster.local:80", Route: "books/rule-0"}) != s {
		t.Fatal("same key returned another series")
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	ls := `direction="outbound",authority="web.ns.svc.cluster.local:80",rt_route="books/rule-0"`
	for _, tc := range []struct{ name, line string }{
		{"requests", `route_request_total{` + ls + `} 1`},
		{"attempts", `route_actual_request_total{` + ls + `} 2`},
		{"client response", `route_response_total{` + ls + `,status_code="200",classification="success"} 1`},
		{"attempt failure", `route_actual_response_total{` + ls + `,status_code="503",classification="failure"} 1`},
		{"attempt success", `route_actual_response_total{` + ls + `,status_code="200",classification="success"} 1`},
		{"latency bucket", `route_response_latency_ms_bucket{` + ls + `,status_code="200",le="20"} 1`},
		{"latency below", `route_response_latency_ms_bucket{` + ls + `,status_code="200",le="10"} 0`},
		{"attempt latency count", `route_actual_response_latency_ms_count{` + ls + `,status_code="503"} 1`},
		{"retries", `weft_route_retry_total{` + ls + `} 1`},
		{"skipped budget", `weft_route_retry_skipped_total{` + ls + `,reason="budget"} 2`},
		{"skipped body", `weft_route_retry_skipped_total{` + ls + `,reason="body"} 1`},
		{"histogram type", `# TYPE route_response_latency_ms histogram`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(out, tc.line+"\n") {
				t.Fatalf("missing %q in\n%s", tc.line, out)
			}
		})
	}
}
