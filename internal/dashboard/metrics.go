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
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weftmesh/weft/internal/histogram"
)

// counters are cumulative HTTP counters of one series group (a direction, an edge, a
// route) of one proxy, or after subtracting two scrapes what happened between them.
type counters struct {
	requests  float64             // request_total (or route_request_total)
	mtls      float64             // of which tls="true"
	responses float64             // response_total
	successes float64             // of which classification="success"
	buckets   map[float64]float64 // response_latency_ms_bucket summed by le
}

func newCounters() *counters { return &counters{buckets: map[float64]float64{}} }

// edgeKey is an outbound destination of a proxy: the authority it called and the
// identity that answered (server_id; "" when the call was not mTLS).
type edgeKey struct{ authority, serverID string }

// routeKey is one route of one authority, as the proxy's route_* series label it.
type routeKey struct{ direction, authority, route string }

// digest is what the dashboard keeps of one proxy's /metrics at one moment.
type digest struct {
	at       time.Time
	dir      map[string]*counters // "inbound", "outbound"
	edges    map[edgeKey]*counters
	routes   map[routeKey]*counters
	certExpS float64 // identity_cert_expiration_timestamp_seconds; 0 when absent
}

// maxMetricsBytes bounds one proxy's /metrics read (Collector.scrape refuses a larger
// answer). A proxy's exposition is tens of KiB; a pod answering with more is not a Weft
// proxy or is broken, and is left out of the round.
const maxMetricsBytes = 4 << 20

// parseDigest reads a proxy's Prometheus text exposition with the reference parser
// (prometheus/common/expfmt) and keeps the series the pages show.
func parseDigest(r io.Reader, at time.Time) (*digest, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(r, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("parsing the proxy's metrics: %w", err)
	}
	d := newDigest(at)
	if f := fams["identity_cert_expiration_timestamp_seconds"]; f != nil && len(f.Metric) > 0 {
		d.certExpS = f.Metric[0].GetGauge().GetValue()
	}
	for _, route := range []bool{false, true} {
		prefix := ""
		if route {
			prefix = "route_"
		}
		if f := fams[prefix+"request_total"]; f != nil {
			for _, m := range f.Metric {
				d.add(route, requestSeries, labels(m), 0, m.GetCounter().GetValue())
			}
		}
		if f := fams[prefix+"response_total"]; f != nil {
			for _, m := range f.Metric {
				d.add(route, responseSeries, labels(m), 0, m.GetCounter().GetValue())
			}
		}
		if f := fams[prefix+"response_latency_ms"]; f != nil {
			for _, m := range f.Metric {
				l := labels(m)
				for _, b := range m.GetHistogram().GetBucket() {
					d.add(route, latencySeries, l, b.GetUpperBound(), float64(b.GetCumulativeCount()))
				}
			}
		}
	}
	return d, nil
}

func newDigest(at time.Time) *digest {
	d := &digest{at: at, dir: map[string]*counters{}, edges: map[edgeKey]*counters{}, routes: map[routeKey]*counters{}}
	for _, dir := range []string{"inbound", "outbound"} {
		d.dir[dir] = newCounters()
	}
	return d
}

// seriesKind is which of a proxy's HTTP series a value comes from.
type seriesKind int

const (
	requestSeries  seriesKind = iota // request_total, route_request_total
	responseSeries                   // response_total, route_response_total
	latencySeries                    // response_latency_ms_bucket{le}, route_response_latency_ms_bucket{le}
)

// add counts the value v of one series, labelled l, into the groups the pages show: a
// request-level series (route false) into its direction and, when outbound to an
// authority, its edge; a route_* series into its route. Both sources go through here
// (a proxy's scrape, and Prometheus' rates of the same series), so a label means the
// same thing on every page whatever the source.
func (d *digest) add(route bool, kind seriesKind, l map[string]string, le, v float64) {
	var into []*counters
	if route {
		k := routeKey{l["direction"], l["authority"], l["rt_route"]}
		if k.route == "" {
			return
		}
		if d.routes[k] == nil {
			d.routes[k] = newCounters()
		}
		into = append(into, d.routes[k])
	} else {
		c := d.dir[l["direction"]]
		if c == nil {
			return
		}
		into = append(into, c)
		if l["direction"] == "outbound" && l["authority"] != "" {
			k := edgeKey{l["authority"], l["server_id"]}
			if d.edges[k] == nil {
				d.edges[k] = newCounters()
			}
			into = append(into, d.edges[k])
		}
	}
	for _, c := range into {
		switch kind {
		case requestSeries:
			c.requests += v
			if l["tls"] == "true" {
				c.mtls += v
			}
		case responseSeries:
			c.responses += v
			if l["classification"] == "success" {
				c.successes += v
			}
		case latencySeries:
			c.buckets[le] += v
		}
	}
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.Label))
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// sub returns cur minus prev; a proxy that restarted in between (counters went down)
// counts everything since its restart.
func sub(cur, prev *counters) *counters {
	if prev == nil || cur.requests < prev.requests || cur.responses < prev.responses {
		prev = newCounters()
	}
	d := &counters{
		requests:  cur.requests - prev.requests,
		mtls:      cur.mtls - prev.mtls,
		responses: cur.responses - prev.responses,
		successes: cur.successes - prev.successes,
		buckets:   map[float64]float64{},
	}
	for le, v := range cur.buckets {
		d.buckets[le] = max(v-prev.buckets[le], 0)
	}
	return d
}

// Golden is the golden metrics of a group of proxies over one window. Ratios and
// quantiles are nil when there was no traffic (the page shows "-"), never a made-up 0.
type Golden struct {
	RPS         float64  `json:"rps"`
	SuccessRate *float64 `json:"successRate"`
	P50Ms       *float64 `json:"p50Ms"`
	P95Ms       *float64 `json:"p95Ms"`
	P99Ms       *float64 `json:"p99Ms"`
	MTLSShare   *float64 `json:"mtlsShare"`
}

// acc sums the deltas of several proxies; each proxy's rate is over its own window,
// since scrapes of different pods are not simultaneous.
type acc struct {
	sum counters
	rps float64
}

func (a *acc) add(d *counters, seconds float64) {
	if a.sum.buckets == nil {
		a.sum.buckets = map[float64]float64{}
	}
	a.sum.requests += d.requests
	a.sum.mtls += d.mtls
	a.sum.responses += d.responses
	a.sum.successes += d.successes
	for le, v := range d.buckets {
		a.sum.buckets[le] += v
	}
	if seconds > 0 {
		a.rps += d.responses / seconds
	}
}

func (a *acc) golden() Golden {
	g := Golden{RPS: round(a.rps)}
	if a.sum.responses > 0 {
		g.SuccessRate = fptr(a.sum.successes / a.sum.responses)
	}
	if a.sum.requests > 0 {
		g.MTLSShare = fptr(a.sum.mtls / a.sum.requests)
	}
	for q, dst := range map[float64]**float64{0.5: &g.P50Ms, 0.95: &g.P95Ms, 0.99: &g.P99Ms} {
		if v := histogram.Quantile(a.sum.buckets, q); !math.IsNaN(v) && !math.IsInf(v, 0) {
			*dst = fptr(v)
		}
	}
	return g
}

func round(v float64) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 3, 64), 64)
	return f
}

func fptr(v float64) *float64 { return &v }
