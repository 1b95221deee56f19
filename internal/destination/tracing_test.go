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

package destination

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/proxy/api"
)

// TestInboundPolicyTracing: a running proxy's policy stream gets the Mesh's
// spec.tracing when it is applied, a change of it, and loses it when it is removed, with
// no restart (issue 20: tracing switched on and off by applying resources). Real API
// server, real informers, real grpc-go stream over mTLS.
func TestInboundPolicyTracing(t *testing.T) {
	ns := namespace(t, "tracing")
	// A Deployment's pod: its controller is ReplicaSet web-5f7c9d8b6d, and its
	// pod-template-hash says which Deployment made that.
	pod := strings.Replace(fmt.Sprintf(inboundPodYAML, ns, "web-5f7c9d8b6d-abcde"), "labels: {app: web}",
		"labels: {app: web, pod-template-hash: 5f7c9d8b6d}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5f7c9d8b6d, uid: 0b5e7c1e-0000-4000-8000-000000000001, controller: true}]", 1)
	apply(t, pod)
	s := watchKnownPolicy(t, inboundConn(t, ns, "web"), ns, "web-5f7c9d8b6d-abcde")
	if p := s.next(t); p.GetTracing() != nil {
		t.Fatalf("tracing %v before the Mesh names a collector", p.GetTracing())
	}

	const mesh = "apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\n"
	t.Cleanup(func() { remove(t, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}) })
	// next waits for the first policy whose tracing satisfies ok, and says how long
	// that took from the last apply.
	var start time.Time
	next := func(what string, ok func(*api.Tracing) bool) *api.Tracing {
		t.Helper()
		for {
			p := s.next(t)
			if ok(p.GetTracing()) {
				t.Logf("%s reached the stream %v after the apply", what, time.Since(start).Round(time.Millisecond))
				return p.GetTracing()
			}
		}
	}

	start = time.Now()
	apply(t, mesh+"spec:\n  tracing:\n    collector: jaeger.tracing.svc.cluster.local:4317\n    samplingRate: \"0.25\"\n    attributes: [{name: deployment.environment, value: test}]\n")
	got := next("tracing on", func(tr *api.Tracing) bool { return tr != nil })
	want := &api.Tracing{
		Collector:          "jaeger.tracing.svc.cluster.local:4317",
		SamplingPerMillion: 250_000,
		ServiceName:        "weft-proxy", // the schema's default
		Attributes: []*api.Attribute{
			{Key: "deployment.environment", Value: "test"},
			{Key: "k8s.deployment.name", Value: "web"},
			{Key: "k8s.namespace.name", Value: ns},
			{Key: "k8s.pod.name", Value: "web-5f7c9d8b6d-abcde"},
			{Key: "k8s.replicaset.name", Value: "web-5f7c9d8b6d"},
		},
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Fatalf("tracing (-want +got):\n%s", d)
	}

	start = time.Now()
	apply(t, mesh+"spec:\n  tracing:\n    collector: jaeger.tracing.svc.cluster.local:4317\n    samplingRate: \"1\"\n")
	if got := next("a new rate", func(tr *api.Tracing) bool { return tr.GetSamplingPerMillion() == 1_000_000 }); len(got.GetAttributes()) != 4 {
		t.Errorf("attributes after the user's were removed: %v, want the pod's four", got.GetAttributes())
	}

	// The same field manager applying a Mesh without spec.tracing removes it.
	start = time.Now()
	apply(t, mesh+"spec:\n  trustDomain: cluster.local\n")
	next("tracing off", func(tr *api.Tracing) bool { return tr == nil })
}
