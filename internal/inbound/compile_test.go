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

package inbound

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/proxy/api"
)

// The pod every case compiles: web-0 in shop, ServiceAccount web, a container with
// ports http (8080) and admin (9090), and the injected proxy (whose own probes and
// ports are never the application's).
const podYAML = `
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  initContainers:
  - name: weft-proxy
    restartPolicy: Always
    ports: [{name: http, containerPort: 4143}]
    readinessProbe: {httpGet: {path: /ready, port: 4191}}
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090}]
`

// decode reads YAML documents into an Input (the pod first).
func decode(t testing.TB, docs ...string) Input {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()
	var in Input
	for _, d := range docs {
		for _, doc := range strings.Split(d, "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, _, err := dec.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("decoding %q: %v", doc, err)
			}
			switch o := obj.(type) {
			case *corev1.Pod:
				in.Pod = o
			case *corev1.Namespace:
				in.Namespace = o
			case *meshv1alpha1.Mesh:
				in.Mesh = o
			case *policyv1alpha1.Server:
				in.Servers = append(in.Servers, o)
			case *policyv1alpha1.AuthorizationPolicy:
				in.AuthorizationPolicies = append(in.AuthorizationPolicies, o)
			case *policyv1alpha1.MeshTLSAuthentication:
				in.MeshTLSAuthentications = append(in.MeshTLSAuthentications, o)
			case *policyv1alpha1.NetworkAuthentication:
				in.NetworkAuthentications = append(in.NetworkAuthentications, o)
			case *gatewayv1.HTTPRoute:
				in.HTTPRoutes = append(in.HTTPRoutes, o)
			case *gatewayv1.GRPCRoute:
				in.GRPCRoutes = append(in.GRPCRoutes, o)
			case *policyv1alpha1.HTTPLocalRateLimitPolicy:
				in.RateLimitPolicies = append(in.RateLimitPolicies, o)
			default:
				t.Fatalf("unexpected %T", obj)
			}
		}
	}
	return in
}

// Builders of the expected messages.
func dflt(name string) *api.PolicyRef { return &api.PolicyRef{Kind: "default", Name: name} }
func srvRef(name string) *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: "Server", Namespace: "shop", Name: name}
}
func apRef(name string) *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: "AuthorizationPolicy", Namespace: "shop", Name: name}
}
func authz(ref *api.PolicyRef, nets []*api.NetworkSet, ids ...*api.IdentitySet) *api.Authorization {
	return &api.Authorization{Ref: ref, Networks: nets, Identities: ids}
}
func ids(ms ...*api.IdentityMatch) *api.IdentitySet { return &api.IdentitySet{Matches: ms} }
func nets(cidrs ...string) []*api.NetworkSet {
	s := &api.NetworkSet{}
	for _, c := range cidrs {
		s.Networks = append(s.Networks, &api.Network{Cidr: c})
	}
	return []*api.NetworkSet{s}
}

var privateRanges = nets("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")

func defaultServer(policy string, az ...*api.Authorization) *api.InboundServer {
	return &api.InboundServer{Ref: dflt(policy), Authorizations: az}
}

func server(port uint32, name string, proto api.InboundProtocol, az ...*api.Authorization) *api.InboundServer {
	return &api.InboundServer{Port: port, Ref: srvRef(name), Protocol: proto, Authorizations: az}
}

const detect = api.InboundProtocol_INBOUND_PROTOCOL_DETECT

// check compiles and compares everything but the version.
func check(t *testing.T, in Input, want *api.InboundPolicy) {
	t.Helper()
	got := Compile(in)
	if got.Version == "" {
		t.Error("no version")
	}
	got = proto.Clone(got).(*api.InboundPolicy)
	got.Version = ""
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("policy (-want +got):\n%s", d)
	}
}

func TestDefaultPolicies(t *testing.T) {
	mesh := func(policy, floor string, networks ...string) string {
		y := "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  trustDomain: example.org\n  proxy: {defaultInboundPolicy: " + policy
		if floor != "" {
			y += ", inboundPolicyFloor: " + floor
		}
		y += "}\n"
		if len(networks) > 0 {
			y += "  clusterNetworks: [" + strings.Join(networks, ", ") + "]\n"
		}
		return y
	}
	ns := func(policy string) string {
		return "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {config.weft.dev/default-inbound-policy: " + policy + "}}\n"
	}
	podWith := func(policy string) string {
		return strings.Replace(podYAML, "labels: {app: web}", "labels: {app: web}, annotations: {config.weft.dev/default-inbound-policy: "+policy+"}", 1)
	}
	cluster := nets("10.1.0.0/16")
	for _, tc := range []struct {
		name string
		docs []string
		want *api.InboundServer
	}{
		{"no Mesh: all-unauthenticated", []string{podYAML},
			defaultServer("all-unauthenticated", authz(dflt("all-unauthenticated"), nil))},
		{"all-authenticated: any verified identity", []string{podYAML, mesh("all-authenticated", "")},
			defaultServer("all-authenticated", authz(dflt("all-authenticated"), nil, ids()))},
		{"cluster-unauthenticated: the cluster's networks", []string{podYAML, mesh("cluster-unauthenticated", "", "10.1.0.0/16")},
			defaultServer("cluster-unauthenticated", authz(dflt("cluster-unauthenticated"), cluster))},
		{"cluster-authenticated: both", []string{podYAML, mesh("cluster-authenticated", "", "10.1.0.0/16")},
			defaultServer("cluster-authenticated", authz(dflt("cluster-authenticated"), cluster, ids()))},
		{"deny: no authorization", []string{podYAML, mesh("deny", "")}, defaultServer("deny")},
		{"audit: no authorization, audit", []string{podYAML, mesh("audit", "")},
			&api.InboundServer{Ref: dflt("audit"), Audit: true}},
		{"no Mesh, cluster policy by namespace: Linkerd's private ranges", []string{podYAML, ns("cluster-unauthenticated")},
			defaultServer("cluster-unauthenticated", authz(dflt("cluster-unauthenticated"), privateRanges))},
		{"namespace overrides the Mesh", []string{podYAML, mesh("all-unauthenticated", ""), ns("deny")}, defaultServer("deny")},
		{"pod overrides the namespace", []string{podWith("all-authenticated"), mesh("deny", ""), ns("deny")},
			defaultServer("all-authenticated", authz(dflt("all-authenticated"), nil, ids()))},
		{"the floor narrows the pod's choice", []string{podWith("all-authenticated"), mesh("all-unauthenticated", "cluster-unauthenticated", "10.1.0.0/16")},
			defaultServer("cluster-authenticated", authz(dflt("cluster-authenticated"), cluster, ids()))},
		{"an invalid annotation is ignored", []string{podWith("everyone"), mesh("deny", "")}, defaultServer("deny")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, decode(t, tc.docs...), &api.InboundPolicy{DefaultServer: tc.want})
		})
	}
}

func srvYAML(name, port, extra string) string {
	return "apiVersion: policy.weft.dev/v1alpha1\nkind: Server\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  port: " + port + "\n" + extra
}

var allUnauth = defaultServer("all-unauthenticated", authz(dflt("all-unauthenticated"), nil))

func TestServers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		docs    []string
		servers []*api.InboundServer
	}{
		{"a number port, deny by default", []string{srvYAML("web", "8080", "")},
			[]*api.InboundServer{server(8080, "web", detect)}},
		{"a number port the pod does not declare", []string{srvYAML("web", "7000", "  proxyProtocol: opaque\n")},
			[]*api.InboundServer{server(7000, "web", api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE)}},
		{"a named port resolves to the container port", []string{srvYAML("web", "admin", "  proxyProtocol: HTTP/2\n")},
			[]*api.InboundServer{server(9090, "web", api.InboundProtocol_INBOUND_PROTOCOL_HTTP2)}},
		{"a port name the pod lacks selects nothing", []string{srvYAML("web", "metrics", "")}, nil},
		{"the proxy's port names are not the app's", []string{srvYAML("web", "http", "")},
			[]*api.InboundServer{server(8080, "web", detect)}},
		{"a selector that does not match", []string{strings.Replace(srvYAML("web", "8080", ""), "app: web", "app: db", 1)}, nil},
		{"a selector that does not parse selects nothing", []string{strings.Replace(srvYAML("web", "8080", ""),
			"{matchLabels: {app: web}}", "{matchExpressions: [{key: app, operator: Bogus}]}", 1)}, nil},
		{"an empty selector selects every pod", []string{strings.Replace(srvYAML("web", "8080", ""), "{matchLabels: {app: web}}", "{}", 1)},
			[]*api.InboundServer{server(8080, "web", detect)}},
		{"a Server of another namespace", []string{strings.Replace(srvYAML("web", "8080", ""), "namespace: shop", "namespace: other", 1)}, nil},
		{"the oldest Server wins a port", []string{
			strings.Replace(srvYAML("a-new", "8080", "  proxyProtocol: gRPC\n"), "namespace: shop", "namespace: shop, creationTimestamp: '2026-01-02T00:00:00Z'", 1),
			strings.Replace(srvYAML("z-old", "http", "  proxyProtocol: HTTP/1\n"), "namespace: shop", "namespace: shop, creationTimestamp: '2026-01-01T00:00:00Z'", 1)},
			[]*api.InboundServer{server(8080, "z-old", api.InboundProtocol_INBOUND_PROTOCOL_HTTP1)}},
		{"then the first by name", []string{srvYAML("b", "8080", "  proxyProtocol: gRPC\n"), srvYAML("a", "8080", "  proxyProtocol: TLS\n")},
			[]*api.InboundServer{server(8080, "a", api.InboundProtocol_INBOUND_PROTOCOL_TLS)}},
		{"accessPolicy audit", []string{srvYAML("web", "8080", "  accessPolicy: audit\n")},
			[]*api.InboundServer{{Port: 8080, Ref: srvRef("web"), Audit: true}}},
		{"accessPolicy all-authenticated", []string{srvYAML("web", "8080", "  accessPolicy: all-authenticated\n")},
			[]*api.InboundServer{server(8080, "web", detect, authz(dflt("all-authenticated"), nil, ids()))}},
		{"accessPolicy cluster-unauthenticated", []string{srvYAML("web", "8080", "  accessPolicy: cluster-unauthenticated\n")},
			[]*api.InboundServer{server(8080, "web", detect, authz(dflt("cluster-unauthenticated"), privateRanges))}},
		{"two Servers, sorted by port", []string{srvYAML("b", "9090", ""), srvYAML("a", "8080", "")},
			[]*api.InboundServer{server(8080, "a", detect), server(9090, "b", detect)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, decode(t, append([]string{podYAML}, tc.docs...)...), &api.InboundPolicy{DefaultServer: allUnauth, Servers: tc.servers})
		})
	}
}

func apYAML(name, kind, target string, refs ...string) string {
	group := "policy.weft.dev"
	switch kind {
	case "Namespace":
		group = ""
	case "HTTPRoute", "GRPCRoute":
		group = "gateway.networking.k8s.io"
	}
	y := "apiVersion: policy.weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n  targetRef: {group: '" + group + "', kind: " + kind + ", name: " + target + "}\n  requiredAuthenticationRefs: [" + strings.Join(refs, ", ") + "]\n"
	return y
}

func mtlsYAML(name, ns, spec string) string {
	return "apiVersion: policy.weft.dev/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n"
}

func netYAML(name, ns, spec string) string {
	return "apiVersion: policy.weft.dev/v1alpha1\nkind: NetworkAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n"
}

const meshTLSRef = "{group: policy.weft.dev, kind: MeshTLSAuthentication, name: callers}"

func exactID(id string) *api.IdentityMatch { return exact(id) }
func prefixID(p string) *api.IdentityMatch { return prefix(p) }

func TestAuthorizationPolicies(t *testing.T) {
	web := srvYAML("web", "8080", "")
	admin := srvYAML("admin", "9090", "")
	for _, tc := range []struct {
		name string
		docs []string
		// web and admin are the authorizations of the two Servers.
		web, admin []*api.Authorization
	}{
		{"empty refs: every client", []string{apYAML("open", "Server", "web")},
			[]*api.Authorization{authz(apRef("open"), nil)}, nil},
		{"SPIFFE IDs: exact, prefix", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identities: ['spiffe://cluster.local/ns/shop/sa/api', 'spiffe://cluster.local/ns/batch/*']}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids(exactID("spiffe://cluster.local/ns/shop/sa/api"), prefixID("spiffe://cluster.local/ns/batch/")))}, nil},
		{"'*' is any verified identity", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identities: ['spiffe://cluster.local/ns/shop/sa/api', '*']}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids())}, nil},
		{"Linkerd identity names, in the Mesh's trust domain", []string{apYAML("p", "Server", "web", meshTLSRef),
			"apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {trustDomain: example.org}\n",
			mtlsYAML("callers", "shop", "{identities: [api.shop.serviceaccount.identity.linkerd.cluster.local, '*.batch.serviceaccount.identity.linkerd.cluster.local']}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids(exactID("spiffe://example.org/ns/shop/sa/api"), prefixID("spiffe://example.org/ns/batch/sa/")))}, nil},
		{"identityRefs", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identityRefs: [{kind: ServiceAccount, name: api}, {kind: ServiceAccount, name: job, namespace: batch}, {kind: ServiceAccount, namespace: ops}, {kind: Namespace, name: mon}]}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids(exactID("spiffe://cluster.local/ns/batch/sa/job"), exactID("spiffe://cluster.local/ns/shop/sa/api"),
				prefixID("spiffe://cluster.local/ns/mon/"), prefixID("spiffe://cluster.local/ns/ops/sa/")))}, nil},
		{"a Namespace ref without a name is any identity", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identityRefs: [{kind: ServiceAccount, name: api}, {kind: Namespace}]}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids())}, nil},
		{"NetworkAuthentication, across namespaces, a single address as /32", []string{
			apYAML("p", "Server", "web", "{group: policy.weft.dev, kind: NetworkAuthentication, name: office, namespace: infra}"),
			netYAML("office", "infra", "{networks: [{cidr: 192.168.1.7}, {cidr: 10.9.0.0/16, except: [10.9.1.0/24, 10.9.2.2]}]}")},
			[]*api.Authorization{authz(apRef("p"), []*api.NetworkSet{{Networks: []*api.Network{{Cidr: "192.168.1.7/32"},
				{Cidr: "10.9.0.0/16", Except: []string{"10.9.1.0/24", "10.9.2.2/32"}}}}})}, nil},
		{"all refs are ANDed; a ServiceAccount ref is its identity", []string{
			apYAML("p", "Server", "web", meshTLSRef, "{kind: ServiceAccount, name: api}", "{group: policy.weft.dev, kind: NetworkAuthentication, name: office}"),
			mtlsYAML("callers", "shop", "{identities: ['*']}"), netYAML("office", "shop", "{networks: [{cidr: 10.0.0.0/8}]}")},
			[]*api.Authorization{authz(apRef("p"), nets("10.0.0.0/8"), ids(), ids(exactID("spiffe://cluster.local/ns/shop/sa/api")))}, nil},
		{"Linkerd's group means the same", []string{
			strings.Replace(apYAML("p", "Server", "web", "{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: callers}"), "group: 'policy.weft.dev'", "group: 'policy.linkerd.io'", 1),
			mtlsYAML("callers", "shop", "{identities: ['*']}")},
			[]*api.Authorization{authz(apRef("p"), nil, ids())}, nil},
		{"a Namespace target: every Server", []string{apYAML("ns", "Namespace", "shop")},
			[]*api.Authorization{authz(apRef("ns"), nil)}, []*api.Authorization{authz(apRef("ns"), nil)}},
		{"policies sorted by name", []string{apYAML("b", "Server", "web"), apYAML("a", "Namespace", "shop")},
			[]*api.Authorization{authz(apRef("a"), nil), authz(apRef("b"), nil)}, []*api.Authorization{authz(apRef("a"), nil)}},

		// Never widens: each of these contributes nothing.
		{"a missing MeshTLSAuthentication", []string{apYAML("p", "Server", "web", meshTLSRef)}, nil, nil},
		{"a MeshTLSAuthentication of another namespace than the ref says", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "other", "{identities: ['*']}")}, nil, nil},
		{"a missing NetworkAuthentication", []string{apYAML("p", "Server", "web", meshTLSRef, "{group: policy.weft.dev, kind: NetworkAuthentication, name: office}"),
			mtlsYAML("callers", "shop", "{identities: ['*']}")}, nil, nil},
		{"an identity Weft cannot name", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identities: ['spiffe://cluster.local/ns/shop/sa/api', '*.cluster.local']}")}, nil, nil},
		{"an empty MeshTLSAuthentication", []string{apYAML("p", "Server", "web", meshTLSRef), mtlsYAML("callers", "shop", "{}")}, nil, nil},
		{"an identityRef of another kind", []string{apYAML("p", "Server", "web", meshTLSRef),
			mtlsYAML("callers", "shop", "{identityRefs: [{kind: User, name: alice}]}")}, nil, nil},
		{"an authentication ref of an unknown kind", []string{apYAML("p", "Server", "web", "{kind: User, name: alice}")}, nil, nil},
		{"a ServiceAccount ref without a name", []string{apYAML("p", "Server", "web", "{kind: ServiceAccount}")}, nil, nil},
		{"a MeshTLSAuthentication ref in the wrong group", []string{apYAML("p", "Server", "web", "{group: example.com, kind: MeshTLSAuthentication, name: callers}"),
			mtlsYAML("callers", "shop", "{identities: ['*']}")}, nil, nil},
		{"a Server that does not exist", []string{apYAML("p", "Server", "nope")}, nil, nil},
		{"another namespace as target", []string{apYAML("p", "Namespace", "other")}, nil, nil},
		{"a target of an unknown kind", []string{apYAML("p", "Service", "web")}, nil, nil},
		{"a policy of another namespace", []string{strings.Replace(apYAML("p", "Server", "web"), "namespace: shop", "namespace: other", 1)}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := decode(t, append([]string{podYAML, web, admin}, tc.docs...)...)
			want := &api.InboundPolicy{DefaultServer: allUnauth, Servers: []*api.InboundServer{
				server(8080, "web", detect, tc.web...), server(9090, "admin", detect, tc.admin...)}}
			check(t, in, want)
		})
	}
}

// A Namespace-targeted policy never reaches the default server, whose ports follow the
// default policy.
func TestNamespaceTargetSkipsDefaultServer(t *testing.T) {
	in := decode(t, podYAML, apYAML("ns", "Namespace", "shop"),
		"apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {proxy: {defaultInboundPolicy: deny}}\n")
	check(t, in, &api.InboundPolicy{DefaultServer: defaultServer("deny")})
}

func routeYAML(kind, name, parentKind, spec string) string {
	group := "policy.weft.dev"
	if parentKind == "Service" {
		group = "''"
	}
	return "apiVersion: gateway.networking.k8s.io/v1\nkind: " + kind + "\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n  parentRefs: [{group: " + group + ", kind: " + parentKind + ", name: web}]\n" + spec
}

func TestRoutes(t *testing.T) {
	prefixMatch := func(p string) *api.RouteMatch {
		return &api.RouteMatch{Path: &api.StringMatch{Kind: &api.StringMatch_Prefix{Prefix: p}}}
	}
	exactMatch := func(p, method string) *api.RouteMatch {
		return &api.RouteMatch{Path: &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: p}}, Method: method}
	}
	httpRef := func(name string) *api.PolicyRef {
		return &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "shop", Name: name}
	}
	in := decode(t, podYAML, srvYAML("web", "8080", ""), srvYAML("db", "9090", "  proxyProtocol: opaque\n"),
		routeYAML("HTTPRoute", "api", "Server", `  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
  - name: admin
    matches: [{path: {type: Exact, value: /admin}, method: POST}, {path: {type: PathPrefix, value: /}}]
  - matches: [{path: {type: RegularExpression, value: '('}}]
`),
		apYAML("admins", "HTTPRoute", "api", "{kind: ServiceAccount, name: ops}"),
		apYAML("grpc-callers", "GRPCRoute", "rpc"),
		routeYAML("GRPCRoute", "rpc", "Server", "  rules:\n  - matches: [{method: {service: shop.Cart}}]\n"),
		// Attached to a Service (GAMMA): outbound routing, not inbound policy.
		routeYAML("HTTPRoute", "gamma", "Service", "  rules:\n  - matches: [{path: {type: Exact, value: /gamma}}]\n"),
		// Attached to the opaque Server: routes do not apply to opaque ports.
		strings.Replace(routeYAML("HTTPRoute", "to-db", "Server", "  rules:\n  - {}\n"), "name: web}", "name: db}", 1),
	)
	opsAuthz := authz(apRef("admins"), nil, ids(exactID("spiffe://cluster.local/ns/shop/sa/ops")))
	want := &api.InboundPolicy{DefaultServer: allUnauth, Servers: []*api.InboundServer{
		{Port: 8080, Ref: srvRef("web"), Routes: []*api.InboundRoute{
			// gRPC first, then by precedence: exact before prefix, longer prefix first.
			{Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute", Namespace: "shop", Name: "rpc/rule-0"},
				Matches:        []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{Service: &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: "shop.Cart"}}}}},
				Authorizations: []*api.Authorization{authz(apRef("grpc-callers"), nil)}},
			{Ref: httpRef("api/admin"), Matches: []*api.RouteMatch{exactMatch("/admin", "POST")}, Authorizations: []*api.Authorization{opsAuthz}},
			{Ref: httpRef("api/rule-0"), Matches: []*api.RouteMatch{prefixMatch("/api")}, Authorizations: []*api.Authorization{opsAuthz}},
			{Ref: httpRef("api/admin"), Matches: []*api.RouteMatch{prefixMatch("/")}, Authorizations: []*api.Authorization{opsAuthz}},
		}},
		{Port: 9090, Ref: srvRef("db"), Protocol: api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE},
	}}
	check(t, in, want)
}

func TestProbePaths(t *testing.T) {
	pod := strings.Replace(podYAML, "    ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090}]\n", `    ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090}]
    livenessProbe: {httpGet: {path: /live, port: http}}
    readinessProbe: {httpGet: {path: '/ready?full=1', port: 8080}}
    startupProbe: {httpGet: {path: /live, port: 8080}}
  - name: side
    ports: [{name: health, containerPort: 7000}]
    livenessProbe: {httpGet: {path: /healthz, port: health}}
    readinessProbe: {httpGet: {path: /tls, port: 7443, scheme: HTTPS}}
    startupProbe: {tcpSocket: {port: 7001}}
`, 1)
	in := decode(t, pod, srvYAML("web", "8080", ""),
		"apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {proxy: {defaultInboundPolicy: deny}}\n")
	check(t, in, &api.InboundPolicy{DefaultServer: defaultServer("deny"), Servers: []*api.InboundServer{
		// A probe port no Server selects: a copy of the default server.
		{Port: 7000, Ref: dflt("deny"), ProbePaths: []string{"/healthz"}},
		{Port: 8080, Ref: srvRef("web"), ProbePaths: []string{"/live", "/ready"}},
	}})
}

// The same state in any order compiles to the same bytes; a change that matters changes
// the version.
func TestDeterministic(t *testing.T) {
	docs := []string{podYAML, srvYAML("a", "8080", ""), srvYAML("b", "9090", "  accessPolicy: all-authenticated\n"),
		apYAML("p1", "Server", "a", meshTLSRef), apYAML("p2", "Namespace", "shop"), apYAML("p3", "Server", "b"),
		mtlsYAML("callers", "shop", "{identities: ['spiffe://cluster.local/ns/shop/sa/x', 'spiffe://cluster.local/ns/shop/sa/a']}"),
		routeYAML("HTTPRoute", "r1", "Server", "  rules:\n  - matches: [{path: {type: PathPrefix, value: /x}}]\n"),
		routeYAML("HTTPRoute", "r2", "Server", "  rules:\n  - matches: [{path: {type: PathPrefix, value: /x}}]\n"),
	}
	docs[7] = strings.Replace(docs[7], "name: web}", "name: a}", 1)
	docs[8] = strings.Replace(docs[8], "name: web}", "name: a}", 1)
	base := Compile(decode(t, docs...))
	b0, _ := proto.MarshalOptions{Deterministic: true}.Marshal(base)
	for i := range 20 {
		in := decode(t, docs...)
		shuffle := func(n int, swap func(i, j int)) { rand.Shuffle(n, swap) }
		shuffle(len(in.Servers), func(i, j int) { in.Servers[i], in.Servers[j] = in.Servers[j], in.Servers[i] })
		shuffle(len(in.AuthorizationPolicies), func(i, j int) {
			in.AuthorizationPolicies[i], in.AuthorizationPolicies[j] = in.AuthorizationPolicies[j], in.AuthorizationPolicies[i]
		})
		shuffle(len(in.HTTPRoutes), func(i, j int) { in.HTTPRoutes[i], in.HTTPRoutes[j] = in.HTTPRoutes[j], in.HTTPRoutes[i] })
		got := Compile(in)
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if string(b) != string(b0) {
			t.Fatalf("shuffle %d compiled differently:\n%v\n%v", i, got, base)
		}
	}
	changed := decode(t, docs...)
	changed.MeshTLSAuthentications[0].Spec.Identities = changed.MeshTLSAuthentications[0].Spec.Identities[:1]
	if v := Compile(changed).Version; v == base.Version {
		t.Errorf("a narrower MeshTLSAuthentication kept version %s", v)
	}
}

// TestAuthorizationErrors: what makes a policy authorize no one is said in words the
// status conditions and the CLI can show.
func TestAuthorizationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		docs []string
		want string // "" for no error
	}{
		{"resolves", []string{apYAML("p", "Server", "web", meshTLSRef), mtlsYAML("callers", "shop", "{identities: ['*']}")}, ""},
		{"missing", []string{apYAML("p", "Server", "web", meshTLSRef)}, "MeshTLSAuthentication shop/callers does not exist"},
		{"bad identity", []string{apYAML("p", "Server", "web", meshTLSRef), mtlsYAML("callers", "shop", "{identities: ['*.cluster.local']}")},
			`MeshTLSAuthentication shop/callers: identity "*.cluster.local" is not a SPIFFE ID`},
		{"bad identityRef", []string{apYAML("p", "Server", "web", meshTLSRef), mtlsYAML("callers", "shop", "{identityRefs: [{group: rbac.authorization.k8s.io, kind: User, name: alice}]}")},
			"identityRef User.rbac.authorization.k8s.io alice is not a ServiceAccount or a Namespace"},
		{"missing network", []string{apYAML("p", "Server", "web", "{group: policy.weft.dev, kind: NetworkAuthentication, name: office, namespace: infra}")},
			"NetworkAuthentication infra/office does not exist"},
		{"bad network", []string{apYAML("p", "Server", "web", "{group: policy.weft.dev, kind: NetworkAuthentication, name: office}"),
			netYAML("office", "shop", "{networks: [{cidr: 10.0.0.0/33}]}")}, `cidr "10.0.0.0/33" is not an IP network`},
		{"unknown kind", []string{apYAML("p", "Server", "web", "{group: example.com, kind: Token, name: t}")},
			"Token.example.com t is not an authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := decode(t, append([]string{podYAML}, tc.docs...)...)
			_, err := Authorization(in.AuthorizationPolicies[0], in.MeshTLSAuthentications, in.NetworkAuthentications, "cluster.local")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}
