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

package apis_test

import (
	"fmt"
	"strings"
	"testing"
)

func policyDoc(kind, spec string) string {
	return "apiVersion: policy.weft.dev/v1alpha1\nkind: " + kind + "\nmetadata:\n  name: p\n  namespace: default\nspec:\n" + spec
}

func TestServerSchema(t *testing.T) {
	srv := func(spec string) string { return policyDoc("Server", spec) }
	runSchemaCases(t, []schemaCase{
		{name: "port number", yaml: srv("  podSelector: {matchLabels: {app: web}}\n  port: 8080\n")},
		{name: "port name", yaml: srv("  podSelector: {}\n  port: http-alt\n  proxyProtocol: HTTP/2\n  accessPolicy: audit\n")},
		{name: "linkerd access policies", yaml: srv("  podSelector: {}\n  port: 80\n  accessPolicy: cluster-authenticated\n")},
		{name: "no port", yaml: srv("  podSelector: {}\n"),
			wantErr: []string{"spec.port", "Required value"}},
		{name: "no podSelector", yaml: srv("  port: 80\n"),
			wantErr: []string{"spec.podSelector", "Required value"}},
		{name: "port zero", yaml: srv("  podSelector: {}\n  port: 0\n"),
			wantErr: []string{"spec.port", "port must be a number from 1 to 65535 or a container port name"}},
		{name: "port above 65535", yaml: srv("  podSelector: {}\n  port: 65536\n"),
			wantErr: []string{"spec.port", "port must be a number from 1 to 65535"}},
		{name: "port name too long", yaml: srv("  podSelector: {}\n  port: a-very-long-port-name\n"),
			wantErr: []string{"spec.port", "container port name"}},
		{name: "port name without a letter", yaml: srv("  podSelector: {}\n  port: \"80-80\"\n"),
			wantErr: []string{"spec.port", "container port name"}},
		{name: "unknown protocol", yaml: srv("  podSelector: {}\n  port: 80\n  proxyProtocol: HTTP/3\n"),
			wantErr: []string{"spec.proxyProtocol", "Unsupported value"}},
		{name: "unknown access policy", yaml: srv("  podSelector: {}\n  port: 80\n  accessPolicy: allow\n"),
			wantErr: []string{"spec.accessPolicy", "Unsupported value"}},
		{name: "too many matchLabels", yaml: srv("  podSelector:\n    matchLabels:\n" + repeatMap(65) + "  port: 80\n"),
			wantErr: []string{"spec.podSelector", "podSelector.matchLabels may have at most 64 entries"}},
	})
	obj := create(t, srv("  podSelector: {}\n  port: 80\n"))
	if got := field(t, obj, "spec", "proxyProtocol"); got != "unknown" {
		t.Errorf("proxyProtocol defaulted to %v, want unknown", got)
	}
	if got := field(t, obj, "spec", "accessPolicy"); got != "deny" {
		t.Errorf("accessPolicy defaulted to %v, want deny", got)
	}
}

func repeatMap(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "      k%d: v\n", i)
	}
	return b.String()
}

func TestAuthorizationPolicySchema(t *testing.T) {
	ap := func(target, authn string) string {
		return policyDoc("AuthorizationPolicy", "  targetRef: "+target+"\n  requiredAuthenticationRefs: "+authn+"\n")
	}
	const mtls = "[{group: policy.weft.dev, kind: MeshTLSAuthentication, name: web}]"
	runSchemaCases(t, []schemaCase{
		{name: "server target", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", mtls)},
		{name: "linkerd group", yaml: ap("{group: policy.linkerd.io, kind: Server, name: web}",
			"[{group: policy.linkerd.io, kind: NetworkAuthentication, name: lan, namespace: ops}]")},
		{name: "route target", yaml: ap("{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}", mtls)},
		{name: "grpc route target", yaml: ap("{group: gateway.networking.k8s.io, kind: GRPCRoute, name: r}", mtls)},
		{name: "namespace target", yaml: ap("{kind: Namespace, name: default}", "[{kind: ServiceAccount, name: web}]")},
		{name: "no authentication: everyone", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", "[]")},
		{name: "server without group", yaml: ap("{kind: Server, name: web}", mtls),
			wantErr: []string{"spec.targetRef", "targetRef must be a Server (group policy.weft.dev)"}},
		{name: "unsupported target", yaml: ap("{group: apps, kind: Deployment, name: web}", mtls),
			wantErr: []string{"spec.targetRef", "targetRef must be a Server"}},
		{name: "service account with a group", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", "[{group: policy.weft.dev, kind: ServiceAccount, name: web}]"),
			wantErr: []string{"spec.requiredAuthenticationRefs[0]", "an authentication must be a MeshTLSAuthentication or NetworkAuthentication"}},
		{name: "unknown authentication", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", "[{group: policy.weft.dev, kind: JWTAuthentication, name: j}]"),
			wantErr: []string{"spec.requiredAuthenticationRefs[0]", "an authentication must be"}},
		{name: "authentication without name", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", "[{group: policy.weft.dev, kind: MeshTLSAuthentication}]"),
			wantErr: []string{"spec.requiredAuthenticationRefs[0].name", "Required value"}},
		{name: "bad namespace", yaml: ap("{group: policy.weft.dev, kind: Server, name: web}", "[{kind: ServiceAccount, name: web, namespace: Ops}]"),
			wantErr: []string{"spec.requiredAuthenticationRefs[0].namespace", "should match"}},
		{name: "too many authentications", yaml: policyDoc("AuthorizationPolicy", "  targetRef: {group: policy.weft.dev, kind: Server, name: web}\n  requiredAuthenticationRefs:\n"+
			repeat(17, 4, func(i int) string { return fmt.Sprintf("{kind: ServiceAccount, name: sa%d}", i) })),
			wantErr: []string{"spec.requiredAuthenticationRefs", "must have at most 16 items"}},
		{name: "no authentication list", yaml: policyDoc("AuthorizationPolicy", "  targetRef: {group: policy.weft.dev, kind: Server, name: web}\n"),
			wantErr: []string{"spec.requiredAuthenticationRefs", "Required value"}},
	})
}

func TestMeshTLSAuthenticationSchema(t *testing.T) {
	m := func(spec string) string { return policyDoc("MeshTLSAuthentication", spec) }
	runSchemaCases(t, []schemaCase{
		{name: "spiffe identities", yaml: m("  identities: [\"spiffe://cluster.local/ns/shop/sa/web\", \"spiffe://cluster.local/ns/ops/*\", \"*\"]\n")},
		{name: "linkerd identities", yaml: m("  identities: [web.shop.serviceaccount.identity.linkerd.cluster.local, \"*.shop.serviceaccount.identity.linkerd.cluster.local\"]\n")},
		{name: "identity refs", yaml: m("  identityRefs: [{kind: ServiceAccount, name: web}, {kind: ServiceAccount, namespace: ops}, {kind: Namespace, name: shop}]\n")},
		{name: "neither", yaml: m("  {}\n"),
			wantErr: []string{"spec", "set exactly one of identities or identityRefs"}},
		{name: "both", yaml: m("  identities: [\"*\"]\n  identityRefs: [{kind: Namespace, name: shop}]\n"),
			wantErr: []string{"spec", "set exactly one of identities or identityRefs"}},
		{name: "empty identities", yaml: m("  identities: []\n"),
			wantErr: []string{"spec.identities", "at least 1 items"}},
		{name: "bad identity", yaml: m("  identities: [\"spiffe://Cluster.Local/ns/a\"]\n"),
			wantErr: []string{"spec.identities[0]", "should match"}},
		{name: "wildcard in the middle", yaml: m("  identities: [\"web.*.serviceaccount\"]\n"),
			wantErr: []string{"spec.identities[0]", "should match"}},
		{name: "duplicate identity", yaml: m("  identities: [\"*\", \"*\"]\n"),
			wantErr: []string{"spec.identities[1]", "Duplicate value"}},
		{name: "deployment ref", yaml: m("  identityRefs: [{group: apps, kind: Deployment, name: web}]\n"),
			wantErr: []string{"spec.identityRefs[0]", "an identity reference must be a ServiceAccount or a Namespace"}},
		{name: "namespace ref with namespace", yaml: m("  identityRefs: [{kind: Namespace, name: shop, namespace: shop}]\n"),
			wantErr: []string{"spec.identityRefs[0]", "a Namespace reference names the namespace in name"}},
		{name: "too many identities", yaml: m("  identities:\n" + repeat(65, 4, func(i int) string { return fmt.Sprintf("\"spiffe://cluster.local/ns/a/sa/s%d\"", i) })),
			wantErr: []string{"spec.identities", "must have at most 64 items"}},
	})
}

func TestNetworkAuthenticationSchema(t *testing.T) {
	n := func(spec string) string { return policyDoc("NetworkAuthentication", spec) }
	runSchemaCases(t, []schemaCase{
		{name: "networks", yaml: n("  networks:\n  - cidr: 10.0.0.0/8\n    except: [10.1.0.0/16, 10.2.3.4]\n  - cidr: fd00::/8\n  - cidr: 192.168.1.10\n")},
		{name: "no networks", yaml: n("  networks: []\n"),
			wantErr: []string{"spec.networks", "at least 1 items"}},
		{name: "not a network", yaml: n("  networks: [{cidr: 10.0.0.0/33}]\n"),
			wantErr: []string{"spec.networks[0].cidr", "must be an IP network such as 10.0.0.0/8"}},
		{name: "host name", yaml: n("  networks: [{cidr: example.com}]\n"),
			wantErr: []string{"spec.networks[0].cidr", "must be an IP network"}},
		{name: "except outside", yaml: n("  networks: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]\n"),
			wantErr: []string{"spec.networks[0]", "every except entry must lie inside cidr"}},
		{name: "except of a single address", yaml: n("  networks: [{cidr: 10.0.0.1, except: [10.0.0.1]}]\n"),
			wantErr: []string{"spec.networks[0]", "every except entry must lie inside cidr"}},
		{name: "bad except", yaml: n("  networks: [{cidr: 10.0.0.0/8, except: [ten]}]\n"),
			wantErr: []string{"spec.networks[0].except[0]", "must be an IP network"}},
		{name: "too many networks", yaml: n("  networks:\n" + repeat(65, 2, func(i int) string { return fmt.Sprintf("{cidr: 10.%d.0.0/16}", i) })),
			wantErr: []string{"spec.networks", "must have at most 64 items"}},
	})
}
