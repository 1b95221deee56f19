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

// Package dashboard is Weft's web dashboard: a small HTTP server with embedded static
// pages (plain JS, SVG) and a JSON API over the proxies' metrics and the mesh's
// resources. It listens on loopback only; users reach it with `weft dashboard`, which
// port-forwards to its pod, so the Kubernetes API server authenticates and authorizes
// every viewer (pods/portforward in the control-plane namespace).
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/svcname"
)

//go:embed static
var staticFiles embed.FS

// Server serves the pages and the API.
type Server struct {
	Collector     *Collector
	Client        client.Reader // Meshes and policy resources (read-only)
	Discovery     discovery.DiscoveryInterface
	ClusterDomain string
	// APITimeout bounds each API server call a page makes.
	APITimeout time.Duration
	// Prometheus, when set, is where the namespaces, workloads, edges and routes
	// pages get their golden metrics (promsource.go); nil reads the Collector's.
	Prometheus *PromSource
	// Tap streams the live tap view; nil turns the view off (weft-dashboard --tap=false).
	Tap *TapStreams
}

// Handler returns the dashboard's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /api/namespaces", s.namespaces)
	mux.HandleFunc("GET /api/workloads", s.workloads)
	mux.HandleFunc("GET /api/edges", s.edges)
	mux.HandleFunc("GET /api/routes", s.routes)
	mux.HandleFunc("GET /api/health", s.health)
	mux.HandleFunc("GET /api/tap", s.tap)
	mux.HandleFunc("GET /api/tap/stream", s.tapStream)
	return securityHeaders(mux)
}

// securityHeaders keeps the pages from being framed or loading anything but their own
// files, and other sites' pages from reading them (crossSite): the dashboard shows
// names and identities of the whole mesh.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		if msg := crossSite(r); msg != "" {
			writeError(w, http.StatusForbidden, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Row is one line of the namespaces or workloads page.
type Row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Meshed    int    `json:"meshed"`
	Pods      int    `json:"pods"`
	Inbound   Golden `json:"inbound"`
	Outbound  Golden `json:"outbound"`
}

type page struct {
	Time          time.Time `json:"time"`
	WindowSeconds float64   `json:"windowSeconds"`
	Error         string    `json:"error,omitempty"`
	// Source is where the rows come from: "prometheus" or "proxies".
	Source string `json:"source"`
	Rows   any    `json:"rows"`
}

// group sums the pods by key into rows of golden metrics.
func (s *Server) group(r *http.Request, ns string, key func(*podTraffic) (string, string)) page {
	v := s.view(r, ns)
	type acc2 struct {
		row     Row
		in, out acc
	}
	groups := map[[2]string]*acc2{}
	for i := range v.pods {
		p := &v.pods[i]
		gns, name := key(p)
		k := [2]string{gns, name}
		g := groups[k]
		if g == nil {
			g = &acc2{row: Row{Namespace: gns, Name: name}}
			groups[k] = g
		}
		g.row.Pods++
		if !p.meshed {
			continue
		}
		g.row.Meshed++
		if p.t == nil {
			continue
		}
		g.in.add(p.t.dir["inbound"], p.t.seconds)
		g.out.add(p.t.dir["outbound"], p.t.seconds)
	}
	rows := make([]Row, 0, len(groups))
	for _, g := range groups {
		g.row.Inbound, g.row.Outbound = g.in.golden(), g.out.golden()
		rows = append(rows, g.row)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		return rows[i].Name < rows[j].Name
	})
	return page{Time: v.at.UTC(), WindowSeconds: round(v.window), Error: v.err, Source: v.source, Rows: rows}
}

func (s *Server) namespaces(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.group(r, "", func(p *podTraffic) (string, string) { return "", p.namespace }))
}

func (s *Server) workloads(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		writeError(w, http.StatusBadRequest, "say which namespace: ?ns=<namespace>")
		return
	}
	writeJSON(w, s.group(r, ns, func(p *podTraffic) (string, string) { return p.namespace, p.workload }))
}

// Edge is a caller workload and the Service it called, from the caller's outbound
// series; ServerID is the identity that answered over mTLS ("" when plaintext).
type Edge struct {
	From     string `json:"from"` // ns/deploy/web
	To       string `json:"to"`   // ns/svc/api, or the authority when not a Service
	ServerID string `json:"serverId"`
	Golden
}

func (s *Server) edges(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("ns")
	v := s.view(r, "")
	type k struct{ from, to, id string }
	accs := map[k]*acc{}
	for _, p := range v.pods {
		if p.t == nil {
			continue
		}
		for ek, c := range p.t.edges {
			to := ek.authority
			svc, _, ok := svcname.ParseAuthority(ek.authority, s.ClusterDomain, svcname.Relative, 80)
			if ok {
				to = svc.Namespace + "/svc/" + svc.Name
			}
			if ns != "" && p.namespace != ns && (!ok || svc.Namespace != ns) {
				continue
			}
			key := k{p.namespace + "/" + p.workload, to, ek.serverID}
			if accs[key] == nil {
				accs[key] = &acc{}
			}
			accs[key].add(c, p.t.seconds)
		}
	}
	out := make([]Edge, 0, len(accs))
	for key, a := range accs {
		out = append(out, Edge{From: key.from, To: key.to, ServerID: key.id, Golden: a.golden()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	writeJSON(w, page{Time: v.at.UTC(), WindowSeconds: round(v.window), Error: v.err, Source: v.source, Rows: out})
}

// RouteRow is one route of a Service as its callers' proxies measured it.
type RouteRow struct {
	Service   string `json:"service"` // ns/name
	Authority string `json:"authority"`
	Route     string `json:"route"`
	Golden
}

func (s *Server) routes(w http.ResponseWriter, r *http.Request) {
	ns, svc := r.URL.Query().Get("ns"), r.URL.Query().Get("svc")
	v := s.view(r, "")
	type k struct{ svc, authority, route string }
	accs := map[k]*acc{}
	for _, p := range v.pods {
		if p.t == nil {
			continue
		}
		for rk, c := range p.t.routes {
			if rk.direction != "outbound" {
				continue
			}
			s2, _, ok := svcname.ParseAuthority(rk.authority, s.ClusterDomain, svcname.Relative, 80)
			if !ok || (ns != "" && s2.Namespace != ns) || (svc != "" && s2.Name != svc) {
				continue
			}
			key := k{s2.Namespace + "/" + s2.Name, rk.authority, rk.route}
			if accs[key] == nil {
				accs[key] = &acc{}
			}
			accs[key].add(c, p.t.seconds)
		}
	}
	out := make([]RouteRow, 0, len(accs))
	for key, a := range accs {
		g := a.golden()
		g.MTLSShare = nil // route_* series have no tls label
		out = append(out, RouteRow{Service: key.svc, Authority: key.authority, Route: key.route, Golden: g})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Route < out[j].Route
	})
	writeJSON(w, page{Time: v.at.UTC(), WindowSeconds: round(v.window), Error: v.err, Source: v.source, Rows: out})
}

// CertRow is one proxy's identity certificate expiry.
type CertRow struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Expires   time.Time `json:"expires"`
	// ExpiresInSeconds is negative for an expired certificate.
	ExpiresInSeconds float64 `json:"expiresInSeconds"`
}

// ObjectHealth is a Mesh's or a policy resource's conditions.
type ObjectHealth struct {
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace"`
	Name       string             `json:"name"`
	Conditions []metav1.Condition `json:"conditions"`
}

type healthPage struct {
	Time    time.Time      `json:"time"`
	Certs   []CertRow      `json:"certs"`
	Objects []ObjectHealth `json:"objects"`
	Errors  []string       `json:"errors"`
}

// policyKinds are the resources whose conditions the health page lists: the Mesh
// and every kind of the policy group that has a status.
func policyKinds() []schema.GroupVersionKind {
	var kinds []schema.GroupVersionKind
	for _, k := range []string{"Mesh", "ServiceProfile", "HTTPFault"} {
		kinds = append(kinds, meshv1alpha1.GroupVersion.WithKind(k))
	}
	for _, k := range []string{"Server", "AuthorizationPolicy", "MeshTLSAuthentication", "NetworkAuthentication", "HTTPLocalRateLimitPolicy"} {
		kinds = append(kinds, policyv1alpha1.GroupVersion.WithKind(k))
	}
	return kinds
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	pg := healthPage{Time: time.Now().UTC(), Certs: []CertRow{}, Objects: []ObjectHealth{}, Errors: []string{}}
	samples, _, err := s.Collector.snapshot("")
	if err != nil {
		pg.Errors = append(pg.Errors, err.Error())
	}
	for _, p := range samples {
		if p.cur == nil || p.cur.certExpS == 0 {
			continue
		}
		exp := time.Unix(int64(p.cur.certExpS), 0).UTC()
		pg.Certs = append(pg.Certs, CertRow{Namespace: p.namespace, Pod: p.name, Expires: exp, ExpiresInSeconds: round(time.Until(exp).Seconds())})
	}
	sort.Slice(pg.Certs, func(i, j int) bool { return pg.Certs[i].ExpiresInSeconds < pg.Certs[j].ExpiresInSeconds })
	for _, gvk := range policyKinds() {
		ctx, cancel := context.WithTimeout(r.Context(), s.APITimeout)
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		err := s.Client.List(ctx, list, client.Limit(500))
		cancel()
		if err != nil {
			if !meta.IsNoMatchError(err) {
				pg.Errors = append(pg.Errors, gvk.Kind+": "+err.Error())
			}
			continue
		}
		for _, o := range list.Items {
			pg.Objects = append(pg.Objects, ObjectHealth{Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName(), Conditions: conditionsOf(&o)})
		}
	}
	writeJSON(w, pg)
}

// conditionsOf reads status.conditions of any resource that follows the Kubernetes
// convention; resources without them show none.
func conditionsOf(o *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	out := []metav1.Condition{}
	for _, c := range raw {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { v, _ := m[k].(string); return v }
		out = append(out, metav1.Condition{Type: str("type"), Status: metav1.ConditionStatus(str("status")), Reason: str("reason"), Message: str("message")})
	}
	return out
}

// tapGroup is the aggregated API the tap view streams from.
const tapGroup = "tap.weft.dev"

func (s *Server) tapStream(w http.ResponseWriter, r *http.Request) {
	if s.Tap == nil {
		writeError(w, http.StatusNotFound, tapOff)
		return
	}
	s.Tap.ServeHTTP(w, r)
}

const tapOff = "the live tap view is turned off (weft-dashboard --tap=false); use: weft tap deploy/<name> -n <namespace>"

func (s *Server) tap(w http.ResponseWriter, _ *http.Request) {
	if s.Tap == nil {
		writeJSON(w, map[string]any{"installed": false, "enabled": false, "message": tapOff})
		return
	}
	installed := false
	if s.Discovery != nil {
		if groups, err := s.Discovery.ServerGroups(); err == nil {
			for _, g := range groups.Groups {
				installed = installed || strings.EqualFold(g.Name, tapGroup)
			}
		}
	}
	msg := "tap API not installed: the live tap view needs the " + tapGroup + " API (weft-controller's tap service)"
	if installed {
		msg = "the tap API is installed: name a workload and start a tap"
	}
	writeJSON(w, map[string]any{"installed": installed, "enabled": true, "message": msg})
}

// crossSite says why r may come from another site's page in the viewer's browser
// (empty when it cannot): a Host that is not loopback is DNS rebinding (another site's
// name resolved to the port-forward, so its scripts could read the mesh's names,
// identities and live requests), and a cross-site fetch could start taps (a denial of
// the 4 streams) even unread. The dashboard is reached only through `weft dashboard`'s
// port-forward on 127.0.0.1, so every route refuses both.
func crossSite(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Sprintf("the dashboard answers only on 127.0.0.1 or localhost (weft dashboard's port-forward), not Host %q", r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "the dashboard answers only its own pages, not a " + site + " request"
	}
	return ""
}
