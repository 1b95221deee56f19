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
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/weftmesh/weft/proxy/api"
)

const rlServers = `
apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {podSelector: {matchLabels: {app: web}}, port: http, accessPolicy: all-unauthenticated}
---
apiVersion: policy.weft.dev/v1alpha1
kind: Server
metadata: {name: web-admin, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {podSelector: {matchLabels: {app: web}}, port: admin, proxyProtocol: opaque, accessPolicy: all-unauthenticated}
`

func rlPolicy(name, created, target, spec string) string {
	return "apiVersion: policy.weft.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: " + name +
		", namespace: shop, creationTimestamp: \"" + created + "\"}\nspec:\n  targetRef: {group: policy.weft.dev, kind: Server, name: " +
		target + "}\n" + spec
}

func rlRef(name string) *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: "HTTPLocalRateLimitPolicy", Namespace: "shop", Name: name}
}

// TestCompileRateLimit: a Server's ports carry the oldest valid policy that targets
// it, overrides as SPIFFE IDs in the Mesh's trust domain; an invalid policy, one of
// another namespace, or one on an opaque port limits nothing.
func TestCompileRateLimit(t *testing.T) {
	const overrides = "  overrides:\n  - requestsPerSecond: 50\n    clientRefs:\n      targetRefs:\n" +
		"      - {kind: ServiceAccount, name: batch}\n      - {kind: ServiceAccount, name: cron, namespace: ops}\n" +
		"      - {kind: ServiceAccount, name: batch}\n"
	const mesh = "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: mesh}\nspec: {trustDomain: example.org}\n"
	cases := []struct {
		name     string
		docs     []string
		want     *api.RateLimit // on port 8080
		wantNone bool
	}{
		{name: "total, identity and overrides", docs: []string{mesh,
			rlPolicy("limits", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 100}\n  identity: {requestsPerSecond: 20}\n"+overrides)},
			want: &api.RateLimit{Ref: rlRef("limits"), Total: 100, Identity: 20, Overrides: []*api.RateLimitOverride{{
				RequestsPerSecond: 50,
				Ids:               []string{"spiffe://example.org/ns/ops/sa/cron", "spiffe://example.org/ns/shop/sa/batch"},
			}}}},
		{name: "the older of two wins", docs: []string{
			rlPolicy("young", "2026-01-03T00:00:00Z", "web-http", "  total: {requestsPerSecond: 5}\n"),
			rlPolicy("old", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 7}\n")},
			want: &api.RateLimit{Ref: rlRef("old"), Total: 7}},
		{name: "same age: the first name wins", docs: []string{
			rlPolicy("b", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 5}\n"),
			rlPolicy("a", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 7}\n")},
			want: &api.RateLimit{Ref: rlRef("a"), Total: 7}},
		{name: "an invalid older policy does not hide a valid one", docs: []string{
			rlPolicy("zero", "2026-01-01T00:00:00Z", "web-http", "  total: {requestsPerSecond: 0}\n"),
			rlPolicy("ok", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 9}\n")},
			want: &api.RateLimit{Ref: rlRef("ok"), Total: 9}},
		{name: "a rate of zero limits nothing", docs: []string{
			rlPolicy("zero", "2026-01-01T00:00:00Z", "web-http", "  identity: {requestsPerSecond: 0}\n")}, wantNone: true},
		{name: "identity above total limits nothing", docs: []string{
			rlPolicy("bad", "2026-01-01T00:00:00Z", "web-http", "  total: {requestsPerSecond: 1}\n  identity: {requestsPerSecond: 2}\n")}, wantNone: true},
		{name: "another Server's policy", docs: []string{
			rlPolicy("other", "2026-01-01T00:00:00Z", "missing", "  total: {requestsPerSecond: 1}\n")}, wantNone: true},
		{name: "no policy", wantNone: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs := append([]string{podYAML, rlServers}, tc.docs...)
			out := Compile(decode(t, docs...))
			var got8080, got9090 *api.InboundServer
			for _, s := range out.Servers {
				switch s.Port {
				case 8080:
					got8080 = s
				case 9090:
					got9090 = s
				}
			}
			if got8080 == nil || got9090 == nil {
				t.Fatalf("servers: %v", out.Servers)
			}
			if got9090.RateLimit != nil {
				t.Errorf("opaque port got a rate limit: %v", got9090.RateLimit)
			}
			if out.DefaultServer.RateLimit != nil {
				t.Errorf("default server got a rate limit: %v", out.DefaultServer.RateLimit)
			}
			if tc.wantNone {
				if got8080.RateLimit != nil {
					t.Errorf("rate limit %v, want none", got8080.RateLimit)
				}
				return
			}
			if d := cmp.Diff(tc.want, got8080.RateLimit, protocmp.Transform()); d != "" {
				t.Errorf("rate limit (-want +got):\n%s", d)
			}
		})
	}
}

// TestCompileRateLimitVersion: adding a rate limit changes the policy's version, so the
// proxy takes the new message.
func TestCompileRateLimitVersion(t *testing.T) {
	without := Compile(decode(t, podYAML, rlServers))
	with := Compile(decode(t, podYAML, rlServers, rlPolicy("l", "2026-01-02T00:00:00Z", "web-http", "  total: {requestsPerSecond: 3}\n")))
	if without.Version == with.Version {
		t.Fatalf("version %s did not change with a rate limit", with.Version)
	}
}

// TestValidateRateLimit: every rule names its field.
func TestValidateRateLimit(t *testing.T) {
	in := decode(t, podYAML, rlPolicy("bad", "2026-01-01T00:00:00Z", "web-http",
		"  total: {requestsPerSecond: 10}\n  identity: {requestsPerSecond: 0}\n  overrides:\n  - requestsPerSecond: 11\n"+
			"    clientRefs: {targetRefs: [{group: apps, kind: Deployment, name: x}]}\n"))
	msg := ValidateRateLimit(in.RateLimitPolicies[0]).ToAggregate().Error()
	for _, want := range []string{"spec.identity.requestsPerSecond", "spec.overrides[0].requestsPerSecond: Invalid value: 11: must not exceed",
		"spec.overrides[0].clientRefs.targetRefs[0].kind"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not contain %q", msg, want)
		}
	}
}
