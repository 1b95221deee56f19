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
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// samplePolicy is a compiled policy with every shape the rendering knows: a Server
// with probes, identities and networks, a route with its own authorization, an opaque
// port, audit, and a deny default.
func samplePolicy(version string) *api.InboundPolicy {
	ap := func(name string) *api.PolicyRef {
		return &api.PolicyRef{Group: "policy.weft.dev", Kind: "AuthorizationPolicy", Namespace: "shop", Name: name}
	}
	return &api.InboundPolicy{
		Version:       version,
		DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}},
		Servers: []*api.InboundServer{
			{
				Port: 8080, Protocol: api.InboundProtocol_INBOUND_PROTOCOL_HTTP1,
				Ref:        &api.PolicyRef{Group: "policy.weft.dev", Kind: "Server", Namespace: "shop", Name: "books-http"},
				ProbePaths: []string{"/healthz", "/ready"},
				Authorizations: []*api.Authorization{{
					Ref: ap("books-from-web"),
					Identities: []*api.IdentitySet{{Matches: []*api.IdentityMatch{
						{Kind: &api.IdentityMatch_Exact{Exact: "spiffe://cluster.local/ns/shop/sa/web"}},
						{Kind: &api.IdentityMatch_Prefix{Prefix: "spiffe://cluster.local/ns/ops/"}},
					}}},
				}},
				Routes: []*api.InboundRoute{{
					Ref: &api.PolicyRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "shop", Name: "books-metrics"},
					Matches: []*api.RouteMatch{{Method: "GET", Path: &api.StringMatch{Kind: &api.StringMatch_Exact{Exact: "/metrics"}}},
						{Headers: []*api.HeaderMatch{{Name: "x-debug", Value: &api.StringMatch{Kind: &api.StringMatch_Regex{Regex: "1|true"}}}}}},
					Authorizations: []*api.Authorization{{
						Ref:      ap("metrics-from-monitoring"),
						Networks: []*api.NetworkSet{{Networks: []*api.Network{{Cidr: "10.96.0.0/16", Except: []string{"10.96.5.0/24"}}}}},
					}},
				}},
			},
			{
				Port: 5432, Protocol: api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE, Audit: true,
				Ref:            &api.PolicyRef{Group: "policy.weft.dev", Kind: "Server", Namespace: "shop", Name: "db"},
				Authorizations: []*api.Authorization{{Ref: ap("db-any"), Identities: []*api.IdentitySet{{}}}},
			},
		},
	}
}

// TestAuthzRendering: what weft authz prints for a compiled policy (golden file).
func TestAuthzRendering(t *testing.T) {
	var buf bytes.Buffer
	printInboundPolicy(&buf, samplePolicy("1a2b3c4d"))
	golden(t, filepath.Join("testdata", "golden", "authz.txt"), buf.String())

	buf.Reset()
	printInboundPolicy(&buf, &api.InboundPolicy{DefaultServer: &api.InboundServer{
		Ref:            &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"},
		Authorizations: []*api.Authorization{{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"}}},
	}})
	want := `
every port: default policy all-unauthenticated, protocol detected
  allow default all-unauthenticated: any client, authenticated or not
  everyone else: denied (HTTP 403, gRPC PERMISSION_DENIED, TCP closed)
`
	if buf.String() != want {
		t.Errorf("default-only policy:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// TestAuthzInput runs weft authz against a real API server up to the compiler: it finds
// a Deployment's pods through their ReplicaSet, and hands the compiler each pod with
// the objects the Input contract asks for (the namespace's Servers, policies and
// routes; the authentications of every namespace), then prints pods with the same
// policy together; then the same through the control plane's compiler.
func TestAuthzInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	te, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"shop", "ops"} {
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books-7d9f", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: "books", UID: "d1", Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "books"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "books"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
		},
	}
	must(c.Create(ctx, rs))
	for _, name := range []string{"books-7d9f-b", "books-7d9f-a", "other"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": "books"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if name != "other" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
		}
		must(c.Create(ctx, p))
	}
	must(c.Create(ctx, &policyv1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books-http"},
		Spec: policyv1alpha1.ServerSpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "books"}}, Port: intstr.FromInt32(8080)}}))
	must(c.Create(ctx, &policyv1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "elsewhere"},
		Spec: policyv1alpha1.ServerSpec{PodSelector: metav1.LabelSelector{}, Port: intstr.FromInt32(9090)}}))
	must(c.Create(ctx, &policyv1alpha1.MeshTLSAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "ops-team"},
		Spec: policyv1alpha1.MeshTLSAuthenticationSpec{Identities: []policyv1alpha1.Identity{"*"}}}))

	var seen []inbound.Input
	compile := func(in inbound.Input) *api.InboundPolicy {
		seen = append(seen, in)
		return samplePolicy("1a2b3c4d")
	}
	var out bytes.Buffer
	must(authz(ctx, c, "shop", authzOptions{target: "deploy/books"}, compile, &out))
	if len(seen) != 2 || seen[0].Pod.Name != "books-7d9f-a" || seen[1].Pod.Name != "books-7d9f-b" {
		t.Fatalf("compiled %d pods, want books-7d9f-a and books-7d9f-b (not other)", len(seen))
	}
	in := seen[0]
	names := func(objs []*policyv1alpha1.Server) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.Namespace+"/"+o.Name)
		}
		return out
	}
	switch {
	case in.Namespace == nil || in.Namespace.Name != "shop":
		t.Errorf("Input.Namespace = %v, want shop", in.Namespace)
	case in.Mesh != nil:
		t.Errorf("Input.Mesh = %v, want nil (no Mesh: the compiler's defaults)", in.Mesh)
	case !slices.Equal(names(in.Servers), []string{"shop/books-http"}):
		t.Errorf("Input.Servers = %v, want only the pod namespace's", names(in.Servers))
	case len(in.MeshTLSAuthentications) != 1 || in.MeshTLSAuthentications[0].Namespace != "ops":
		t.Errorf("Input.MeshTLSAuthentications = %d, want ops/ops-team (any namespace)", len(in.MeshTLSAuthentications))
	}
	if !strings.HasPrefix(out.String(), "deploy/books in namespace shop, pods books-7d9f-a, books-7d9f-b (policy 1a2b3c4d)\n") {
		t.Errorf("output starts:\n%s", out.String())
	}

	// One pod by name; a pod that does not exist; no compiler.
	seen = nil
	must(authz(ctx, c, "shop", authzOptions{target: "other"}, compile, &out))
	if len(seen) != 1 || seen[0].Pod.Name != "other" {
		t.Errorf("weft authz other compiled %d pods", len(seen))
	}
	if err := authz(ctx, c, "shop", authzOptions{target: "pod/missing"}, compile, &out); err == nil || !strings.Contains(err.Error(), "no pods of pod/missing") {
		t.Errorf("missing pod: error %v", err)
	}
	if err := authz(ctx, c, "shop", authzOptions{target: "svc/books"}, compile, &out); err == nil || !strings.Contains(err.Error(), "want deploy/NAME") {
		t.Errorf("unknown kind: error %v", err)
	}

	// And with the control plane's compiler: the Server and probe as the proxy gets them.
	out.Reset()
	must(authz(ctx, c, "shop", authzOptions{target: "deploy/books"}, compileInbound, &out))
	for _, want := range []string{"port 8080: Server shop/books-http, protocol detected", "allow: no client is authorized on the whole port",
		"every other port: default policy all-unauthenticated", "allow default all-unauthenticated: any client, authenticated or not"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("weft authz with the real compiler lacks %q:\n%s", want, out.String())
		}
	}
}

// TestMissingProbes: weft check's comparison of a pod's HTTP probes with the probe paths
// of its compiled policy finds each one the policy does not exempt.
func TestMissingProbes(t *testing.T) {
	p := &api.InboundPolicy{Servers: []*api.InboundServer{
		{Port: 8080, ProbePaths: []string{"/healthz", "/ready"}},
		{Port: 9090},
	}}
	for _, tc := range []struct{ want, missing string }{
		{"8080:/healthz,8080:/ready", ""},
		{"8080:/healthz,8080:/live", "8080:/live"},
		{"9090:/healthz,8081:/ready", "9090:/healthz,8081:/ready"},
		{"", ""},
	} {
		if got := missingProbes(p, tc.want); got != tc.missing {
			t.Errorf("missingProbes(%q) = %q, want %q", tc.want, got, tc.missing)
		}
	}
}
