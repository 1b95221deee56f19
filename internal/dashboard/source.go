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
	"net/http"
	"time"
)

// The sources of the pages' golden metrics.
const (
	// SourceProxies is the Collector's own scrapes of every proxy's /metrics.
	SourceProxies = "proxies"
	// SourcePrometheus is PromQL over the proxies' series in a Prometheus
	// (Server.Prometheus).
	SourcePrometheus = "prometheus"
)

// traffic is one pod's HTTP traffic over a window: what its proxy counted between two
// scrapes, or Prometheus' per-second rates (seconds 1).
type traffic struct {
	seconds float64
	dir     map[string]*counters
	edges   map[edgeKey]*counters
	routes  map[routeKey]*counters
}

// podTraffic is a pod of the API server's latest list with its traffic; t is nil for
// an unmeshed pod and for a proxy without a window yet.
type podTraffic struct {
	pod
	t *traffic
}

// view is what the namespaces, workloads, edges and routes pages are computed from.
type view struct {
	source string
	at     time.Time
	window float64 // seconds the rates are over
	pods   []podTraffic
	err    string
}

// view returns the pods of ns ("" for all) with their traffic: from Prometheus when one
// is configured (unless the request asks ?source=proxies), else, or when Prometheus
// fails, from the Collector's scrapes, with an error that says which data is shown.
func (s *Server) view(r *http.Request, ns string) view {
	samples, at, err := s.Collector.snapshot(ns)
	v := view{source: SourceProxies, at: at}
	if err != nil {
		v.err = err.Error()
	}
	if s.Prometheus != nil && r.URL.Query().Get("source") != SourceProxies {
		rates, perr := s.Prometheus.rates(r.Context())
		if perr == nil {
			v.source, v.at, v.window = SourcePrometheus, rates.at, rates.window.Seconds()
			for _, p := range samples {
				pt := podTraffic{pod: p.pod}
				if d := rates.pods[p.namespace+"/"+p.name]; d != nil && p.meshed {
					pt.t = &traffic{seconds: 1, dir: d.dir, edges: d.edges, routes: d.routes}
				}
				v.pods = append(v.pods, pt)
			}
			return v
		}
		msg := "prometheus: " + perr.Error() + "; showing the proxies' own metrics instead"
		if v.err != "" {
			msg = v.err + "; " + msg
		}
		v.err = msg
	}
	for _, p := range samples {
		pt := podTraffic{pod: p.pod}
		if p.meshed && p.prev != nil && p.cur != nil {
			pt.t = deltas(p.prev, p.cur)
			v.window = max(v.window, pt.t.seconds)
		}
		v.pods = append(v.pods, pt)
	}
	return v
}

// deltas is what a proxy counted between two scrapes.
func deltas(prev, cur *digest) *traffic {
	t := &traffic{
		seconds: cur.at.Sub(prev.at).Seconds(),
		dir:     map[string]*counters{},
		edges:   map[edgeKey]*counters{},
		routes:  map[routeKey]*counters{},
	}
	for k, c := range cur.dir {
		t.dir[k] = sub(c, prev.dir[k])
	}
	for k, c := range cur.edges {
		t.edges[k] = sub(c, prev.edges[k])
	}
	for k, c := range cur.routes {
		t.routes[k] = sub(c, prev.routes[k])
	}
	return t
}

// promRates is Prometheus' answer to one query set: every pod's per-second rates, by
// namespace/pod.
type promRates struct {
	at     time.Time
	window time.Duration
	pods   map[string]*digest
}
