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
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	neturl "net/url"
	"strconv"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// PromSource reads the pages' golden metrics from a Prometheus that scrapes the
// proxies (config/prometheus): instant queries of rate() over Window of the same series
// the Collector reads, summed by namespace and pod. The API server's pod list (the
// Collector's) then groups pods into workloads exactly as the proxies' source does, and
// the quantiles are estimated after that grouping from the summed bucket rates (the
// interpolation of histogram_quantile, internal/histogram): a quantile per pod cannot be
// merged into a workload's.
//
// One query set serves every page and every viewer for CacheFor, so the dashboard's
// load on Prometheus does not grow with its viewers.
type PromSource struct {
	// URL is Prometheus' address, as configured.
	URL string
	api promv1.API
	// Window is the rate() range; it should hold at least four scrapes.
	Window time.Duration
	// Selector picks the proxies' series: the label matchers of the scrape job
	// (config/prometheus names it weft-proxy).
	Selector string
	// Timeout bounds each query, Prometheus' evaluation included.
	Timeout time.Duration
	// CacheFor is how long one query set's answer (or failure) is served.
	CacheFor time.Duration

	mu     sync.Mutex // held while querying: concurrent viewers wait for one query set
	cached *promRates
	err    error
	until  time.Time
}

// MaxPromResponseBytes bounds one query's answer. The largest is the latency buckets:
// about 300 bytes per series, 26 buckets per pod, direction and authority, so 16 MiB
// is some two thousand pod-authorities; a larger answer fails the query (the pages
// say so and show the proxies' data) rather than grow the dashboard's memory.
const MaxPromResponseBytes = 16 << 20

// NewPromSource returns a source that queries the Prometheus HTTP API at url (e.g.
// http://prometheus.monitoring:9090, a path prefix included) with the defaults the
// dashboard's flags document.
func NewPromSource(url string) (*PromSource, error) {
	u, err := neturl.Parse(url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus URL %q: want http(s)://<host>:<port>[/<path prefix>]", url)
	}
	c, err := promapi.NewClient(promapi.Config{Address: url, RoundTripper: boundedTransport{http.DefaultTransport}})
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", url, err)
	}
	return &PromSource{URL: url, api: promv1.NewAPI(c), Window: time.Minute, Selector: `job="weft-proxy"`, Timeout: 5 * time.Second, CacheFor: 5 * time.Second}, nil
}

// boundedTransport cuts every answer at MaxPromResponseBytes.
type boundedTransport struct{ http.RoundTripper }

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &boundedBody{rc: resp.Body, left: MaxPromResponseBytes}
	return resp, nil
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

var errPromTooLarge = fmt.Errorf("the answer is larger than %d bytes", MaxPromResponseBytes)

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly the bound from a larger one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errPromTooLarge
		}
		return b.rc.Read(p[:0])
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// promQuery is one query of the set and where its samples go.
type promQuery struct {
	route bool
	kind  seriesKind
	// metric is the series' name; by the labels its rate is summed by, besides
	// namespace and pod (the pod a proxy runs in, config/prometheus).
	metric, by string
}

// promQueries are the series parseDigest reads from a proxy, summed to the labels
// digest.add looks at, so both sources fill the same counters.
var promQueries = []promQuery{
	{false, requestSeries, "request_total", "direction, authority, server_id, tls"},
	{false, responseSeries, "response_total", "direction, authority, server_id, classification"},
	{false, latencySeries, "response_latency_ms_bucket", "direction, authority, server_id, le"},
	{true, requestSeries, "route_request_total", "direction, authority, rt_route"},
	{true, responseSeries, "route_response_total", "direction, authority, rt_route, classification"},
	{true, latencySeries, "route_response_latency_ms_bucket", "direction, authority, rt_route, le"},
}

func (q promQuery) expr(selector string, window time.Duration) string {
	return fmt.Sprintf("sum by (namespace, pod, %s) (rate(%s{%s}[%s]))", q.by, q.metric, selector, model.Duration(window))
}

// rates returns every pod's rates, from the cache when it is fresh.
func (p *PromSource) rates(ctx context.Context) (*promRates, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.until) {
		return p.cached, p.err
	}
	p.cached, p.err = p.query(ctx)
	// A failure is cached too: a Prometheus that is down or slow costs each viewer
	// the fallback, not a wait of Timeout per page.
	p.until = time.Now().Add(p.CacheFor)
	return p.cached, p.err
}

// query runs the query set at one instant, the queries in parallel.
func (p *PromSource) query(ctx context.Context) (*promRates, error) {
	// The query set outlives one viewer's request: it is shared through the cache.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.Timeout)
	defer cancel()
	at := time.Now()
	out := &promRates{at: at, window: p.Window, pods: map[string]*digest{}}
	results := make([]model.Vector, len(promQueries))
	errs := make([]error, len(promQueries))
	var wg sync.WaitGroup
	for i, q := range promQueries {
		wg.Go(func() {
			v, _, err := p.api.Query(ctx, q.expr(p.Selector, p.Window), at, promv1.WithTimeout(p.Timeout))
			if err != nil {
				errs[i] = fmt.Errorf("querying %s: %w", q.metric, err)
				return
			}
			vec, ok := v.(model.Vector)
			if !ok {
				errs[i] = fmt.Errorf("querying %s: a %s, not a vector", q.metric, v.Type())
				return
			}
			results[i] = vec
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, q := range promQueries {
		for _, s := range results[i] {
			ns, pod := string(s.Metric["namespace"]), string(s.Metric["pod"])
			v := float64(s.Value)
			if ns == "" || pod == "" || math.IsNaN(v) {
				continue
			}
			l := make(map[string]string, len(s.Metric))
			for k, val := range s.Metric {
				l[string(k)] = string(val)
			}
			le := 0.0
			if q.kind == latencySeries {
				var err error
				if le, err = strconv.ParseFloat(l["le"], 64); err != nil {
					continue
				}
			}
			key := ns + "/" + pod
			d := out.pods[key]
			if d == nil {
				d = newDigest(at)
				out.pods[key] = d
			}
			d.add(q.route, q.kind, l, le, v)
		}
	}
	return out, nil
}
