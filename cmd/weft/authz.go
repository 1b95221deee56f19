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
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/workload"
	"github.com/weftmesh/weft/proxy/api"
)

// compileInbound is the control plane's inbound policy compiler, so that weft authz
// shows exactly what the pod's proxy enforces rather than a second reading of the
// resources. A variable so that a test can stand in for it.
var compileInbound = inbound.Compile

type authzOptions struct {
	target string // deploy/web, sts/db, ds/x, pod/web-1, or a pod's name
}

func newAuthzCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "authz (deploy|sts|ds|pod)/NAME | POD",
		Short: "what the inbound policy of a workload's pods admits, port by port",
		Long: "Shows, port by port, what the inbound proxy of a workload's pods admits: the Server or\n" +
			"default policy of each port, the AuthorizationPolicies that authorize clients to it, with\n" +
			"the identities and networks they require, the routes that scope them, the probe paths\n" +
			"admitted under every policy, and audit mode. It compiles the pods' inbound policy with the\n" +
			"control plane's own compiler, so it shows exactly what the proxies enforce.",
		Example:           "  weft authz deploy/web -n weft-demo",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: c.completeWorkloads,
		RunE: func(_ *cobra.Command, args []string) error {
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return authz(ctx, kc.client, kc.namespace, authzOptions{target: args[0]}, compileInbound, c.out)
		},
	}
}

// authz finds the target's pods, compiles each one's inbound policy and prints them,
// pods with the same policy together.
func authz(ctx context.Context, c client.Client, ns string, o authzOptions, compile func(inbound.Input) *api.InboundPolicy, w io.Writer) error {
	pods, err := targetPods(ctx, c, ns, o.target)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		return fmt.Errorf("no pods of %s in namespace %s", o.target, ns)
	}
	base, err := gatherAuthzInput(ctx, c, ns)
	if err != nil {
		return err
	}
	type group struct {
		pods   []string
		policy *api.InboundPolicy
	}
	var groups []*group
	for _, p := range pods {
		in := base
		in.Pod = p
		pol := compile(in)
		i := slices.IndexFunc(groups, func(g *group) bool { return g.policy.GetVersion() == pol.GetVersion() })
		if i < 0 {
			groups = append(groups, &group{policy: pol})
			i = len(groups) - 1
		}
		groups[i].pods = append(groups[i].pods, p.Name)
	}
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s in namespace %s, pods %s (policy %s)\n", o.target, ns, strings.Join(g.pods, ", "), g.policy.GetVersion())
		printInboundPolicy(w, g.policy)
	}
	return nil
}

// targetPods lists the pods of a workload (deploy/, sts/, ds/, job/, rs/ NAME as weft
// stat names them) or the one pod named, leaving out finished pods and pods on their
// way out.
func targetPods(ctx context.Context, c client.Client, ns, target string) ([]*corev1.Pod, error) {
	if !strings.Contains(target, "/") {
		target = "pod/" + target
	}
	kind, name, _ := strings.Cut(target, "/")
	short, ok := map[string]string{
		"deploy": "deploy", "deployment": "deploy", "sts": "sts", "statefulset": "sts", "ds": "ds", "daemonset": "ds",
		"job": "job", "rs": "rs", "replicaset": "rs", "pod": "pod", "po": "pod",
	}[kind]
	if !ok || name == "" {
		return nil, fmt.Errorf("cannot read %q: want deploy/NAME, sts/NAME, ds/NAME, job/NAME, rs/NAME, pod/NAME or a pod's name", target)
	}
	kind = short
	want := kind + "/" + name
	var list corev1.PodList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	rsOwner := map[string]string{}
	if kind == "deploy" {
		var rss appsv1.ReplicaSetList
		if err := c.List(ctx, &rss, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing replicasets: %w", err)
		}
		for i := range rss.Items {
			rsOwner[rss.Items[i].Namespace+"/"+rss.Items[i].Name] = workload.DeploymentOf(&rss.Items[i])
		}
	}
	var out []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if (kind == "pod" && p.Name == name) || (kind != "pod" && workload.Name(p, rsOwner) == want) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// gatherAuthzInput reads, once, what every pod of the namespace compiles from: the
// namespace, the Mesh, the namespace's Servers, AuthorizationPolicies and routes, and
// the authentications of every namespace (policies may reference them across).
func gatherAuthzInput(ctx context.Context, c client.Client, ns string) (inbound.Input, error) {
	var in inbound.Input
	nsObj := &corev1.Namespace{}
	switch err := c.Get(ctx, types.NamespacedName{Name: ns}, nsObj); {
	case apierrors.IsNotFound(err):
		return in, fmt.Errorf("namespace %s not found", ns)
	case err != nil:
		return in, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	in.Namespace = nsObj
	mesh := &meshv1alpha1.Mesh{}
	switch err := c.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, mesh); {
	case apierrors.IsNotFound(err):
		// The compiler's defaults are those of an empty Mesh.
	case err != nil:
		return in, fmt.Errorf("reading the Mesh: %w", err)
	default:
		in.Mesh = mesh
	}
	var (
		srv  policyv1alpha1.ServerList
		ap   policyv1alpha1.AuthorizationPolicyList
		mt   policyv1alpha1.MeshTLSAuthenticationList
		na   policyv1alpha1.NetworkAuthenticationList
		hr   gatewayv1.HTTPRouteList
		gr   gatewayv1.GRPCRouteList
		here = client.InNamespace(ns)
	)
	for _, l := range []struct {
		list client.ObjectList
		opts []client.ListOption
		what string
		// optional: the Gateway API CRDs may not be installed, and then no route
		// exists (docs/install.md).
		optional bool
	}{
		{&srv, []client.ListOption{here}, "Servers", false},
		{&ap, []client.ListOption{here}, "AuthorizationPolicies", false},
		{&mt, nil, "MeshTLSAuthentications", false},
		{&na, nil, "NetworkAuthentications", false},
		{&hr, []client.ListOption{here}, "HTTPRoutes", true},
		{&gr, []client.ListOption{here}, "GRPCRoutes", true},
	} {
		if err := c.List(ctx, l.list, l.opts...); err != nil && !(l.optional && meta.IsNoMatchError(err)) {
			return in, fmt.Errorf("listing %s: %w", l.what, err)
		}
	}
	in.Servers = pointers(srv.Items)
	in.AuthorizationPolicies = pointers(ap.Items)
	in.MeshTLSAuthentications = pointers(mt.Items)
	in.NetworkAuthentications = pointers(na.Items)
	in.HTTPRoutes = pointers(hr.Items)
	in.GRPCRoutes = pointers(gr.Items)
	return in, nil
}

func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// printInboundPolicy renders one compiled policy: each port the Servers (or probes)
// name, then every other port.
func printInboundPolicy(w io.Writer, p *api.InboundPolicy) {
	for _, s := range p.GetServers() {
		fmt.Fprintf(w, "\nport %d: %s\n", s.GetPort(), describeServer(s))
		printServerBody(w, s)
	}
	if d := p.GetDefaultServer(); d != nil {
		other := "every other port"
		if len(p.GetServers()) == 0 {
			other = "every port"
		}
		fmt.Fprintf(w, "\n%s: %s\n", other, describeServer(d))
		printServerBody(w, d)
	}
}

func describeServer(s *api.InboundServer) string {
	ref := s.GetRef()
	what := describeRef(ref)
	if ref.GetKind() == "default" {
		what = "default policy " + ref.GetName()
	}
	return fmt.Sprintf("%s, protocol %s", what, protocolName(s.GetProtocol()))
}

func printServerBody(w io.Writer, s *api.InboundServer) {
	if len(s.GetProbePaths()) > 0 {
		fmt.Fprintf(w, "  probes: GET and HEAD %s admitted from anyone (the kubelet's probes)\n", strings.Join(s.GetProbePaths(), ", "))
	}
	printAuthorizations(w, "  ", s.GetAuthorizations(), "no client is authorized on the whole port")
	for _, r := range s.GetRoutes() {
		fmt.Fprintf(w, "  route %s: %s\n", describeRef(r.GetRef()), describeMatches(r.GetMatches()))
		printAuthorizations(w, "    ", r.GetAuthorizations(), "only the port's authorizations")
	}
	if len(s.GetRoutes()) > 0 && s.GetProtocol() != api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE {
		fmt.Fprintln(w, "  requests that match no route: refused (404, gRPC UNIMPLEMENTED)")
	}
	if s.GetAudit() {
		fmt.Fprintln(w, "  everyone else: admitted in audit mode, each logged and counted as a would-be denial")
	} else {
		fmt.Fprintln(w, "  everyone else: denied (HTTP 403, gRPC PERMISSION_DENIED, TCP closed)")
	}
}

func printAuthorizations(w io.Writer, indent string, authz []*api.Authorization, none string) {
	if len(authz) == 0 {
		fmt.Fprintf(w, "%sallow: %s\n", indent, none)
		return
	}
	for _, a := range authz {
		fmt.Fprintf(w, "%sallow %s: %s\n", indent, describeRef(a.GetRef()), describeAuthorization(a))
	}
}

// describeAuthorization says who an authorization admits: the AND of its identity
// sets and its network sets.
func describeAuthorization(a *api.Authorization) string {
	var parts []string
	switch {
	case len(a.GetIdentities()) == 0 && len(a.GetNetworks()) == 0:
		parts = append(parts, "any client, authenticated or not")
	case len(a.GetIdentities()) == 0:
		parts = append(parts, "no identity needed")
	}
	for _, set := range a.GetIdentities() {
		if len(set.GetMatches()) == 0 {
			parts = append(parts, "any verified mesh identity")
			continue
		}
		ids := make([]string, len(set.GetMatches()))
		for i, m := range set.GetMatches() {
			if p := m.GetPrefix(); p != "" {
				ids[i] = p + "*"
			} else {
				ids[i] = m.GetExact()
			}
		}
		parts = append(parts, "identity "+strings.Join(ids, " or "))
	}
	for _, set := range a.GetNetworks() {
		nets := make([]string, len(set.GetNetworks()))
		for i, n := range set.GetNetworks() {
			nets[i] = n.GetCidr()
			if len(n.GetExcept()) > 0 {
				nets[i] += " except " + strings.Join(n.GetExcept(), ", ")
			}
		}
		parts = append(parts, "from "+strings.Join(nets, " or "))
	}
	return strings.Join(parts, "; ")
}

func describeRef(r *api.PolicyRef) string {
	if r == nil {
		return "(unnamed)"
	}
	if r.GetKind() == "default" {
		return "default " + r.GetName()
	}
	if r.GetNamespace() != "" {
		return r.GetKind() + " " + r.GetNamespace() + "/" + r.GetName()
	}
	return r.GetKind() + " " + r.GetName()
}

func describeMatches(ms []*api.RouteMatch) string {
	if len(ms) == 0 {
		return "every request"
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		var p []string
		if m.GetMethod() != "" {
			p = append(p, m.GetMethod())
		}
		if sm := m.GetPath(); sm != nil {
			p = append(p, describeString("path", sm))
		}
		for _, h := range m.GetHeaders() {
			p = append(p, describeString("header "+h.GetName(), h.GetValue()))
		}
		for _, q := range m.GetQueryParams() {
			p = append(p, describeString("query "+q.GetName(), q.GetValue()))
		}
		if g := m.GetGrpc(); g != nil {
			if g.GetService() != nil {
				p = append(p, describeString("gRPC service", g.GetService()))
			}
			if g.GetMethod() != nil {
				p = append(p, describeString("gRPC method", g.GetMethod()))
			}
		}
		if len(p) == 0 {
			p = append(p, "any")
		}
		out[i] = strings.Join(p, " ")
	}
	return strings.Join(out, " | ")
}

func describeString(what string, m *api.StringMatch) string {
	switch {
	case m.GetPrefix() != "":
		return what + " prefix " + m.GetPrefix()
	case m.GetRegex() != "":
		return what + " ~ " + m.GetRegex()
	}
	return what + " " + m.GetExact()
}

func protocolName(p api.InboundProtocol) string {
	switch p {
	case api.InboundProtocol_INBOUND_PROTOCOL_HTTP1:
		return "HTTP/1"
	case api.InboundProtocol_INBOUND_PROTOCOL_HTTP2:
		return "HTTP/2"
	case api.InboundProtocol_INBOUND_PROTOCOL_GRPC:
		return "gRPC"
	case api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE:
		return "opaque"
	case api.InboundProtocol_INBOUND_PROTOCOL_TLS:
		return "TLS"
	}
	return "detected"
}
