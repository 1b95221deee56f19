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
	"fmt"
	"io"
	"net"
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
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/internal/svcname"
)

// Edge is one caller-callee pair of meshed workloads, as their proxies counted it.
type Edge struct {
	SrcNamespace string `json:"srcNamespace"`
	Src          string `json:"src"`
	DstNamespace string `json:"dstNamespace"`
	Dst          string `json:"dst"`
	// ClientID is the identity the server's proxy verified (its inbound client_id);
	// ServerID the one the client's proxy verified (its outbound server_id). Empty
	// when that side was not read or the connection carried no identity.
	ClientID string `json:"clientId"`
	ServerID string `json:"serverId"`
	// Secured: the requests went over mTLS with a verified peer identity.
	Secured bool `json:"secured"`
	// Requests since the proxies started: as the server counted them when its
	// proxy was read, else as the client did (0 when the client's count cannot be
	// attributed to one workload, as behind a Service that selects several).
	Requests float64 `json:"requests"`
}

// meshView is what edges are resolved against: the pods and Services of the
// namespaces read.
type meshView struct {
	pods          []statPod
	services      []corev1.Service
	clusterDomain string
}

type edgeKey struct{ srcNS, src, dstNS, dst string }

// peerWorkload is a group of pods (deploy/web) in a namespace.
type peerWorkload struct{ ns, name string }

// computeEdges derives the edges from the proxies' request_total series: inbound
// series name the caller by the identity it proved (client_id), resolved to the
// workloads running as that ServiceAccount; outbound series name the callee by its
// authority (the Service, resolved to the workloads it selects whose pods run as the
// server_id's ServiceAccount) or, where the proxy sets them, by Linkerd's dst_*
// labels. The two sides are merged per pair of workloads.
func computeEdges(v meshView, samples map[types.UID][]sample) []Edge {
	edges := map[edgeKey]*Edge{}
	inRequests := map[edgeKey]float64{}
	outRequests := map[edgeKey]float64{}
	get := func(k edgeKey) *Edge {
		e := edges[k]
		if e == nil {
			e = &Edge{SrcNamespace: k.srcNS, Src: k.src, DstNamespace: k.dstNS, Dst: k.dst}
			edges[k] = e
		}
		return e
	}
	pods := slices.Clone(v.pods)
	slices.SortFunc(pods, func(a, b statPod) int { return cmp.Compare(a.namespace+"/"+a.name, b.namespace+"/"+b.name) })
	// Inbound: exact callee, caller by identity.
	for _, p := range pods {
		for _, s := range samples[p.uid] {
			if s.name != "request_total" || s.labels["direction"] != "inbound" || s.labels["tls"] != "true" || s.value <= 0 {
				continue
			}
			cid := s.labels["client_id"]
			srcs := v.workloadsByIdentity(cid)
			for _, src := range srcs {
				k := edgeKey{src.ns, src.name, p.namespace, p.group}
				e := get(k)
				e.ClientID, e.Secured = cid, true
				if len(srcs) == 1 {
					inRequests[k] += s.value
				}
			}
		}
	}
	// Outbound: exact caller, callee by authority (or dst_* labels) and identity.
	for _, p := range pods {
		for _, s := range samples[p.uid] {
			if s.name != "request_total" || s.labels["direction"] != "outbound" || s.value <= 0 {
				continue
			}
			sid := s.labels["server_id"]
			dsts := v.callees(p.namespace, s.labels)
			if len(dsts) > 1 {
				// Several workloads behind one Service: the ones whose proxies
				// reported this caller are the callees.
				var seen []peerWorkload
				for _, d := range dsts {
					if edges[edgeKey{p.namespace, p.group, d.ns, d.name}] != nil {
						seen = append(seen, d)
					}
				}
				if len(seen) > 0 {
					dsts = seen
				}
			}
			for _, d := range dsts {
				k := edgeKey{p.namespace, p.group, d.ns, d.name}
				e := get(k)
				if sid != "" {
					e.ServerID = sid
				}
				e.Secured = e.Secured || s.labels["tls"] == "true"
				if len(dsts) == 1 {
					outRequests[k] += s.value
				}
			}
		}
	}
	out := make([]Edge, 0, len(edges))
	for k, e := range edges {
		e.Requests = inRequests[k]
		if e.Requests == 0 {
			e.Requests = outRequests[k]
		}
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.SrcNamespace, b.SrcNamespace), cmp.Compare(a.Src, b.Src),
			cmp.Compare(a.DstNamespace, b.DstNamespace), cmp.Compare(a.Dst, b.Dst))
	})
	return out
}

// workloadsByIdentity: the workloads whose pods run as the SPIFFE ID's ServiceAccount,
// or serviceaccount/NAME when none of the pods read does (a caller in a namespace not
// read).
func (v meshView) workloadsByIdentity(id string) []peerWorkload {
	_, ns, sa, ok := peertls.ParseWorkloadID(id)
	if !ok {
		return nil
	}
	var out []peerWorkload
	for _, p := range v.pods {
		if p.namespace == ns && p.serviceAccount == sa && p.meshed {
			out = appendWorkload(out, peerWorkload{p.namespace, p.group})
		}
	}
	if len(out) == 0 {
		out = []peerWorkload{{ns, "serviceaccount/" + sa}}
	}
	return out
}

// callees resolves an outbound series' destination: dst_* labels when the proxy set
// them, else its authority's Service and the selected pods running as server_id's
// ServiceAccount; svc/NAME when the Service selects no pod read. An authority that
// names no Service falls back to the server_id's workloads, else is shown as is.
func (v meshView) callees(clientNS string, l map[string]string) []peerWorkload {
	if ns := l["dst_namespace"]; ns != "" {
		for _, k := range []struct{ label, prefix string }{{"dst_deployment", "deploy/"}, {"dst_statefulset", "sts/"}, {"dst_daemonset", "ds/"}, {"dst_pod", "pod/"}} {
			if n := l[k.label]; n != "" {
				if w := v.groupOf(ns, k.prefix+n); w != nil {
					return []peerWorkload{*w}
				}
				return []peerWorkload{{ns, k.prefix + n}}
			}
		}
	}
	svc := v.service(clientNS, l["authority"])
	if svc == nil {
		// An authority that names no Service (an address the app dialled, a
		// Host header of its own): the verified server identity still names the
		// workloads it can be.
		if ws := v.workloadsByIdentity(l["server_id"]); ws != nil {
			return ws
		}
		return []peerWorkload{{"", l["authority"]}}
	}
	wantSA := ""
	if _, ns, sa, ok := peertls.ParseWorkloadID(l["server_id"]); ok && ns == svc.Namespace {
		wantSA = sa
	}
	var out []peerWorkload
	if len(svc.Spec.Selector) > 0 {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		for _, p := range v.pods {
			if p.namespace == svc.Namespace && sel.Matches(labels.Set(p.labels)) && (wantSA == "" || p.serviceAccount == wantSA) {
				out = appendWorkload(out, peerWorkload{p.namespace, p.group})
			}
		}
	}
	if len(out) == 0 {
		out = []peerWorkload{{svc.Namespace, "svc/" + svc.Name}}
	}
	return out
}

// groupOf finds the pods' group named name (deploy/web) in ns, so that pods named
// by a dst_pod label are shown under their workload.
func (v meshView) groupOf(ns, name string) *peerWorkload {
	for _, p := range v.pods {
		if p.namespace == ns && (p.group == name || "pod/"+p.name == name) {
			return &peerWorkload{p.namespace, p.group}
		}
	}
	return nil
}

// service finds the Service an authority names: a Service host name (relative to
// the client's namespace for one label), or a cluster IP.
func (v meshView) service(clientNS, authority string) *corev1.Service {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	var want svcname.Service
	if ip := net.ParseIP(host); ip != nil {
		for i := range v.services {
			if slices.Contains(v.services[i].Spec.ClusterIPs, host) || v.services[i].Spec.ClusterIP == host {
				return &v.services[i]
			}
		}
		return nil
	}
	if s, ok := svcname.Parse(host, v.clusterDomain, svcname.Relative); ok {
		want = s
	} else if !strings.Contains(host, ".") {
		want = svcname.Service{Namespace: clientNS, Name: strings.ToLower(host)}
	} else {
		return nil
	}
	for i := range v.services {
		if v.services[i].Namespace == want.Namespace && v.services[i].Name == want.Name {
			return &v.services[i]
		}
	}
	return nil
}

func appendWorkload(ws []peerWorkload, w peerWorkload) []peerWorkload {
	if slices.Contains(ws, w) {
		return ws
	}
	ws = append(ws, w)
	slices.SortFunc(ws, func(a, b peerWorkload) int { return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name)) })
	return ws
}

func newEdgesCommand(c *cli) *cobra.Command {
	var (
		output, clusterDomain string
		allNS                 bool
	)
	cmd := &cobra.Command{
		Use:   "edges (deploy|pod|ns)",
		Short: "who calls whom among meshed workloads, with their verified identities",
		Long: "Shows the pairs of meshed workloads that talk, with the identity each side's proxy verified:\n" +
			"CLIENT_ID as the server's proxy saw it (inbound client_id), SERVER_ID as the client's proxy\n" +
			"saw it (outbound server_id). Read from the proxies' request counters through the API\n" +
			"server's pod proxy, as 'weft stat' reads them: the edges are those seen since the proxies\n" +
			"started. A callee is resolved from the authority the client used (its Service, narrowed\n" +
			"to the pods that run as the verified server identity); a caller from its identity.",
		Example:           "  weft edges deploy -n weft-demo\n  weft edges deploy -A -o json",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: cobra.FixedCompletions([]string{"deploy", "pod", "ns"}, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(_ *cobra.Command, args []string) error {
			kind, ok := statKinds[strings.ToLower(args[0])]
			if !ok {
				return usageErrorf("unknown resource %q (want deploy, pod or ns)", args[0])
			}
			if err := checkOutput(output, "table", "wide", "json", "yaml"); err != nil {
				return err
			}
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			ns := kc.namespace
			if allNS {
				ns = metav1.NamespaceAll
			}
			v, samples, err := readProxies(ctx, kc, ns, kind, clusterDomain, "weft edges", c.errOut)
			if err != nil {
				return err
			}
			return printEdges(c.out, output, computeEdges(v, samples))
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&allNS, "all-namespaces", "A", false, "all namespaces")
	f.StringVar(&clusterDomain, "cluster-domain", meshdefaults.ClusterDomain, "the cluster's DNS suffix, to read Service host names")
	addOutputFlag(cmd, &output, "table", "wide", "json", "yaml")
	return cmd
}

// readProxies lists the pods and Services of ns ("" all) and reads every meshed pod's
// metrics once.
func readProxies(ctx context.Context, kc *kubeClients, ns, kind, clusterDomain, who string, stderr io.Writer) (meshView, map[types.UID][]sample, error) {
	v := meshView{clusterDomain: clusterDomain}
	var err error
	if v.pods, err = listStatPods(ctx, kc, ns, kind); err != nil {
		return v, nil, err
	}
	svcs, err := kc.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return v, nil, fmt.Errorf("listing services: %w", err)
	}
	v.services = svcs.Items
	samples := map[types.UID][]sample{}
	scrapeEach(ctx, kc, v.pods, who, stderr, func(p statPod, _ time.Time, s []sample) { samples[p.uid] = s })
	return v, samples, nil
}

func printEdges(w io.Writer, format string, edges []Edge) error {
	if format == "json" || format == "yaml" {
		if edges == nil {
			edges = []Edge{}
		}
		return printStructured(w, format, struct {
			Edges []Edge `json:"edges"`
		}{edges})
	}
	if len(edges) == 0 {
		_, err := fmt.Fprintln(w, "No edges found: no meshed workload has called another yet.")
		return err
	}
	t := newTable(w)
	head := []string{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "CLIENT_ID", "SERVER_ID"}
	if format == "wide" {
		head = append(head, "REQUESTS")
	}
	row(t, head...)
	for _, e := range edges {
		cells := []string{e.Src, e.Dst, orDash(e.SrcNamespace), orDash(e.DstNamespace), yesNo(e.Secured), orDash(e.ClientID), orDash(e.ServerID)}
		if format == "wide" {
			cells = append(cells, strconv.FormatFloat(e.Requests, 'f', 0, 64))
		}
		row(t, cells...)
	}
	return t.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
