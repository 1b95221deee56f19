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
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
)

// corsRouteYAML is an HTTPRoute as a user applies it: maxAge left to the schema's
// default.
const corsRouteYAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: shop, name: cors}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-header-1]
        allowCredentials: true
`

// TestCORSAgainstCRD applies CORS filters to a real API server with each channel's
// CRDs (config/crd/gateway-api, what config/default installs, and
// config/crd/gateway-api-experimental; CORS is in both in v1.6): what the schema
// stores compiles with its defaults, and every filter the schema refuses, the
// compiler refuses too, so a route stored through a laxer CRD is never half-applied.
func TestCORSAgainstCRD(t *testing.T) {
	for _, channel := range []string{"gateway-api", "gateway-api-experimental"} {
		t.Run(channel, func(t *testing.T) { testCORSAgainstCRD(t, channel) })
	}
}

func testCORSAgainstCRD(t *testing.T, crds string) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range env.CRDDirectoryPaths {
		if filepath.Base(p) == "gateway-api" {
			env.CRDDirectoryPaths[i] = filepath.Join(filepath.Dir(p), crds)
		}
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
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if err := c.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(corsRouteYAML), 4096).Decode(&u.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, u); err != nil {
		t.Fatalf("creating the CORS route: %v", err)
	}
	var hr gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "cors"}, &hr); err != nil {
		t.Fatal(err)
	}
	got, err := Compile(&State{Services: []corev1.Service{*web}, HTTPRoutes: []gatewayv1.HTTPRoute{hr}},
		Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 1 {
		t.Fatalf("%d routes, want 1: the rule was dropped (%q)", len(got.Routes), HTTPRuleProblem(hr.Spec.Rules[0]))
	}
	want := []*api.Filter{{Kind: &api.Filter_Cors{Cors: &api.CORS{
		AllowOrigins: []string{"https://www.foo.com", "https://*.bar.com"}, AllowMethods: []string{"GET", "PUT"},
		AllowHeaders: []string{"x-header-1"}, AllowCredentials: true, MaxAgeSeconds: 5, // the schema's default
	}}}}
	if diff := cmp.Diff(want, got.Routes[0].Filters, protocmp.Transform()); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}

	// Filters the schema refuses: the compiler must refuse each as well.
	for _, tc := range []struct {
		name string
		cors gatewayv1.HTTPCORSFilter
	}{
		{"origin without scheme", gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"www.foo.com"}}},
		{"origin with a path", gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a.example/x"}}},
		{"wildcard inside a label", gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"https://a*.example"}}},
		{"* alongside origins", gatewayv1.HTTPCORSFilter{AllowOrigins: []gatewayv1.CORSOrigin{"*", "https://a.example"}}},
		{"lower-case method", gatewayv1.HTTPCORSFilter{AllowMethods: []gatewayv1.HTTPMethodWithWildcard{"get"}}},
		{"* alongside methods", gatewayv1.HTTPCORSFilter{AllowMethods: []gatewayv1.HTTPMethodWithWildcard{"*", "GET"}}},
		{"header name with a space", gatewayv1.HTTPCORSFilter{AllowHeaders: []gatewayv1.HTTPHeaderName{"x a"}}},
		{"* alongside headers", gatewayv1.HTTPCORSFilter{AllowHeaders: []gatewayv1.HTTPHeaderName{"*", "x-a"}}},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			bad := hr.DeepCopy()
			bad.ResourceVersion = ""
			bad.Name = "bad"
			bad.Spec.Rules[0].Filters[0].CORS = &tc.cors
			err := c.Create(ctx, bad)
			if err == nil {
				t.Fatal("the API server stored it: the schema no longer refuses this case")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want a validation error, got %v", err)
			}
			if p := HTTPRuleProblem(bad.Spec.Rules[0]); p == "" {
				t.Errorf("the API server refuses it (%v), the compiler accepts it", err)
			}
		})
	}
	// Stored, but refused by the compiler: a CORS filter on a backendRef.
	onBackend := hr.DeepCopy()
	onBackend.ResourceVersion, onBackend.Name = "", "on-backend"
	onBackend.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{{
		BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To[gatewayv1.PortNumber](80)}},
		Filters:    onBackend.Spec.Rules[0].Filters,
	}}
	onBackend.Spec.Rules[0].Filters = nil
	if err := c.Create(ctx, onBackend); err != nil {
		t.Fatalf("creating a route with a backendRef CORS filter: %v", err)
	}
	if p := HTTPRuleProblem(onBackend.Spec.Rules[0]); !strings.Contains(p, "not a backendRef's") {
		t.Errorf("backendRef CORS: problem %q", p)
	}
}
