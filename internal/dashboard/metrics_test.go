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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A proxy's exposition as proxy/metrics writes it (names and labels verbatim).
const exposition = `# TYPE request_total counter
request_total{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load"} 100
request_total{direction="outbound",authority="api.shop.svc.cluster.local:8080",tls="true",server_id="spiffe://cluster.local/ns/shop/sa/api"} 40
request_total{direction="outbound",authority="api.shop.svc.cluster.local:8080",tls="false"} 10
# TYPE response_total counter
response_total{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200",classification="success"} 90
response_total{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="500",classification="failure"} 10
response_total{direction="outbound",authority="api.shop.svc.cluster.local:8080",tls="true",server_id="spiffe://cluster.local/ns/shop/sa/api",status_code="200",classification="success"} 40
# TYPE response_latency_ms histogram
response_latency_ms_bucket{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200",le="10"} 50
response_latency_ms_bucket{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200",le="100"} 100
response_latency_ms_bucket{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200",le="+Inf"} 100
response_latency_ms_sum{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200"} 2000
response_latency_ms_count{direction="inbound",authority="web.shop.svc.cluster.local:8080",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/load",status_code="200"} 100
# TYPE route_request_total counter
route_request_total{direction="outbound",authority="api.shop.svc.cluster.local:8080",rt_route="api/rule-0"} 7
# TYPE identity_cert_expiration_timestamp_seconds gauge
identity_cert_expiration_timestamp_seconds 1700000000
`

func TestParseDigest(t *testing.T) {
	d, err := parseDigest(strings.NewReader(exposition), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	in := d.dir["inbound"]
	if in.requests != 100 || in.mtls != 100 || in.responses != 100 || in.successes != 90 || in.buckets[10] != 50 {
		t.Errorf("inbound = %+v", in)
	}
	out := d.dir["outbound"]
	if out.requests != 50 || out.mtls != 40 {
		t.Errorf("outbound = %+v, want 50 requests of which 40 mTLS", out)
	}
	tlsEdge := d.edges[edgeKey{"api.shop.svc.cluster.local:8080", "spiffe://cluster.local/ns/shop/sa/api"}]
	plainEdge := d.edges[edgeKey{"api.shop.svc.cluster.local:8080", ""}]
	if tlsEdge == nil || tlsEdge.requests != 40 || plainEdge == nil || plainEdge.requests != 10 {
		t.Errorf("edges = %+v", d.edges)
	}
	if r := d.routes[routeKey{"outbound", "api.shop.svc.cluster.local:8080", "api/rule-0"}]; r == nil || r.requests != 7 {
		t.Errorf("routes = %+v", d.routes)
	}
	if d.certExpS != 1700000000 {
		t.Errorf("certificate expiry = %v", d.certExpS)
	}
}

func TestGoldenOverWindow(t *testing.T) {
	prev := &counters{requests: 100, mtls: 100, responses: 100, successes: 90, buckets: map[float64]float64{10: 50, 100: 100}}
	cur := &counters{requests: 200, mtls: 150, responses: 200, successes: 180, buckets: map[float64]float64{10: 100, 100: 200}}
	var a acc
	a.add(sub(cur, prev), 10)
	g := a.golden()
	if g.RPS != 10 || *g.SuccessRate != 0.9 || *g.MTLSShare != 0.5 || *g.P50Ms != 10 {
		t.Errorf("golden = rps %v success %v mtls %v p50 %v", g.RPS, *g.SuccessRate, *g.MTLSShare, *g.P50Ms)
	}
	// A proxy that restarted (counters went down) counts what it saw since.
	a = acc{}
	a.add(sub(&counters{requests: 5, responses: 5, successes: 5, buckets: map[float64]float64{}}, prev), 10)
	if g := a.golden(); g.RPS != 0.5 {
		t.Errorf("after a restart rps = %v, want 0.5", g.RPS)
	}
	// No traffic: no ratio, no quantile, never a made-up zero.
	a = acc{}
	a.add(sub(prev, prev), 10)
	if g := a.golden(); g.SuccessRate != nil || g.P99Ms != nil || g.MTLSShare != nil {
		t.Errorf("idle golden = %+v, want nil ratios", g)
	}
}

// A pod that answers with more than maxMetricsBytes is left out of the round, not read
// into memory without end.
func TestScrapeRefusesOversizedMetrics(t *testing.T) {
	big := strings.Repeat("# padding padding padding padding padding padding padding\n", maxMetricsBytes/56+10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(big)) }))
	defer srv.Close()
	c := &Collector{HTTP: &http.Client{Timeout: 3 * time.Second}}
	addr := strings.TrimPrefix(srv.URL, "http://")
	if _, err := c.scrape(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("scrape of %d bytes: err %v, want refused", len(big), err)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(exposition)) }))
	defer ok.Close()
	if _, err := c.scrape(context.Background(), strings.TrimPrefix(ok.URL, "http://")); err != nil {
		t.Errorf("scrape of a proxy's metrics: %v", err)
	}
}
