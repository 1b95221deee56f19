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

// Package inbound compiles the inbound policy of one pod (proxy/api InboundPolicy) from
// the cluster's policy resources, and serves it to the pod's proxy over the
// InboundPolicies API on the destination service's port.
//
// Compile is a pure, deterministic function with the semantics of Linkerd's policy
// controller: the pod's default policy (Mesh, namespace, pod, narrowed to the Mesh's
// floor) for every port no Server selects; one InboundServer per port a Server selects,
// whose authorizations are its accessPolicy's and those of the AuthorizationPolicies that
// target it (or the whole namespace); HTTPRoutes and GRPCRoutes attached to a Server as
// its routes, with the AuthorizationPolicies that target them; the kubelet's HTTP probe
// paths admitted on every port. Whatever it cannot resolve authorizes nothing: a policy
// that names a missing or malformed authentication, or targets what does not exist,
// contributes no authorization, so a mistake never widens access.
package inbound

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/defaultpolicy"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
)

// The names that refs carry on the wire.
const (
	// KindDefault is the kind of a built-in policy or authorization: the default
	// policies by name, ProbeAuthorization and AuditAuthorization.
	KindDefault = "default"
	// ProbeAuthorization and AuditAuthorization name the proxy's built-in
	// authorizations (see InboundServer.probe_paths and audit).
	ProbeAuthorization = "probe"
	AuditAuthorization = "audit"
	// KindServer and KindAuthorizationPolicy are the kinds of policy.weft.dev refs.
	KindServer              = "Server"
	KindAuthorizationPolicy = "AuthorizationPolicy"
)

// PolicyGroup is the API group of the policy kinds as refs name them.
var PolicyGroup = policyv1alpha1.GroupVersion.Group

// Input is everything one pod's inbound policy is compiled from. The slices may hold
// objects of other namespaces (they are ignored where the rules say so); their order
// does not matter.
type Input struct {
	// Pod is the pod whose policy is compiled (required).
	Pod *corev1.Pod
	// Namespace is the pod's namespace (its default-inbound-policy annotation); nil
	// when unknown.
	Namespace *corev1.Namespace
	// Mesh is the cluster's Mesh; nil: the defaults of an empty Mesh.
	Mesh *meshv1alpha1.Mesh
	// Servers, AuthorizationPolicies, HTTPRoutes and GRPCRoutes of the pod's namespace.
	Servers               []*policyv1alpha1.Server
	AuthorizationPolicies []*policyv1alpha1.AuthorizationPolicy
	// MeshTLSAuthentications and NetworkAuthentications of any namespace (policies
	// may reference them across namespaces).
	MeshTLSAuthentications []*policyv1alpha1.MeshTLSAuthentication
	NetworkAuthentications []*policyv1alpha1.NetworkAuthentication
	HTTPRoutes             []*gatewayv1.HTTPRoute
	GRPCRoutes             []*gatewayv1.GRPCRoute
	// RateLimitPolicies of the pod's namespace; a Server takes the oldest valid one
	// that targets it.
	RateLimitPolicies []*policyv1alpha1.HTTPLocalRateLimitPolicy
}

// Compile returns the inbound policy of in.Pod. It reads only its argument, and the
// same input gives the same message (and version) whatever the order of its slices.
func Compile(in Input) *api.InboundPolicy {
	c := newCompilation(in)
	out := &api.InboundPolicy{DefaultServer: c.defaultServer()}
	servers := c.servers()
	probes := c.probePaths()
	for _, s := range servers {
		s.ProbePaths = probes[s.Port]
		delete(probes, s.Port)
	}
	// A probe port no Server selects follows the default policy, in an entry of its
	// own so that its probe paths can be listed.
	for port, paths := range probes {
		s := proto.Clone(out.DefaultServer).(*api.InboundServer)
		s.Port, s.ProbePaths = port, paths
		servers = append(servers, s)
	}
	slices.SortFunc(servers, func(a, b *api.InboundServer) int { return cmp.Compare(a.Port, b.Port) })
	out.Servers = servers
	out.Tracing = TracingConfig(in.Mesh, in.Pod)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
	if err != nil {
		// The message has no field that can fail to marshal (no maps, valid UTF-8
		// from the API server's objects); a version that changes on every call is the
		// safe answer should one ever fail: the proxy then just takes it again.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	out.Version = hex.EncodeToString(sum[:8])
	return out
}

// compilation holds one Compile call's working state.
type compilation struct {
	in          Input
	pod         *corev1.Pod
	ns          string
	trustDomain string
	clusterNets []*api.Network
	// selected are the Servers that won a port of the pod, by name.
	selected map[string]*selectedServer
	// routeAuthz are the authorizations of the policies that target a route, by
	// "<kind>/<name>".
	routeAuthz map[string][]*api.Authorization
}

// selectedServer is a Server that applies to one or more of the pod's ports.
type selectedServer struct {
	srv   *policyv1alpha1.Server
	ports []uint32
	// authorizations and routes the policies and routes of the namespace add.
	authorizations []*api.Authorization
	routes         []routeEntry
}

func newCompilation(in Input) *compilation {
	c := &compilation{in: in, pod: in.Pod, ns: in.Pod.Namespace, trustDomain: meshdefaults.TrustDomain}
	nets := meshdefaults.ClusterNetworks()
	if m := in.Mesh; m != nil {
		if m.Spec.TrustDomain != "" {
			c.trustDomain = m.Spec.TrustDomain
		}
		if len(m.Spec.ClusterNetworks) > 0 {
			nets = m.Spec.ClusterNetworks
		}
	}
	for _, n := range nets {
		// The Mesh's schema admits only CIDRs; one that does not parse is left out,
		// which only narrows the cluster-* policies.
		if p, ok := parseNetwork(n); ok {
			c.clusterNets = append(c.clusterNets, &api.Network{Cidr: p})
		}
	}
	return c
}

// Decide returns the pod's default policy decision, as Compile applies it: the pod's
// config.weft.dev/default-inbound-policy annotation, else its namespace's, else the
// Mesh's, narrowed to the Mesh's floor.
func Decide(mesh *meshv1alpha1.Mesh, ns *corev1.Namespace, pod *corev1.Pod) defaultpolicy.Decision {
	var spec meshv1alpha1.ProxySpec
	if mesh != nil {
		spec = mesh.Spec.Proxy
	}
	nsValue := ""
	if ns != nil {
		nsValue = ns.Annotations[meshdefaults.AnnotationDefaultInboundPolicy]
	}
	return defaultpolicy.Decide(spec, nsValue, pod.Annotations[meshdefaults.AnnotationDefaultInboundPolicy])
}

func (c *compilation) defaultServer() *api.InboundServer {
	p := Decide(c.in.Mesh, c.in.Namespace, c.pod).Policy
	name := string(p.Name())
	return &api.InboundServer{
		Ref:            &api.PolicyRef{Kind: KindDefault, Name: name},
		Protocol:       api.InboundProtocol_INBOUND_PROTOCOL_DETECT,
		Authorizations: c.defaultAuthorizations(p, name),
		Audit:          p.Audit,
	}
}

// defaultAuthorizations are the authorizations of a default policy (or of a Server's
// accessPolicy of the same name): none for deny and audit, else one whose conditions
// are the policy's.
func (c *compilation) defaultAuthorizations(p defaultpolicy.Policy, name string) []*api.Authorization {
	if p.Deny || p.Audit {
		return nil
	}
	a := &api.Authorization{Ref: &api.PolicyRef{Kind: KindDefault, Name: name}}
	if p.Cluster {
		a.Networks = []*api.NetworkSet{{Networks: cloneNetworks(c.clusterNets)}}
	}
	if p.Authenticated {
		// An empty set: any verified identity.
		a.Identities = []*api.IdentitySet{{}}
	}
	return []*api.Authorization{a}
}

func cloneNetworks(ns []*api.Network) []*api.Network {
	out := make([]*api.Network, len(ns))
	for i, n := range ns {
		out[i] = proto.Clone(n).(*api.Network)
	}
	return out
}

// servers returns one InboundServer per port a Server of the pod's namespace selects.
func (c *compilation) servers() []*api.InboundServer {
	winner := map[uint32]*policyv1alpha1.Server{}
	for _, s := range c.in.Servers {
		if s.Namespace != c.ns || !selects(s, c.pod) {
			continue
		}
		for _, port := range ServerPorts(s, c.pod) {
			if w := winner[port]; w == nil || older(s, w) {
				winner[port] = s
			}
		}
	}
	c.selected = map[string]*selectedServer{}
	for port, s := range winner {
		sel := c.selected[s.Name]
		if sel == nil {
			sel = &selectedServer{srv: s}
			c.selected[s.Name] = sel
		}
		sel.ports = append(sel.ports, port)
	}
	c.authorizationPolicies()
	c.routes()
	limits := c.rateLimits()

	var out []*api.InboundServer
	for _, sel := range c.selected {
		s := sel.srv
		access := s.Spec.AccessPolicy
		if access == "" {
			access = policyv1alpha1.AccessDeny
		}
		p, ok := defaultpolicy.Parse(meshv1alpha1.InboundPolicy(access))
		if !ok {
			// The schema admits only known values; an unknown one admits no one.
			p = defaultpolicy.Policy{Deny: true}
		}
		authz := c.defaultAuthorizations(p, string(access))
		authz = append(authz, sel.authorizations...)
		var routes []*api.InboundRoute
		if prot := protocol(s.Spec.ProxyProtocol); prot != api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE && prot != api.InboundProtocol_INBOUND_PROTOCOL_TLS {
			slices.SortStableFunc(sel.routes, compareRoutes)
			for _, r := range sel.routes {
				routes = append(routes, r.route)
			}
		}
		for _, port := range sel.ports {
			out = append(out, &api.InboundServer{
				Port:           port,
				Ref:            &api.PolicyRef{Group: PolicyGroup, Kind: KindServer, Namespace: s.Namespace, Name: s.Name},
				Protocol:       protocol(s.Spec.ProxyProtocol),
				Authorizations: cloneAuthorizations(authz),
				Routes:         cloneRoutes(routes),
				Audit:          p.Audit,
				RateLimit:      cloneRateLimit(limits[s.Name], s.Spec.ProxyProtocol),
			})
		}
	}
	return out
}

// cloneAuthorizations and cloneRoutes give each port its own messages: a message
// shared by two parents would be marshalled (and later modified by a consumer) twice.
func cloneAuthorizations(in []*api.Authorization) []*api.Authorization {
	out := make([]*api.Authorization, len(in))
	for i, a := range in {
		out[i] = proto.Clone(a).(*api.Authorization)
	}
	return out
}

// cloneRateLimit gives a port its own copy of its Server's rate limit; an opaque or TLS
// port carries none, since no request of it is ever read.
func cloneRateLimit(rl *api.RateLimit, p policyv1alpha1.ProxyProtocol) *api.RateLimit {
	if rl == nil || p == policyv1alpha1.ProxyProtocolOpaque || p == policyv1alpha1.ProxyProtocolTLS {
		return nil
	}
	return proto.Clone(rl).(*api.RateLimit)
}

func cloneRoutes(in []*api.InboundRoute) []*api.InboundRoute {
	if in == nil {
		return nil
	}
	out := make([]*api.InboundRoute, len(in))
	for i, r := range in {
		out[i] = proto.Clone(r).(*api.InboundRoute)
	}
	return out
}

// selects says whether a Server's podSelector selects the pod. A selector that does not
// parse selects nothing (the Server's status reports it).
func selects(s *policyv1alpha1.Server, pod *corev1.Pod) bool {
	sel, err := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(pod.Labels))
}

// SelectsPod says whether a Server selects a pod: its podSelector matches the pod's
// labels and its port is a number or the name of one of the pod's container ports.
func SelectsPod(s *policyv1alpha1.Server, pod *corev1.Pod) bool {
	return s.Namespace == pod.Namespace && selects(s, pod) && len(ServerPorts(s, pod)) > 0
}

// ServerPorts resolves a Server's port on a pod: a number as is, a name to the
// container ports of that name (none: the Server does not apply to the pod). The
// Server status reconciler resolves ports with it too, so what it reports is what the
// proxy enforces.
func ServerPorts(s *policyv1alpha1.Server, pod *corev1.Pod) []uint32 {
	if s.Spec.Port.Type == intstr.Int {
		if p := s.Spec.Port.IntVal; p >= 1 && p <= 65535 {
			return []uint32{uint32(p)}
		}
		return nil
	}
	var out []uint32
	for _, ctr := range appContainers(pod) {
		for _, cp := range ctr.Ports {
			if cp.Name == s.Spec.Port.StrVal && cp.ContainerPort >= 1 && cp.ContainerPort <= 65535 && !slices.Contains(out, uint32(cp.ContainerPort)) {
				out = append(out, uint32(cp.ContainerPort))
			}
		}
	}
	return out
}

// appContainers are the pod's containers and sidecars (init containers with
// restartPolicy Always, which serve like containers), less the proxy itself: its ports
// are not the application's.
func appContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		ctr := &pod.Spec.InitContainers[i]
		if ctr.RestartPolicy != nil && *ctr.RestartPolicy == corev1.ContainerRestartPolicyAlways && ctr.Name != meshdefaults.ProxyContainerName {
			out = append(out, ctr)
		}
	}
	for i := range pod.Spec.Containers {
		if ctr := &pod.Spec.Containers[i]; ctr.Name != meshdefaults.ProxyContainerName {
			out = append(out, ctr)
		}
	}
	return out
}

// older says whether a wins over b for a port: the oldest Server, then the first by
// name (Linkerd's rule; the others report the conflict in their status).
func older(a, b *policyv1alpha1.Server) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func protocol(p policyv1alpha1.ProxyProtocol) api.InboundProtocol {
	switch p {
	case policyv1alpha1.ProxyProtocolHTTP1:
		return api.InboundProtocol_INBOUND_PROTOCOL_HTTP1
	case policyv1alpha1.ProxyProtocolHTTP2:
		return api.InboundProtocol_INBOUND_PROTOCOL_HTTP2
	case policyv1alpha1.ProxyProtocolGRPC:
		return api.InboundProtocol_INBOUND_PROTOCOL_GRPC
	case policyv1alpha1.ProxyProtocolOpaque:
		return api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE
	case policyv1alpha1.ProxyProtocolTLS:
		return api.InboundProtocol_INBOUND_PROTOCOL_TLS
	}
	return api.InboundProtocol_INBOUND_PROTOCOL_DETECT
}

// IsPolicyGroup says whether a ref's group is policy.weft.dev, or Linkerd's
// policy.linkerd.io which means the same.
func IsPolicyGroup(g string) bool {
	return g == PolicyGroup || g == policyv1alpha1.LinkerdGroup
}

// authorizationPolicies adds the pod namespace's AuthorizationPolicies to the Servers
// and routes they target.
func (c *compilation) authorizationPolicies() {
	pols := slices.Clone(c.in.AuthorizationPolicies)
	slices.SortFunc(pols, func(a, b *policyv1alpha1.AuthorizationPolicy) int { return cmp.Compare(a.Name, b.Name) })
	c.routeAuthz = map[string][]*api.Authorization{}
	for _, p := range pols {
		if p.Namespace != c.ns {
			continue
		}
		a, ok := c.authorization(p)
		if !ok {
			continue
		}
		t := p.Spec.TargetRef
		switch {
		case IsPolicyGroup(t.Group) && t.Kind == KindServer:
			if sel := c.selected[t.Name]; sel != nil {
				sel.authorizations = append(sel.authorizations, a)
			}
		case t.Group == "" && t.Kind == "Namespace":
			// Every Server of the namespace, never the default policy: the ports no
			// Server selects keep what the default policy admits.
			if t.Name != p.Namespace {
				continue
			}
			for _, sel := range c.selected {
				sel.authorizations = append(sel.authorizations, a)
			}
		case t.Group == gatewayv1.GroupName && (t.Kind == "HTTPRoute" || t.Kind == "GRPCRoute"):
			k := t.Kind + "/" + t.Name
			c.routeAuthz[k] = append(c.routeAuthz[k], a)
		}
	}
}

// authorization compiles an AuthorizationPolicy with the input's authentications.
func (c *compilation) authorization(p *policyv1alpha1.AuthorizationPolicy) (*api.Authorization, bool) {
	a, err := Authorization(p, c.in.MeshTLSAuthentications, c.in.NetworkAuthentications, c.trustDomain)
	return a, err == nil
}

// Authorization compiles an AuthorizationPolicy's required authentications (found among
// meshTLS and networks, of any namespace) in trust domain td. The error says which
// reference does not resolve and why, for status and the CLI: such a policy authorizes
// no one, so a mistake never widens access.
func Authorization(p *policyv1alpha1.AuthorizationPolicy, meshTLS []*policyv1alpha1.MeshTLSAuthentication,
	networks []*policyv1alpha1.NetworkAuthentication, td string) (*api.Authorization, error) {
	a := &api.Authorization{Ref: &api.PolicyRef{Group: PolicyGroup, Kind: KindAuthorizationPolicy, Namespace: p.Namespace, Name: p.Name}}
	for _, ref := range p.Spec.RequiredAuthenticationRefs {
		ns := cmp.Or(ref.Namespace, p.Namespace)
		switch {
		case IsPolicyGroup(ref.Group) && ref.Kind == "MeshTLSAuthentication":
			m := find(meshTLS, ns, ref.Name)
			if m == nil {
				return nil, fmt.Errorf("MeshTLSAuthentication %s/%s does not exist", ns, ref.Name)
			}
			set, err := IdentitySet(m, td)
			if err != nil {
				return nil, fmt.Errorf("MeshTLSAuthentication %s/%s: %w", ns, ref.Name, err)
			}
			a.Identities = append(a.Identities, set)
		case IsPolicyGroup(ref.Group) && ref.Kind == "NetworkAuthentication":
			n := find(networks, ns, ref.Name)
			if n == nil {
				return nil, fmt.Errorf("NetworkAuthentication %s/%s does not exist", ns, ref.Name)
			}
			set, err := NetworkSet(n)
			if err != nil {
				return nil, fmt.Errorf("NetworkAuthentication %s/%s: %w", ns, ref.Name, err)
			}
			a.Networks = append(a.Networks, set)
		case ref.Group == "" && ref.Kind == "ServiceAccount":
			if ref.Name == "" {
				return nil, errors.New("a ServiceAccount reference needs a name")
			}
			a.Identities = append(a.Identities, &api.IdentitySet{Matches: []*api.IdentityMatch{
				exact(peertls.WorkloadID(td, ns, ref.Name))}})
		default:
			return nil, fmt.Errorf("%s %s is not an authentication: use a MeshTLSAuthentication or NetworkAuthentication (group %s) or a ServiceAccount (core group)",
				groupKind(ref.Group, ref.Kind), ref.Name, PolicyGroup)
		}
	}
	return a, nil
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return kind + "." + group
}

func find[T interface {
	*policyv1alpha1.MeshTLSAuthentication | *policyv1alpha1.NetworkAuthentication
	GetNamespace() string
	GetName() string
}](objs []T, ns, name string) T {
	for _, o := range objs {
		if o.GetNamespace() == ns && o.GetName() == name {
			return o
		}
	}
	return nil
}

func exact(id string) *api.IdentityMatch {
	return &api.IdentityMatch{Kind: &api.IdentityMatch_Exact{Exact: id}}
}

func prefix(p string) *api.IdentityMatch {
	return &api.IdentityMatch{Kind: &api.IdentityMatch_Prefix{Prefix: p}}
}

// IdentitySet compiles a MeshTLSAuthentication in trust domain td, or says which entry
// is not an identity Weft can name (then it authenticates no one). "*", or a Namespace
// reference without a name, is any verified identity: the empty set.
func IdentitySet(m *policyv1alpha1.MeshTLSAuthentication, td string) (*api.IdentitySet, error) {
	if len(m.Spec.Identities) == 0 && len(m.Spec.IdentityRefs) == 0 {
		// The schema requires one of them; an empty set would mean "anyone".
		return nil, errors.New("lists no identities and no identityRefs")
	}
	var matches []*api.IdentityMatch
	anyID := false
	for _, id := range m.Spec.Identities {
		im, all, ok := identityMatch(string(id), td)
		if !ok {
			return nil, fmt.Errorf("identity %q is not a SPIFFE ID (a final /* for a prefix), \"*\" or a Linkerd identity name <sa>.<namespace>.serviceaccount.identity.<...>", id)
		}
		anyID = anyID || all
		if im != nil {
			matches = append(matches, im)
		}
	}
	for _, ref := range m.Spec.IdentityRefs {
		switch {
		case ref.Group == "" && ref.Kind == "ServiceAccount":
			ns := cmp.Or(ref.Namespace, m.Namespace)
			if ref.Name == "" {
				matches = append(matches, prefix("spiffe://"+td+"/ns/"+ns+"/sa/"))
			} else {
				matches = append(matches, exact(peertls.WorkloadID(td, ns, ref.Name)))
			}
		case ref.Group == "" && ref.Kind == "Namespace":
			if ref.Name == "" {
				anyID = true
			} else {
				matches = append(matches, prefix("spiffe://"+td+"/ns/"+ref.Name+"/"))
			}
		default:
			return nil, fmt.Errorf("identityRef %s %s is not a ServiceAccount or a Namespace", groupKind(ref.Group, ref.Kind), ref.Name)
		}
	}
	if anyID {
		return &api.IdentitySet{}, nil
	}
	slices.SortFunc(matches, compareIdentityMatch)
	matches = slices.CompactFunc(matches, func(a, b *api.IdentityMatch) bool { return compareIdentityMatch(a, b) == 0 })
	return &api.IdentitySet{Matches: matches}, nil
}

// compareIdentityMatch orders exact IDs before prefixes, each by value.
func compareIdentityMatch(a, b *api.IdentityMatch) int {
	_, ap := a.GetKind().(*api.IdentityMatch_Prefix)
	_, bp := b.GetKind().(*api.IdentityMatch_Prefix)
	if ap != bp {
		if bp {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.GetExact(), b.GetExact()), cmp.Compare(a.GetPrefix(), b.GetPrefix()))
}

// identityMatch reads one identities entry: all when it is "*"; !ok when it names
// nothing Weft can match.
func identityMatch(id, td string) (m *api.IdentityMatch, all, ok bool) {
	if id == "*" {
		return nil, true, true
	}
	if rest, found := strings.CutPrefix(id, "spiffe://"); found {
		base, wildcard := strings.CutSuffix(rest, "/*")
		// A trust domain is required, and "*" is a wildcard only as the last segment.
		if base == "" || strings.HasPrefix(base, "/") || strings.Contains(base, "*") {
			return nil, false, false
		}
		if wildcard {
			return prefix("spiffe://" + base + "/"), false, true
		}
		return exact(id), false, true
	}
	// Linkerd's identity names: <sa>.<ns>.serviceaccount.identity.<control plane
	// namespace>.<trust domain>, or *.<ns>.serviceaccount.identity.<...> for every
	// ServiceAccount of a namespace. The trust domain is the Mesh's.
	labels := strings.Split(id, ".")
	if len(labels) < 5 || labels[2] != "serviceaccount" || labels[3] != "identity" ||
		labels[0] == "" || labels[1] == "" || labels[1] == "*" || slices.Contains(labels[2:], "*") || slices.Contains(labels[4:], "") {
		return nil, false, false
	}
	if labels[0] == "*" {
		return prefix("spiffe://" + td + "/ns/" + labels[1] + "/sa/"), false, true
	}
	return exact(peertls.WorkloadID(td, labels[1], labels[0])), false, true
}

// NetworkSet compiles a NetworkAuthentication, or says which network does not parse
// (then it authenticates no one).
func NetworkSet(n *policyv1alpha1.NetworkAuthentication) (*api.NetworkSet, error) {
	if len(n.Spec.Networks) == 0 {
		return nil, errors.New("lists no networks")
	}
	set := &api.NetworkSet{}
	for _, nw := range n.Spec.Networks {
		cidr, ok := parseNetwork(string(nw.Cidr))
		if !ok {
			return nil, fmt.Errorf("cidr %q is not an IP network or address", nw.Cidr)
		}
		out := &api.Network{Cidr: cidr}
		for _, e := range nw.Except {
			ex, ok := parseNetwork(string(e))
			if !ok {
				return nil, fmt.Errorf("except %q is not an IP network or address", e)
			}
			out.Except = append(out.Except, ex)
		}
		set.Networks = append(set.Networks, out)
	}
	return set, nil
}

// parseNetwork reads a CIDR or a single address into canonical CIDR form (the address
// masked; a single address as /32 or /128).
func parseNetwork(s string) (string, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()).String(), true
	}
	return "", false
}

// routeEntry is one (rule, match) of a route attached to a Server, with what orders it.
type routeEntry struct {
	route   *api.InboundRoute
	rank    compiler.MatchRank
	created metav1.Time
	name    string
	rule    int
	match   int
}

// compareRoutes orders routes as the destination compiler does (Gateway API's
// precedence), since the proxy takes the first that matches.
func compareRoutes(a, b routeEntry) int {
	if c := compiler.CompareMatchRank(a.rank, b.rank); c != 0 {
		return c
	}
	if !a.created.Equal(&b.created) {
		if a.created.Before(&b.created) {
			return -1
		}
		return 1
	}
	return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.rule, b.rule), cmp.Compare(a.match, b.match))
}

// attachedServers are the selected Servers a route's parentRefs name.
func (c *compilation) attachedServers(routeNS string, refs []gatewayv1.ParentReference) []*selectedServer {
	var out []*selectedServer
	for _, pr := range refs {
		if pr.Group == nil || !IsPolicyGroup(string(*pr.Group)) || pr.Kind == nil || *pr.Kind != KindServer {
			continue
		}
		if pr.Namespace != nil && string(*pr.Namespace) != routeNS {
			continue
		}
		if sel := c.selected[string(pr.Name)]; sel != nil && !slices.Contains(out, sel) {
			out = append(out, sel)
		}
	}
	return out
}

// routes attaches the namespace's HTTPRoutes and GRPCRoutes to the Servers they name,
// one InboundRoute per (rule, match) so that they can be ordered by precedence, with
// the authorizations of the policies that target the route. A rule Weft cannot
// implement is dropped, as the destination compiler drops it (status says why).
func (c *compilation) routes() {
	for _, r := range c.in.HTTPRoutes {
		if r.Namespace != c.ns {
			continue
		}
		sels := c.attachedServers(r.Namespace, r.Spec.ParentRefs)
		if len(sels) == 0 {
			continue
		}
		for ri, rule := range r.Spec.Rules {
			if compiler.HTTPRuleProblem(rule) == "" {
				addRuleRoutes(c, sels, "HTTPRoute", r.ObjectMeta, rule.Name, ri, rule.Matches, compiler.HTTPMatch)
			}
		}
	}
	for _, r := range c.in.GRPCRoutes {
		if r.Namespace != c.ns {
			continue
		}
		sels := c.attachedServers(r.Namespace, r.Spec.ParentRefs)
		if len(sels) == 0 {
			continue
		}
		for ri, rule := range r.Spec.Rules {
			if compiler.GRPCRuleProblem(rule) == "" {
				addRuleRoutes(c, sels, "GRPCRoute", r.ObjectMeta, rule.Name, ri, rule.Matches, compiler.GRPCMatch)
			}
		}
	}
}

// addRuleRoutes adds one InboundRoute per match of rule ri of a route (a rule without
// matches matches every request), compiled with the destination compiler's own match
// function, carrying the authorizations of the policies that target the route.
func addRuleRoutes[M any](c *compilation, sels []*selectedServer, kind string, route metav1.ObjectMeta,
	ruleName *gatewayv1.SectionName, ri int, matches []M, match func(M) (*api.RouteMatch, compiler.MatchRank)) {
	if len(matches) == 0 {
		matches = []M{*new(M)}
	}
	authz := c.routeAuthz[kind+"/"+route.Name]
	for mi, m := range matches {
		rm, rank := match(m)
		c.addRoute(sels, routeEntry{rank: rank, created: route.CreationTimestamp, name: route.Name, rule: ri, match: mi,
			route: &api.InboundRoute{
				Ref:            &api.PolicyRef{Group: gatewayv1.GroupName, Kind: kind, Namespace: route.Namespace, Name: compiler.RouteName(route.Name, ruleName, ri)},
				Matches:        []*api.RouteMatch{rm},
				Authorizations: authz,
			}})
	}
}

func (c *compilation) addRoute(sels []*selectedServer, e routeEntry) {
	for _, sel := range sels {
		sel.routes = append(sel.routes, e)
	}
}

// probePaths are the paths of the kubelet's HTTP probes of the pod's containers, by
// port: a named port is the container's port of that name. HTTPS probes are left out
// (the proxy cannot read their path; the port's policy applies to them).
func (c *compilation) probePaths() map[uint32][]string {
	out := map[uint32][]string{}
	for _, ctr := range appContainers(c.pod) {
		for _, p := range []*corev1.Probe{ctr.LivenessProbe, ctr.ReadinessProbe, ctr.StartupProbe} {
			if p == nil || p.HTTPGet == nil || (p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP) {
				continue
			}
			port, ok := probePort(ctr, p.HTTPGet.Port)
			if !ok {
				continue
			}
			path := p.HTTPGet.Path
			// The kubelet sends the path as given, with its query; the proxy compares
			// the request's path without it.
			path, _, _ = strings.Cut(path, "?")
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			if !slices.Contains(out[port], path) {
				out[port] = append(out[port], path)
			}
		}
	}
	for _, paths := range out {
		slices.Sort(paths)
	}
	return out
}

func probePort(ctr *corev1.Container, p intstr.IntOrString) (uint32, bool) {
	if p.Type == intstr.Int {
		return uint32(p.IntVal), p.IntVal >= 1 && p.IntVal <= 65535
	}
	for _, cp := range ctr.Ports {
		if cp.Name == p.StrVal && cp.ContainerPort >= 1 && cp.ContainerPort <= 65535 {
			return uint32(cp.ContainerPort), true
		}
	}
	return 0, false
}
