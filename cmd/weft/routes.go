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
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/internal/meshdefaults"
)

// RouteRow is the golden metrics of one route of a Service over one window, summed
// over the clients' proxies (the route_* series they write for it).
type RouteRow struct {
	// Service is namespace/name.
	Service string `json:"service"`
	// Route is the rt_route label: a ServiceProfile route's name, an HTTPRoute or
	// GRPCRoute rule's <route>/<rule>, or "default".
	Route         string   `json:"route"`
	Clients       int      `json:"clients"`
	Requests      float64  `json:"requests"`
	RPS           float64  `json:"rps"`
	SuccessRate   *float64 `json:"successRate"`
	P50Ms         *float64 `json:"p50Ms"`
	P95Ms         *float64 `json:"p95Ms"`
	P99Ms         *float64 `json:"p99Ms"`
	WindowSeconds float64  `json:"windowSeconds"`
}

type routeKey struct{ service, route string }

// routeScrape is one client proxy's route counters at one moment.
type routeScrape struct {
	at     time.Time
	routes map[routeKey]*counters
}

// digestRoutes extracts the outbound route counters of the Services serviceOf names
// (it maps an authority to "namespace/name", ok false for other destinations).
func digestRoutes(at time.Time, samples []sample, serviceOf func(authority string) (string, bool)) routeScrape {
	rs := routeScrape{at: at, routes: map[routeKey]*counters{}}
	for _, s := range samples {
		if s.labels["direction"] != "outbound" {
			continue
		}
		switch s.name {
		case "route_request_total", "route_response_total", "route_response_latency_ms_bucket":
		default:
			continue
		}
		svc, ok := serviceOf(s.labels["authority"])
		if !ok {
			continue
		}
		k := routeKey{svc, s.labels["rt_route"]}
		c := rs.routes[k]
		if c == nil {
			c = &counters{buckets: map[float64]float64{}}
			rs.routes[k] = c
		}
		switch s.name {
		case "route_request_total":
			c.requests += s.value
		case "route_response_total":
			c.responses += s.value
			if s.labels["classification"] == "success" {
				c.successes += s.value
			}
		case "route_response_latency_ms_bucket":
			if le, err := strconv.ParseFloat(s.labels["le"], 64); err == nil {
				c.buckets[le] += s.value
			}
		}
	}
	return rs
}

// summarizeRoutes computes one row per Service and route from two rounds of scrapes
// of the clients' proxies: each proxy's delta over its own interval, the rates added.
func summarizeRoutes(prev, cur map[types.UID]routeScrape) []RouteRow {
	acc := map[routeKey]*accumulator{}
	for uid, c := range cur {
		p, ok := prev[uid]
		if !ok {
			continue
		}
		for k, rc := range c.routes {
			pc := p.routes[k]
			if pc == nil {
				pc = &counters{buckets: map[float64]float64{}}
			}
			if acc[k] == nil {
				acc[k] = &accumulator{}
			}
			acc[k].add(sub(rc, pc), c.at.Sub(p.at).Seconds())
		}
	}
	rows := make([]RouteRow, 0, len(acc))
	for k, a := range acc {
		g := a.golden()
		rows = append(rows, RouteRow{Service: k.service, Route: k.route, Clients: g.Meshed, Requests: g.Requests, RPS: g.RPS,
			SuccessRate: g.SuccessRate, P50Ms: g.P50Ms, P95Ms: g.P95Ms, P99Ms: g.P99Ms, WindowSeconds: g.WindowSeconds})
	}
	slices.SortFunc(rows, func(a, b RouteRow) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Route, b.Route))
	})
	return rows
}

type routesOptions struct {
	target        string
	interval      time.Duration
	output        string
	allClients    bool
	clusterDomain string
}

func newRoutesCommand(c *cli) *cobra.Command {
	var o routesOptions
	cmd := &cobra.Command{
		Use:   "routes (svc|deploy)/NAME",
		Short: "per-route golden metrics (RPS, success rate, latency) of a Service",
		Long: "Per-route golden metrics of a Service as its meshed clients see them: for each route (a\n" +
			"ServiceProfile route, an HTTPRoute or GRPCRoute rule, or 'default'), requests per second,\n" +
			"success rate and latency percentiles over a window, from the clients' proxies' route_*\n" +
			"series, read twice --interval apart through the API server's pod proxy. deploy/NAME shows\n" +
			"the routes of every Service that selects the Deployment's pods. The clients read are the\n" +
			"meshed pods of the Service's namespace, or of every namespace with --all-client-namespaces.",
		Example: "  weft routes svc/backend -n weft-demo\n  weft routes deploy/web -n weft-demo -o json",
		Args:    usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return c.completeTyped(toComplete, "svc", "deploy")
		},
		RunE: func(_ *cobra.Command, args []string) error {
			o.target = args[0]
			if err := checkOutput(o.output, "table", "wide", "json", "yaml"); err != nil {
				return err
			}
			if o.interval <= 0 {
				return usageErrorf("--interval must be positive")
			}
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			rows, err := routes(ctx, kc, o, c.errOut)
			if err != nil {
				return err
			}
			return printRoutes(c.out, o, rows)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.interval, "interval", 5*time.Second, "the window: the clients' counters are sampled twice this far apart")
	f.BoolVar(&o.allClients, "all-client-namespaces", false, "read the clients of every namespace, not only the Service's")
	f.StringVar(&o.clusterDomain, "cluster-domain", meshdefaults.ClusterDomain, "the cluster's DNS suffix, to read Service host names")
	addOutputFlag(cmd, &o.output, "table", "wide", "json", "yaml")
	return cmd
}

// routeServices resolves svc/NAME or deploy/NAME to the Services whose routes to show.
func routeServices(ctx context.Context, kc *kubeClients, target string) ([]corev1.Service, error) {
	kind, name, ok := strings.Cut(target, "/")
	if !ok || name == "" {
		return nil, usageErrorf("cannot read %q: want svc/NAME or deploy/NAME", target)
	}
	ns := kc.namespace
	switch {
	case serviceKinds[kind] != "":
		svc, err := kc.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading Service %s/%s: %w", ns, name, err)
		}
		return []corev1.Service{*svc}, nil
	case statKinds[kind] == "deploy":
		pods, err := targetPods(ctx, kc.client, ns, "deploy/"+name)
		if err != nil {
			return nil, err
		}
		if len(pods) == 0 {
			return nil, fmt.Errorf("no pods of deploy/%s in namespace %s", name, ns)
		}
		list, err := kc.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing services: %w", err)
		}
		var out []corev1.Service
		for _, s := range list.Items {
			if len(s.Spec.Selector) == 0 {
				continue
			}
			sel := labels.SelectorFromSet(s.Spec.Selector)
			if slices.ContainsFunc(pods, func(p *corev1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) }) {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no Service in namespace %s selects the pods of deploy/%s", ns, name)
		}
		return out, nil
	}
	return nil, usageErrorf("cannot read %q: want svc/NAME or deploy/NAME", target)
}

// routes samples the clients' route counters twice, o.interval apart.
func routes(ctx context.Context, kc *kubeClients, o routesOptions, stderr io.Writer) ([]RouteRow, error) {
	svcs, err := routeServices(ctx, kc, o.target)
	if err != nil {
		return nil, err
	}
	v := meshView{services: svcs, clusterDomain: o.clusterDomain}
	clientNS := kc.namespace
	if o.allClients {
		clientNS = metav1.NamespaceAll
	}
	round := func() (map[types.UID]routeScrape, error) {
		pods, err := listStatPods(ctx, kc, clientNS, "pod")
		if err != nil {
			return nil, err
		}
		out := map[types.UID]routeScrape{}
		scrapeEach(ctx, kc, pods, "weft routes", stderr, func(p statPod, at time.Time, samples []sample) {
			out[p.uid] = digestRoutes(at, samples, func(authority string) (string, bool) {
				s := v.service(p.namespace, authority)
				if s == nil {
					return "", false
				}
				return s.Namespace + "/" + s.Name, true
			})
		})
		return out, nil
	}
	prev, err := round()
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.interval):
	}
	cur, err := round()
	if err != nil {
		return nil, err
	}
	rows := summarizeRoutes(prev, cur)
	if len(rows) == 0 {
		names := make([]string, len(svcs))
		for i, s := range svcs {
			names[i] = "svc/" + s.Name
		}
		return nil, errors.New("no route metrics for " + strings.Join(names, ", ") + " in the meshed clients read: " +
			"a route appears once a meshed client has sent it a request (clients in other namespaces: --all-client-namespaces)")
	}
	return rows, nil
}

func printRoutes(w io.Writer, o routesOptions, rows []RouteRow) error {
	if o.output == "json" || o.output == "yaml" {
		return printStructured(w, o.output, struct {
			Routes []RouteRow `json:"routes"`
		}{rows})
	}
	t := newTable(w)
	head := []string{"SERVICE", "ROUTE", "RPS", "SUCCESS", "P50", "P95", "P99"}
	if o.output == "wide" {
		head = append(head, "REQUESTS", "CLIENTS")
	}
	row(t, head...)
	for _, r := range rows {
		cells := []string{r.Service, r.Route, strconv.FormatFloat(r.RPS, 'f', 1, 64), percent(r.SuccessRate), millis(r.P50Ms), millis(r.P95Ms), millis(r.P99Ms)}
		if o.output == "wide" {
			cells = append(cells, strconv.FormatFloat(r.Requests, 'f', 0, 64), strconv.Itoa(r.Clients))
		}
		row(t, cells...)
	}
	return t.Flush()
}
