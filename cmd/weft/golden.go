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

package main

import (
	"math"
	"strconv"
	"time"

	"github.com/weftmesh/weft/internal/histogram"
)

// The two directions of a proxy's traffic, as its metrics label them.
var directions = []string{"inbound", "outbound"}

// counters are the cumulative golden-metric counters of one direction of one proxy
// (or, after subtracting two scrapes, what happened between them).
type counters struct {
	requests     float64             // request_total
	mtlsRequests float64             // request_total{tls="true"}
	responses    float64             // response_total
	successes    float64             // response_total{classification="success"}
	buckets      map[float64]float64 // response_latency_ms_bucket summed by le
	// denials (inbound only): inbound_http_authz_deny_total plus
	// inbound_tcp_authz_deny_total, the requests and connections the inbound policy
	// refused. Those series carry no direction label (Linkerd's names and labels).
	denials float64
}

// scrape is one proxy's counters at one moment, by direction.
type scrape struct {
	at  time.Time
	dir map[string]*counters
}

// digest extracts the golden counters from a proxy's parsed /metrics.
func digest(at time.Time, samples []sample) scrape {
	s := scrape{at: at, dir: map[string]*counters{}}
	for _, d := range directions {
		s.dir[d] = &counters{buckets: map[float64]float64{}}
	}
	for _, m := range samples {
		if m.name == "inbound_http_authz_deny_total" || m.name == "inbound_tcp_authz_deny_total" {
			s.dir["inbound"].denials += m.value
			continue
		}
		c := s.dir[m.labels["direction"]]
		if c == nil {
			continue
		}
		switch m.name {
		case "request_total":
			c.requests += m.value
			if m.labels["tls"] == "true" {
				c.mtlsRequests += m.value
			}
		case "response_total":
			c.responses += m.value
			if m.labels["classification"] == "success" {
				c.successes += m.value
			}
		case "response_latency_ms_bucket":
			le, err := strconv.ParseFloat(m.labels["le"], 64)
			if err == nil {
				c.buckets[le] += m.value
			}
		}
	}
	return s
}

// sub returns cur minus prev. A proxy that restarted between the scrapes has counters
// below the previous ones; everything it counted since its restart is then the delta.
func sub(cur, prev *counters) *counters {
	if cur.responses < prev.responses || cur.requests < prev.requests || cur.denials < prev.denials {
		prev = &counters{}
	}
	d := &counters{
		requests:     cur.requests - prev.requests,
		mtlsRequests: cur.mtlsRequests - prev.mtlsRequests,
		responses:    cur.responses - prev.responses,
		successes:    cur.successes - prev.successes,
		denials:      cur.denials - prev.denials,
		buckets:      map[float64]float64{},
	}
	for le, v := range cur.buckets {
		d.buckets[le] = max(v-prev.buckets[le], 0)
	}
	return d
}

// Golden is the golden metrics of a group of proxies (a deployment, a pod, a namespace)
// in one direction over one interval. Ratios and quantiles are nil when there was no
// traffic (shown as "-"), never a made-up zero.
type Golden struct {
	Namespace string `json:"namespace"`
	// Name is the group: "deploy/web", "pod/web-5d8c-x2", or the namespace.
	Name      string `json:"name"`
	Direction string `json:"direction"`
	// Meshed counts the group's pods whose proxy was scraped twice; Pods counts all.
	Meshed int `json:"meshed"`
	Pods   int `json:"pods"`
	// Requests is the number of responses in the interval, RPS their rate.
	Requests    float64  `json:"requests"`
	RPS         float64  `json:"rps"`
	SuccessRate *float64 `json:"successRate"`
	P50Ms       *float64 `json:"p50Ms"`
	P95Ms       *float64 `json:"p95Ms"`
	P99Ms       *float64 `json:"p99Ms"`
	// MTLSShare is the share of requests that arrived (inbound) or left (outbound) over
	// mTLS with a verified peer identity.
	MTLSShare *float64 `json:"mtlsShare"`
	// Denied is the number of requests and connections the inbound policy refused in
	// the interval (inbound only; nil for outbound).
	Denied        *float64 `json:"denied"`
	WindowSeconds float64  `json:"windowSeconds"`
}

// accumulator sums the deltas of the proxies of one group and direction.
type accumulator struct {
	sum    counters
	rps    float64
	window float64
	meshed int
}

func (a *accumulator) add(d *counters, seconds float64) {
	if a.sum.buckets == nil {
		a.sum.buckets = map[float64]float64{}
	}
	a.sum.requests += d.requests
	a.sum.mtlsRequests += d.mtlsRequests
	a.sum.responses += d.responses
	a.sum.successes += d.successes
	a.sum.denials += d.denials
	for le, v := range d.buckets {
		a.sum.buckets[le] += v
	}
	// Each proxy's rate over its own interval: scrapes of different pods are not
	// simultaneous, and their rates add up.
	if seconds > 0 {
		a.rps += d.responses / seconds
	}
	a.window = max(a.window, seconds)
	a.meshed++
}

func (a *accumulator) golden() Golden {
	g := Golden{Meshed: a.meshed, Requests: a.sum.responses, RPS: a.rps, WindowSeconds: a.window}
	if a.meshed > 0 {
		g.Denied = fptr(a.sum.denials)
	}
	if a.sum.responses > 0 {
		g.SuccessRate = fptr(a.sum.successes / a.sum.responses)
	}
	if a.sum.requests > 0 {
		g.MTLSShare = fptr(a.sum.mtlsRequests / a.sum.requests)
	}
	for q, dst := range map[float64]**float64{0.5: &g.P50Ms, 0.95: &g.P95Ms, 0.99: &g.P99Ms} {
		if v := histogram.Quantile(a.sum.buckets, q); !math.IsNaN(v) {
			*dst = fptr(v)
		}
	}
	return g
}

func fptr(v float64) *float64 { return &v }
