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
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/workload"
)

// statKinds maps what the user may type to the grouping.
var statKinds = map[string]string{
	"deploy": "deploy", "deployment": "deploy", "deployments": "deploy", "deploys": "deploy",
	"pod": "pod", "pods": "pod", "po": "pod",
	"ns": "ns", "namespace": "ns", "namespaces": "ns",
}

type statOptions struct {
	kind, name string
	interval   time.Duration
	watch      bool
	count      int
	output     string
	allNS      bool
}

func newStatCommand(c *cli) *cobra.Command {
	var o statOptions
	cmd := &cobra.Command{
		Use:   "stat [deploy|pod|ns] [NAME]",
		Short: "golden metrics (RPS, success rate, latency, mTLS) of meshed workloads",
		Long: "Golden metrics of meshed workloads, per deployment (default), pod or namespace, inbound and\n" +
			"outbound: requests per second, success rate, latency percentiles, the share of mTLS\n" +
			"requests, and (inbound) the requests and connections the inbound policy denied in the\n" +
			"window. The proxies' /metrics are read through the API server's pod proxy (no Prometheus\n" +
			"needed); rates are computed from two samples --interval apart.",
		Example:           "  weft stat deploy -n weft-demo\n  weft stat deploy web -n weft-demo --watch\n  weft stat ns -o json",
		Args:              usageArgs(cobra.MaximumNArgs(2)),
		ValidArgsFunction: c.completeStatArgs,
		RunE: func(_ *cobra.Command, pos []string) error {
			o.kind = "deploy"
			if len(pos) > 0 {
				k, ok := statKinds[strings.ToLower(pos[0])]
				if !ok {
					return usageErrorf("unknown resource %q (want deploy, pod or ns)", pos[0])
				}
				o.kind = k
				pos = pos[1:]
			}
			if len(pos) == 1 {
				o.name = pos[0]
			}
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
			if err := stat(ctx, kc, o, c.out, c.errOut); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.interval, "interval", 5*time.Second, "the window: counters are sampled twice this far apart (and each refresh of --watch covers one)")
	f.BoolVarP(&o.watch, "watch", "w", false, "refresh every --interval until interrupted")
	f.IntVar(&o.count, "count", 0, "with --watch: stop after this many refreshes (0: never)")
	addOutputFlag(cmd, &o.output, "table", "wide", "json", "yaml")
	f.BoolVarP(&o.allNS, "all-namespaces", "A", false, "all namespaces")
	return cmd
}

// statPod is a pod as weft stat sees it: its group and, if meshed, its proxy's admin port.
type statPod struct {
	uid       types.UID
	namespace string
	name      string
	group     string // deploy/web, sts/db, pod/x, or the namespace
	meshed    bool
	adminPort int32
	// serviceAccount, labels and ip identify the pod as a peer (weft edges and
	// weft routes): its SPIFFE ID names the ServiceAccount, Services select by labels.
	serviceAccount string
	labels         map[string]string
	ip             string
}

func stat(ctx context.Context, kc *kubeClients, o statOptions, stdout, stderr io.Writer) error {
	ns := kc.namespace
	if o.allNS || (o.kind == "ns" && !kc.explicit) {
		ns = metav1.NamespaceAll
	}
	if o.kind == "ns" && o.name != "" {
		ns = o.name
	}
	prev := map[types.UID]scrape{}
	// The first round only takes the baseline.
	pods, err := listStatPods(ctx, kc, ns, o.kind)
	if err != nil {
		return err
	}
	for uid, s := range scrapeAll(ctx, kc, pods, stderr) {
		prev[uid] = s
	}
	terminal := isTerminal(stdout)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.interval):
		}
		pods, err := listStatPods(ctx, kc, ns, o.kind)
		if err != nil {
			return err
		}
		cur := scrapeAll(ctx, kc, pods, stderr)
		rows := summarize(pods, prev, cur, o.name)
		prev = cur
		if o.watch && terminal && (o.output == "table" || o.output == "wide") {
			fmt.Fprint(stdout, "\033[H\033[2J") // clear the screen, like watch(1)
		}
		if err := printStat(stdout, rows, o, time.Now()); err != nil {
			return err
		}
		if !o.watch || (o.count > 0 && n >= o.count) {
			return nil
		}
	}
}

// listStatPods lists the running pods of ns (all when "") with their groups.
func listStatPods(ctx context.Context, kc *kubeClients, ns, kind string) ([]statPod, error) {
	list, err := kc.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	// ReplicaSets name their Deployment; list them once per namespace, not per pod.
	rsOwner := map[string]string{}
	if kind == "deploy" {
		rss, err := kc.kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing replicasets: %w", err)
		}
		for _, rs := range rss.Items {
			rsOwner[rs.Namespace+"/"+rs.Name] = workload.DeploymentOf(&rs)
		}
	}
	var out []statPod
	for i := range list.Items {
		p := &list.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		sp := statPod{uid: p.UID, namespace: p.Namespace, name: p.Name, serviceAccount: p.Spec.ServiceAccountName, labels: p.Labels, ip: p.Status.PodIP}
		if sp.serviceAccount == "" {
			sp.serviceAccount = "default"
		}
		switch kind {
		case "pod":
			sp.group = "pod/" + p.Name
		case "ns":
			sp.group = p.Namespace
		default:
			sp.group = workload.Name(p, rsOwner)
		}
		sp.meshed, sp.adminPort = inject.ProxyAdminPort(p)
		out = append(out, sp)
	}
	return out, nil
}

// scrapeAll reads every meshed pod's /metrics through the API server's pod proxy and
// digests them into golden counters. A pod that cannot be read is reported and left out
// of this round.
func scrapeAll(ctx context.Context, kc *kubeClients, pods []statPod, stderr io.Writer) map[types.UID]scrape {
	out := map[types.UID]scrape{}
	scrapeEach(ctx, kc, pods, "weft stat", stderr, func(p statPod, at time.Time, samples []sample) {
		out[p.uid] = digest(at, samples)
	})
	return out
}

// scrapeEach reads the /metrics of every meshed pod, a few at a time, and hands each
// pod's parsed samples to use (called under a lock, one pod at a time). A pod that
// cannot be read is reported on stderr as "<who>: pod ns/name: why" and skipped.
func scrapeEach(ctx context.Context, kc *kubeClients, pods []statPod, who string, stderr io.Writer, use func(p statPod, at time.Time, samples []sample)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, p := range pods {
		if !p.meshed {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The sample's time is the middle of the request: the proxy renders its
			// counters somewhere in between. A slow round trip (a loaded API server or
			// machine) blurs that by up to its length, which over a 10s window is
			// percents, so a scrape slower than slowScrape is taken again (3 tries).
			var text string
			var err error
			var at time.Time
			for try := 0; try < 3; try++ {
				start := time.Now()
				text, err = fetchMetrics(ctx, kc, p.namespace, p.name, p.adminPort)
				rtt := time.Since(start)
				at = start.Add(rtt / 2)
				if err != nil || rtt < slowScrape {
					break
				}
			}
			var samples []sample
			if err == nil {
				samples, err = parseMetrics(text)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(stderr, "%s: pod %s/%s: %v\n", who, p.namespace, p.name, err)
				}
				return
			}
			use(p, at, samples)
		}()
	}
	wg.Wait()
}

// slowScrape is the round trip above which a scrape is retried (see scrapeAll).
const slowScrape = 250 * time.Millisecond

func fetchMetrics(ctx context.Context, kc *kubeClients, ns, pod string, port int32) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Streamed and bounded: whoever runs a pod with a container named like the proxy
	// answers here, and must not make the CLI read without limit.
	body, err := kc.kube.CoreV1().Pods(ns).ProxyGet("http", pod, strconv.Itoa(int(port)), "metrics", nil).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the proxy's metrics through the API server: %w", err)
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxMetricsBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading the proxy's metrics through the API server: %w", err)
	}
	if len(b) > maxMetricsBytes {
		return "", fmt.Errorf("the proxy's metrics exceed %d bytes, more than a Weft proxy writes", maxMetricsBytes)
	}
	return string(b), nil
}

// summarize computes one row per group and direction from two rounds of scrapes.
// name filters the groups: "web" matches deploy/web (and pod/web), as does "deploy/web".
func summarize(pods []statPod, prev, cur map[types.UID]scrape, name string) []Golden {
	type key struct{ ns, group, dir string }
	acc := map[key]*accumulator{}
	total := map[key]int{}
	for _, p := range pods {
		if name != "" && p.group != name && !strings.HasSuffix(p.group, "/"+name) {
			continue
		}
		for _, d := range directions {
			k := key{p.namespace, p.group, d}
			if p.group == p.namespace {
				k.ns = ""
			}
			total[k]++
			if acc[k] == nil {
				acc[k] = &accumulator{}
			}
			c, okc := cur[p.uid]
			pr, okp := prev[p.uid]
			if !okc || !okp {
				continue
			}
			acc[k].add(sub(c.dir[d], pr.dir[d]), c.at.Sub(pr.at).Seconds())
		}
	}
	rows := make([]Golden, 0, len(acc))
	for k, a := range acc {
		g := a.golden()
		g.Namespace, g.Name, g.Direction, g.Pods = k.ns, k.group, k.dir, total[k]
		if k.dir != "inbound" {
			g.Denied = nil // the inbound policy refuses only inbound traffic
		}
		rows = append(rows, g)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Direction < b.Direction
	})
	return rows
}

func printStat(w io.Writer, rows []Golden, o statOptions, now time.Time) error {
	if o.output == "json" || o.output == "yaml" {
		// One document per refresh: a JSON stream, or YAML documents.
		return printStructured(w, o.output, struct {
			Time time.Time `json:"time"`
			Rows []Golden  `json:"rows"`
		}{now.UTC(), rows})
	}
	if o.watch {
		fmt.Fprintf(w, "%s  (window %s; Ctrl-C to stop)\n", now.Format("15:04:05"), o.interval)
	}
	if len(rows) == 0 {
		if o.name != "" {
			_, err := fmt.Fprintf(w, "No running pods of %s %q.\n", o.kind, o.name)
			return err
		}
		_, err := fmt.Fprintln(w, "No running pods found.")
		return err
	}
	// Namespace rows (weft stat ns) name the namespace in NAME: no NAMESPACE column.
	withNS := false
	for _, r := range rows {
		withNS = withNS || r.Namespace != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if withNS {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tDIRECTION\tMESHED\tRPS\tSUCCESS\tP50\tP95\tP99\tMTLS\tDENIED\t")
	for _, r := range rows {
		if withNS {
			fmt.Fprintf(tw, "%s\t", r.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Direction, r.Meshed, r.Pods,
			r.RPS, percent(r.SuccessRate), millis(r.P50Ms), millis(r.P95Ms), millis(r.P99Ms), percent(r.MTLSShare), count(r.Denied))
	}
	return tw.Flush()
}

// count renders a count, "-" when there is none to show (outbound denials, no scrape).
func count(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 0, 64)
}

func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(100**v, 'f', 2, 64) + "%"
}

func millis(v *float64) string {
	if v == nil {
		return "-"
	}
	if *v < 10 {
		return strconv.FormatFloat(*v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(*v, 'f', 0, 64) + "ms"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
