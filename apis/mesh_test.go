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
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

const meshHeader = `apiVersion: mesh.weft.dev/v1alpha1
kind: Mesh
metadata:
  name: default
`

func TestMeshSchema(t *testing.T) {
	mesh := func(spec string) string { return meshHeader + "spec:\n" + spec }
	runSchemaCases(t, []schemaCase{
		{name: "empty spec is valid", yaml: meshHeader},
		{name: "full spec is valid", yaml: mesh(`
  trustDomain: prod.example.com
  identity:
    trustAnchor: {duration: 17520h, renewBefore: 2160h}
    issuer: {duration: 72h, renewBefore: 30h}
    workload: {duration: 12h, renewAtPercent: 80}
    externalIssuerRef: {name: corp-ca, kind: ClusterIssuer}
  proxy:
    image: registry.example.com/weft-proxy:v1
    logLevel: debug
    ports: {outbound: 5140, inbound: 5143, admin: 5191}
    opaquePorts: [3306, 5432]
    skipInboundPorts: [22]
    skipOutboundPorts: [443]
    defaultInboundPolicy: all-authenticated
    connectTimeout: 500ms
    detectTimeout: 2s
`)},
		{name: "name other than default", yaml: `apiVersion: mesh.weft.dev/v1alpha1
kind: Mesh
metadata:
  name: second
`, wantErr: []string{"a cluster has exactly one Mesh and it must be named 'default'"}},
		{name: "trust domain with upper case", yaml: mesh("  trustDomain: Cluster.Local\n"),
			wantErr: []string{"spec.trustDomain", "should match"}},
		{name: "trust domain too long", yaml: mesh(fmt.Sprintf("  trustDomain: %q\n", strings.Repeat("a", 254))),
			wantErr: []string{"spec.trustDomain", "253"}},
		{name: "anchor not longer than issuer", yaml: mesh("  identity:\n    trustAnchor: {duration: 48h, renewBefore: 24h}\n"),
			wantErr: []string{"spec.identity", "trustAnchor.duration must be longer than issuer.duration"}},
		{name: "issuer not longer than workload", yaml: mesh("  identity:\n    workload: {duration: 720h}\n"),
			wantErr: []string{"spec.identity", "issuer.duration must be longer than workload.duration"}},
		{name: "issuer renewBefore not longer than workload", yaml: mesh("  identity:\n    issuer: {duration: 720h, renewBefore: 24h}\n"),
			wantErr: []string{"spec.identity", "issuer.renewBefore must be longer than workload.duration"}},
		{name: "renewBefore not shorter than duration", yaml: mesh("  identity:\n    issuer: {duration: 48h, renewBefore: 48h}\n"),
			wantErr: []string{"spec.identity.issuer", "renewBefore must be shorter than duration"}},
		{name: "CA duration under an hour", yaml: mesh("  identity:\n    issuer: {duration: 30m, renewBefore: 10m}\n    workload: {duration: 15m}\n"),
			wantErr: []string{"spec.identity.issuer.duration", "duration must be at least 1h"}},
		{name: "renewBefore under five minutes", yaml: mesh("  identity:\n    issuer: {duration: 48h, renewBefore: 1m}\n"),
			wantErr: []string{"spec.identity.issuer.renewBefore", "renewBefore must be at least 5m"}},
		{name: "duration that is not a duration", yaml: mesh("  identity:\n    issuer: {duration: two days, renewBefore: 25h}\n"),
			wantErr: []string{"spec.identity.issuer.duration"}},
		{name: "workload duration under ten minutes", yaml: mesh("  identity:\n    workload: {duration: 5m}\n"),
			wantErr: []string{"spec.identity.workload.duration", "workload duration must be between 10m and 720h"}},
		{name: "renewAtPercent below 50", yaml: mesh("  identity:\n    workload: {renewAtPercent: 40}\n"),
			wantErr: []string{"spec.identity.workload.renewAtPercent", "greater than or equal to 50"}},
		{name: "renewAtPercent above 90", yaml: mesh("  identity:\n    workload: {renewAtPercent: 95}\n"),
			wantErr: []string{"spec.identity.workload.renewAtPercent", "less than or equal to 90"}},
		{name: "external issuer of unknown kind", yaml: mesh("  identity:\n    externalIssuerRef: {name: ca, kind: Vault}\n"),
			wantErr: []string{"spec.identity.externalIssuerRef.kind", "Unsupported value"}},
		{name: "external issuer without name", yaml: mesh("  identity:\n    externalIssuerRef: {kind: Issuer}\n"),
			wantErr: []string{"spec.identity.externalIssuerRef.name", "Required value"}},
		{name: "two ports equal", yaml: mesh("  proxy:\n    ports: {outbound: 4143}\n"),
			wantErr: []string{"spec.proxy", "ports.outbound, ports.inbound and ports.admin must all differ"}},
		{name: "port above 65535", yaml: mesh("  proxy:\n    ports: {admin: 70000}\n"),
			wantErr: []string{"spec.proxy.ports.admin", "less than or equal to 65535"}},
		{name: "port zero", yaml: mesh("  proxy:\n    opaquePorts: [0]\n"),
			wantErr: []string{"spec.proxy.opaquePorts[0]", "greater than or equal to 1"}},
		{name: "duplicate opaque port", yaml: mesh("  proxy:\n    opaquePorts: [25, 25]\n"),
			wantErr: []string{"spec.proxy.opaquePorts[1]", "Duplicate value"}},
		{name: "too many opaque ports", yaml: mesh("  proxy:\n    opaquePorts:\n" + repeat(65, 4, func(i int) string { return fmt.Sprint(1000 + i) })),
			wantErr: []string{"spec.proxy.opaquePorts", "must have at most 64 items"}},
		{name: "too many skip ports", yaml: mesh("  proxy:\n    skipOutboundPorts:\n" + repeat(65, 4, func(i int) string { return fmt.Sprint(1000 + i) })),
			wantErr: []string{"spec.proxy.skipOutboundPorts", "must have at most 64 items"}},
		{name: "unknown log level", yaml: mesh("  proxy:\n    logLevel: loud\n"),
			wantErr: []string{"spec.proxy.logLevel", "Unsupported value"}},
		{name: "unknown inbound policy", yaml: mesh("  proxy:\n    defaultInboundPolicy: allow-all\n"),
			wantErr: []string{"spec.proxy.defaultInboundPolicy", "Unsupported value"}},
		{name: "unknown inbound policy floor", yaml: mesh("  proxy:\n    inboundPolicyFloor: allow-all\n"),
			wantErr: []string{"spec.proxy.inboundPolicyFloor", "Unsupported value"}},
		{name: "unknown pull policy", yaml: mesh("  proxy:\n    imagePullPolicy: Sometimes\n"),
			wantErr: []string{"spec.proxy.imagePullPolicy", "Unsupported value"}},
		{name: "empty image", yaml: mesh("  proxy:\n    image: \"\"\n"),
			wantErr: []string{"spec.proxy.image", "at least 1 chars long"}},
		{name: "uid zero", yaml: mesh("  proxy:\n    uid: 0\n"),
			wantErr: []string{"spec.proxy.uid", "greater than or equal to 1"}},
		{name: "connect timeout too short", yaml: mesh("  proxy:\n    connectTimeout: 1ms\n"),
			wantErr: []string{"spec.proxy.connectTimeout", "connectTimeout must be between 10ms and 1m"}},
		{name: "detect timeout too long", yaml: mesh("  proxy:\n    detectTimeout: 2m\n"),
			wantErr: []string{"spec.proxy.detectTimeout", "detectTimeout must be between 10ms and 1m"}},
	})
}

func TestMeshDefaults(t *testing.T) {
	m := create(t, meshHeader)
	want := map[string]any{
		"spec.trustDomain":                      "cluster.local",
		"spec.identity.trustAnchor.duration":    "8760h",
		"spec.identity.trustAnchor.renewBefore": "1440h",
		"spec.identity.issuer.duration":         "720h",
		"spec.identity.issuer.renewBefore":      "480h",
		"spec.identity.workload.duration":       "24h",
		"spec.identity.workload.renewAtPercent": int64(70),
		"spec.proxy.image":                      "weft-proxy:dev",
		"spec.proxy.initImage":                  "weft-init:dev",
		"spec.proxy.imagePullPolicy":            "IfNotPresent",
		"spec.proxy.logLevel":                   "info",
		"spec.proxy.uid":                        int64(2102),
		"spec.proxy.ports.outbound":             int64(4140),
		"spec.proxy.ports.inbound":              int64(4143),
		"spec.proxy.ports.admin":                int64(4191),
		"spec.proxy.defaultInboundPolicy":       "all-unauthenticated",
		"spec.proxy.connectTimeout":             "1s",
		"spec.proxy.detectTimeout":              "10s",
		"spec.proxy.resources.requests.cpu":     "10m",
		"spec.proxy.resources.requests.memory":  "20Mi",
		"spec.proxy.resources.limits.memory":    "250Mi",
		"spec.proxy.opaquePorts":                []any{int64(25), int64(587), int64(3306), int64(4444), int64(5432), int64(6379), int64(9300), int64(11211)},
	}
	for path, v := range want {
		got := field(t, m, splitPath(path)...)
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%s: want default %v (%T), got %v (%T)", path, v, v, got, got)
		}
	}
}

// TestMeshHasNoTapPort: ports.tap configured nothing (the proxy has no tap server), so
// it is not part of the API until it does; an old manifest that sets it is pruned.
func TestMeshHasNoTapPort(t *testing.T) {
	m := create(t, meshHeader+"spec:\n  proxy:\n    ports: {tap: 5190}\n")
	ports, _ := field(t, m, "spec", "proxy", "ports").(map[string]any)
	if _, ok := ports["tap"]; ok {
		t.Errorf("spec.proxy.ports.tap stored (%v); it configures nothing and must not be in the schema", ports)
	}
}

// TestMeshTrustDomainIsFixed: a trustDomain change used to be accepted although running
// proxies keep asking for (and expecting) identities in the old domain; the API server
// now refuses it with a message saying what to do, and other spec changes still pass.
func TestMeshTrustDomainIsFixed(t *testing.T) {
	ctx := context.Background()
	m := create(t, meshHeader+"spec:\n  trustDomain: one.example\n")
	change := func(mutate func(*unstructured.Unstructured)) error {
		cur := m.DeepCopy()
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cur), cur); err != nil {
			t.Fatal(err)
		}
		mutate(cur)
		return k8sClient.Update(ctx, cur, client.DryRunAll)
	}
	err := change(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "two.example", "spec", "trustDomain")
	})
	if err == nil || !strings.Contains(err.Error(), "trustDomain cannot be changed") || !strings.Contains(err.Error(), "delete the Mesh") {
		t.Errorf("changing trustDomain: got %v, want a refusal that says what to do", err)
	}
	// Removing the field defaults it to cluster.local: a change too.
	err = change(func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, "spec", "trustDomain") })
	if err == nil || !strings.Contains(err.Error(), "trustDomain cannot be changed") {
		t.Errorf("removing trustDomain: got %v, want a refusal", err)
	}
	if err := change(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "debug", "spec", "proxy", "logLevel")
	}); err != nil {
		t.Errorf("changing another field with the same trustDomain: %v", err)
	}
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// TestMeshFromGoClient creates an empty Mesh from Go, as controllers and GitOps tools
// built on client-go do: zero-valued nested structs must be omitted on the wire so the
// server fills in the defaults instead of rejecting "0s" durations.
func TestMeshFromGoClient(t *testing.T) {
	m := &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}
	if err := k8sClient.Create(context.Background(), m, client.DryRunAll); err != nil {
		t.Fatalf("want an empty Mesh accepted, got: %v", err)
	}
	if got := m.Spec.Identity.Issuer.Duration.Duration; got != 720*time.Hour {
		t.Errorf("want the issuer duration defaulted to 720h, got %s", got)
	}
	if got := m.Spec.Proxy.Resources.Requests.Memory().String(); got != "20Mi" {
		t.Errorf("want the proxy memory request defaulted to 20Mi, got %s", got)
	}
	if got := m.Spec.Proxy.DetectTimeout.Duration; got != 10*time.Second {
		t.Errorf("want detectTimeout defaulted to 10s, got %s", got)
	}
}
