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

func attrs(kv ...string) []*api.Attribute {
	var out []*api.Attribute
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &api.Attribute{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// TestTracing: the Mesh's spec.tracing reaches every pod's policy with its rate in
// millionths and the pod's own resource attributes; an address or rate that does not
// parse turns tracing off rather than handing the proxy something it cannot use.
func TestTracing(t *testing.T) {
	mesh := func(tracing string) string {
		return "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  tracing:\n" + tracing
	}
	owned := func(apiVersion, kind, name, labels string) string {
		return strings.Replace(podYAML, "labels: {app: web}",
			"labels: {app: web"+labels+"}, ownerReferences: [{apiVersion: "+apiVersion+", kind: "+kind+", name: "+name+", uid: u1, controller: true}]", 1)
	}
	base := attrs("k8s.namespace.name", "shop", "k8s.pod.name", "web-0")
	for _, tc := range []struct {
		name string
		docs []string
		want *api.Tracing
	}{
		{"no Mesh: off", []string{podYAML}, nil},
		{"no spec.tracing: off", []string{podYAML, "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\n"}, nil},
		{"collector only: the defaults", []string{podYAML, mesh("    collector: jaeger.tracing:4317\n")},
			&api.Tracing{Collector: "jaeger.tracing:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy", Attributes: base}},
		{"rate 1, service name, attributes sorted", []string{podYAML, mesh(`    collector: "[fd00::1]:4317"
    samplingRate: "1"
    serviceName: shop
    attributes: [{name: team, value: payments}, {name: deployment.environment, value: prod}]
`)},
			&api.Tracing{Collector: "[fd00::1]:4317", SamplingPerMillion: 1_000_000, ServiceName: "shop",
				Attributes: attrs("deployment.environment", "prod", "k8s.namespace.name", "shop", "k8s.pod.name", "web-0", "team", "payments")}},
		{"rate 0 keeps tracing on (parents' decisions)", []string{podYAML, mesh("    collector: j:4317\n    samplingRate: \"0\"\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 0, ServiceName: "weft-proxy", Attributes: base}},
		{"reserved attribute names are dropped", []string{podYAML, mesh("    collector: j:4317\n    attributes: [{name: k8s.pod.name, value: forged}, {name: service.name, value: forged}]\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy", Attributes: base}},
		{"collector without port: off", []string{podYAML, mesh("    collector: jaeger\n")}, nil},
		{"collector port out of range: off", []string{podYAML, mesh("    collector: jaeger:70000\n")}, nil},
		{"rate above 1: off", []string{podYAML, mesh("    collector: j:4317\n    samplingRate: \"1.5\"\n")}, nil},
		{"Deployment pod", []string{owned("apps/v1", "ReplicaSet", "web-7d9f8c6b5", ", pod-template-hash: 7d9f8c6b5"), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy",
				Attributes: attrs("k8s.deployment.name", "web", "k8s.namespace.name", "shop", "k8s.pod.name", "web-0", "k8s.replicaset.name", "web-7d9f8c6b5")}},
		{"bare ReplicaSet pod", []string{owned("apps/v1", "ReplicaSet", "web", ""), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy",
				Attributes: attrs("k8s.namespace.name", "shop", "k8s.pod.name", "web-0", "k8s.replicaset.name", "web")}},
		{"StatefulSet pod", []string{owned("apps/v1", "StatefulSet", "web", ""), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy",
				Attributes: attrs("k8s.namespace.name", "shop", "k8s.pod.name", "web-0", "k8s.statefulset.name", "web")}},
		{"DaemonSet pod", []string{owned("apps/v1", "DaemonSet", "agent", ""), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy",
				Attributes: attrs("k8s.daemonset.name", "agent", "k8s.namespace.name", "shop", "k8s.pod.name", "web-0")}},
		{"Job pod", []string{owned("batch/v1", "Job", "migrate", ""), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy",
				Attributes: attrs("k8s.job.name", "migrate", "k8s.namespace.name", "shop", "k8s.pod.name", "web-0")}},
		{"a custom resource's pod: no owner attribute", []string{owned("example.com/v1", "ReplicaSet", "x", ""), mesh("    collector: j:4317\n")},
			&api.Tracing{Collector: "j:4317", SamplingPerMillion: 10_000, ServiceName: "weft-proxy", Attributes: base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compile(decode(t, tc.docs...)).Tracing
			if d := cmp.Diff(tc.want, got, protocmp.Transform()); d != "" {
				t.Errorf("tracing (-want +got):\n%s", d)
			}
		})
	}
}

// TestTracingChangesVersion: applying or removing tracing must change the policy's
// version, or the server would not send it and running proxies would never learn.
func TestTracingChangesVersion(t *testing.T) {
	off := Compile(decode(t, podYAML)).Version
	on := Compile(decode(t, podYAML, "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  tracing: {collector: \"j:4317\"}\n")).Version
	rate := Compile(decode(t, podYAML, "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  tracing: {collector: \"j:4317\", samplingRate: \"1\"}\n")).Version
	if off == on || on == rate || off == rate {
		t.Errorf("versions off %s, on %s, rate 1 %s: want all different", off, on, rate)
	}
}
