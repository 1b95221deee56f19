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

package compiler

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// The objects as a user applies them: short, relying on the CRDs' defaults.
const appliedYAML = `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: web}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: web-v2}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {namespace: shop, name: web}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web-v2-abc}
spec:
  serviceAccountName: web
  initContainers: [{name: weft-proxy, image: weft-proxy:dev, restartPolicy: Always}]
  containers: [{name: app, image: app:dev}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  namespace: shop
  name: web-v2-1
  labels: {kubernetes.io/service-name: web-v2}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.1.1]
  zone: z1
  targetRef: {kind: Pod, namespace: shop, name: web-v2-abc}
- addresses: [10.0.1.2]
  conditions: {ready: false}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: shop, name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web-v2, port: 80}]
  - matches: [{headers: [{name: x-canary, value: "1"}]}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web-v2, port: 80}, fraction: {numerator: 7}}}]
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {namespace: shop, name: web}
spec:
  service: web
  backends: [{service: web, weight: 0}, {service: web-v2, weight: 100}]
---
apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {namespace: shop, name: web.shop.svc.cluster.local}
spec:
  retryBudget: {retryRatio: 0.3, minRetriesPerSecond: 5, ttl: 20s}
  routes: [{name: ignored, condition: {method: GET}}]
`

// TestCompileAppliedObjects compiles objects read back from a real API server, so the
// CRDs' defaults (rule matches, backend weights and groups) are what the compiler sees.
func TestCompileAppliedObjects(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(appliedYAML), 4096)
	for {
		u := map[string]any{}
		if err := dec.Decode(&u); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{Object: u}
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}

	s := &State{}
	var (
		svcs   corev1.ServiceList
		slices discoveryv1.EndpointSliceList
		pods   corev1.PodList
		sps    meshv1alpha1.ServiceProfileList
		hrs    gatewayv1.HTTPRouteList
		tss    splitv1alpha2.TrafficSplitList
	)
	for _, l := range []client.ObjectList{&svcs, &slices, &pods, &sps, &hrs, &tss} {
		if err := c.List(ctx, l, client.InNamespace("shop")); err != nil {
			t.Fatal(err)
		}
	}
	s.Services, s.EndpointSlices, s.Pods = svcs.Items, slices.Items, pods.Items
	s.ServiceProfiles, s.HTTPRoutes, s.TrafficSplits = sps.Items, hrs.Items, tss.Items

	got, err := Compile(s, Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	got.Version = ""
	svcIP := svcs.Items[0].Spec.ClusterIP
	if svcs.Items[0].Name != "web" {
		svcIP = svcs.Items[1].Spec.ClusterIP
	}
	res := func(rule string) *api.ResourceRef {
		return &api.ResourceRef{Kind: "HTTPRoute", Namespace: "shop", Name: "web", Rule: rule}
	}
	want := &api.DestinationConfig{
		Service:     &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
		Addresses:   []string{svcIP + ":80"},
		Authorities: []string{"web.shop.svc.cluster.local:80"},
		Protocol:    api.ProtocolHint_PROTOCOL_HINT_HTTP1,
		RouteSource: api.RouteSource_ROUTE_SOURCE_GATEWAY_API,
		Routes: []*api.Route{
			// The header match is more specific than the defaulted PathPrefix "/".
			{Name: "web/rule-1", Resource: res("1"),
				Matches: []*api.RouteMatch{{Path: prefixMatch("/"), Headers: []*api.HeaderMatch{{Name: "x-canary", Value: exactMatch("1")}}}},
				// The fraction's denominator defaults to 100.
				Filters:  []*api.Filter{apiMirror("shop/web-v2:80", 7, 100)},
				Backends: []*api.WeightedBackend{wb("shop/web:80", 0), wb("shop/web-v2:80", 100)}},
			{Name: "web/rule-0", Resource: res("0"),
				Matches:  []*api.RouteMatch{{Path: prefixMatch("/")}},
				Backends: []*api.WeightedBackend{wb("shop/web-v2:80", 1)}},
		},
		RetryBudget: &api.RetryBudget{RetryRatio: 0.3, MinRetriesPerSecond: 5, Ttl: durationpb.New(20 * time.Second)},
		Backends: []*api.Backend{
			{Key: "shop/web-v2:80", Service: &api.ServiceRef{Namespace: "shop", Name: "web-v2", Port: 80},
				Authority: "web-v2.shop.svc.cluster.local:80",
				Endpoints: []*api.Endpoint{{Address: "10.0.1.1", Port: 8080, Identity: "spiffe://cluster.local/ns/shop/sa/web",
					ProxyPort: 4143, Zone: "z1", Pod: "web-v2-abc", MetricLabels: mlabels("web-v2", "web-v2-abc", "web")}}},
			{Key: "shop/web:80", Service: &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
				Authority: "web.shop.svc.cluster.local:80", Protocol: api.ProtocolHint_PROTOCOL_HINT_HTTP1},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("destination (-want +got):\n%s", diff)
	}
}
