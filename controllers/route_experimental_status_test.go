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

package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/internal/testenv"
)

// useExperimentalHTTPRoutes replaces the standard HTTPRoute CRD with the experimental
// channel's (config/crd/gateway-api-experimental), as a user who opts in does, and
// waits until the API server stores the experimental fields.
func useExperimentalHTTPRoutes(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "config", "crd", "gateway-api-experimental", "gateway.networking.k8s.io_httproutes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		t.Fatal(err)
	}
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(crd.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(crd), cur); err != nil {
		t.Fatal(err)
	}
	crd.SetResourceVersion(cur.GetResourceVersion())
	if err := c.Update(ctx, crd); err != nil {
		t.Fatalf("installing the experimental HTTPRoute CRD: %v", err)
	}
	// The schema is served once a dry-run create keeps sessionPersistence (a field
	// only the experimental channel has; CORS is in both).
	probe := corsRoute("probe", []gatewayv1.HTTPRouteRule{{SessionPersistence: &gatewayv1.SessionPersistence{SessionName: ptr.To("s")}}})
	eventually(t, 20*time.Second, func() error {
		p := probe.DeepCopy()
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if p.Spec.Rules[0].SessionPersistence == nil {
			return fmt.Errorf("the API server still prunes sessionPersistence")
		}
		return nil
	})
}

func corsRoute(name string, rules []gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "gamma-exp", Name: name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{svcParent("web", nil)}},
			Rules:           rules,
		},
	}
}

// TestRouteStatusExperimental: with the experimental CRDs installed, a CORS filter Weft
// applies leaves the route Accepted, and one it cannot (on a backendRef) or a rule
// asking for sessionPersistence is refused on the route's status with the reason
// and a message naming the field, never applied half-way.
func TestRouteStatusExperimental(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gamma-exp"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "gamma-exp", Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}); err != nil {
		t.Fatal(err)
	}
	useExperimentalHTTPRoutes(t, ctx, c)
	web := svcParent("web", nil)
	cors := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterCORS, CORS: &gatewayv1.HTTPCORSFilter{
		AllowOrigins: []gatewayv1.CORSOrigin{"https://*.example.com"}, AllowCredentials: ptr.To(true)}}
	backend := httpBackend("web", 80)
	backendWithCORS := httpBackend("web", 80)
	backendWithCORS.Filters = []gatewayv1.HTTPRouteFilter{cors}
	for _, tc := range []struct {
		name    string
		rules   []gatewayv1.HTTPRouteRule
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{name: "cors", rules: []gatewayv1.HTTPRouteRule{{Filters: []gatewayv1.HTTPRouteFilter{cors}, BackendRefs: []gatewayv1.HTTPBackendRef{backend}}},
			status: metav1.ConditionTrue, reason: "Accepted", message: "Attached to Service gamma-exp/web"},
		{name: "cors-on-backend", rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{backendWithCORS}}},
			status: metav1.ConditionFalse, reason: string(gatewayv1.RouteReasonUnsupportedValue),
			message: "rule 0: backendRef web: filter type CORS is supported in a rule's filters, not a backendRef's"},
		{name: "session-persistence", rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{backend},
			SessionPersistence: &gatewayv1.SessionPersistence{SessionName: ptr.To("s")}}},
			status: metav1.ConditionFalse, reason: string(gatewayv1.RouteReasonUnsupportedValue),
			message: "rule 0: sessionPersistence is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			route := corsRoute(tc.name, tc.rules)
			if err := c.Create(ctx, route); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, func() error {
				if err := c.Get(ctx, client.ObjectKeyFromObject(route), route); err != nil {
					return err
				}
				if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, tc.status, tc.reason, route.Generation, tc.message); err != nil {
					return err
				}
				if tc.status == metav1.ConditionFalse {
					if ok, err := hasEvent(ctx, c, "gamma-exp", route.Name, tc.reason); !ok {
						return fmt.Errorf("want a %s Event (err %v)", tc.reason, err)
					}
				}
				return nil
			})
		})
	}
}
