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
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/controllers"
)

func svcParent(name string, port *int32) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
		Name: gatewayv1.ObjectName(name), Port: port}
}

func httpBackend(name string, port int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(name), Port: ptr.To(port)}}}
}

// weftParent returns Weft's status entry for a parentRef, or nil.
func weftParent(parents []gatewayv1.RouteParentStatus, pr gatewayv1.ParentReference) *gatewayv1.RouteParentStatus {
	for i, p := range parents {
		if p.ControllerName == controllers.MeshControllerName && p.ParentRef.Name == pr.Name &&
			ptr.Deref(p.ParentRef.Port, 0) == ptr.Deref(pr.Port, 0) {
			return &parents[i]
		}
	}
	return nil
}

// routeCondition checks one condition of Weft's entry for the route's first parentRef.
func routeCondition(parents []gatewayv1.RouteParentStatus, pr gatewayv1.ParentReference, condType gatewayv1.RouteConditionType,
	status metav1.ConditionStatus, reason string, generation int64, message string) error {
	p := weftParent(parents, pr)
	if p == nil {
		return fmt.Errorf("no %s entry for parent %s yet; parents: %+v", controllers.MeshControllerName, pr.Name, parents)
	}
	c := meta.FindStatusCondition(p.Conditions, string(condType))
	if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != generation || !strings.Contains(c.Message, message) {
		return fmt.Errorf("want %s=%s reason %s generation %d message containing %q; got %+v", condType, status, reason, generation, message, c)
	}
	return nil
}

func TestRouteStatus(t *testing.T) {
	c := startControllers(t)
	ctx := context.Background()
	for _, ns := range []string{"gamma", "gamma-client"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"gamma/web", "gamma/web-v2", "gamma-client/api"} {
		ns, name, _ := strings.Cut(key, "/")
		if err := c.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	web := svcParent("web", nil)

	t.Run("missing backend Service, then created", func(t *testing.T) {
		route := &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "missing-backend"},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}},
				Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{httpBackend("web-gone", 80)}}},
			},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(route)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, "Attached to Service gamma/web"); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionFalse,
				string(gatewayv1.RouteReasonBackendNotFound), route.Generation, "Service gamma/web-gone does not exist"); err != nil {
				return err
			}
			if ok, err := hasEvent(ctx, c, "gamma", route.Name, string(gatewayv1.RouteReasonBackendNotFound)); !ok {
				return fmt.Errorf("want a BackendNotFound Event (err %v)", err)
			}
			return nil
		})

		// Creating the backend is enough: the Service watch requeues the route.
		if err := c.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "web-gone"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue,
				string(gatewayv1.RouteReasonResolvedRefs), route.Generation, "All references resolved")
		})
	})

	cases := []struct {
		name     string
		parent   gatewayv1.ParentReference
		backend  gatewayv1.HTTPBackendRef
		filters  []gatewayv1.HTTPRouteFilter
		condType gatewayv1.RouteConditionType
		status   metav1.ConditionStatus
		reason   gatewayv1.RouteConditionReason
		message  string
	}{
		{name: "parent Service missing", parent: svcParent("nope", nil), backend: httpBackend("web", 80),
			condType: gatewayv1.RouteConditionAccepted, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonNoMatchingParent,
			message: "Service gamma/nope does not exist"},
		{name: "parent port missing", parent: svcParent("web", ptr.To[int32](81)), backend: httpBackend("web", 80),
			condType: gatewayv1.RouteConditionAccepted, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonNoMatchingParent,
			message: "Service gamma/web has no port 81"},
		{name: "parent port present", parent: svcParent("web", ptr.To[int32](80)), backend: httpBackend("web", 80),
			condType: gatewayv1.RouteConditionAccepted, status: metav1.ConditionTrue, reason: gatewayv1.RouteReasonAccepted,
			message: "Attached to Service gamma/web"},
		{name: "backend of an unsupported kind", parent: web,
			backend: gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Group: ptr.To(gatewayv1.Group("example.com")), Kind: ptr.To(gatewayv1.Kind("Bucket")), Name: "b"}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonInvalidKind,
			message: "names a Bucket.example.com"},
		{name: "backend port missing", parent: web, backend: httpBackend("web-v2", 81),
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonBackendNotFound,
			message: "Service gamma/web-v2 has no port 81"},
		{name: "backend in another namespace needs no ReferenceGrant", parent: web,
			backend: gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: "api", Namespace: ptr.To(gatewayv1.Namespace("gamma-client")), Port: ptr.To[int32](80)}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionTrue, reason: gatewayv1.RouteReasonResolvedRefs,
			message: ""},
		{name: "backend in another namespace that does not exist", parent: web,
			backend: gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: "gone", Namespace: ptr.To(gatewayv1.Namespace("gamma-client")), Port: ptr.To[int32](80)}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonBackendNotFound,
			message: "Service gamma-client/gone does not exist"},
		{name: "unsupported filter drops the only rule", parent: web, backend: httpBackend("web", 80),
			filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef, ExtensionRef: &gatewayv1.LocalObjectReference{
				Group: "example.com", Kind: "Shaper", Name: "s"}}},
			condType: gatewayv1.RouteConditionAccepted, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonUnsupportedValue,
			message: "rule 0: filter type ExtensionRef is not supported"},
		{name: "RequestMirror is accepted", parent: web, backend: httpBackend("web", 80),
			filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
				BackendRef: gatewayv1.BackendObjectReference{Name: "web-v2", Port: ptr.To[int32](80)},
				Fraction:   &gatewayv1.Fraction{Numerator: 1, Denominator: ptr.To[int32](3)}}}},
			condType: gatewayv1.RouteConditionAccepted, status: metav1.ConditionTrue, reason: gatewayv1.RouteReasonAccepted,
			message: "Attached to Service gamma/web"},
		{name: "RequestMirror resolves", parent: web, backend: httpBackend("web", 80),
			filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
				BackendRef: gatewayv1.BackendObjectReference{Name: "api", Namespace: ptr.To(gatewayv1.Namespace("gamma-client")), Port: ptr.To[int32](80)},
				Percent:    ptr.To[int32](50)}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionTrue, reason: gatewayv1.RouteReasonResolvedRefs,
			message: "All references resolved"},
		{name: "RequestMirror to a missing Service", parent: web, backend: httpBackend("web", 80),
			filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
				BackendRef: gatewayv1.BackendObjectReference{Name: "shadow", Port: ptr.To[int32](80)}}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonBackendNotFound,
			message: "Nothing is mirrored to these RequestMirror backends: Service gamma/shadow does not exist"},
		{name: "RequestMirror on a backendRef to a missing port", parent: web,
			backend: gatewayv1.HTTPBackendRef{BackendRef: httpBackend("web", 80).BackendRef,
				Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
					BackendRef: gatewayv1.BackendObjectReference{Name: "web-v2", Port: ptr.To[int32](81)}}}}},
			condType: gatewayv1.RouteConditionResolvedRefs, status: metav1.ConditionFalse, reason: gatewayv1.RouteReasonBackendNotFound,
			message: "Nothing is mirrored to these RequestMirror backends: Service gamma/web-v2 has no port 81"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			route := &gatewayv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: fmt.Sprintf("case-%d", i)},
				Spec: gatewayv1.HTTPRouteSpec{
					CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{tc.parent}},
					Rules:           []gatewayv1.HTTPRouteRule{{Filters: tc.filters, BackendRefs: []gatewayv1.HTTPBackendRef{tc.backend}}},
				},
			}
			if err := c.Create(ctx, route); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, func() error {
				if err := c.Get(ctx, client.ObjectKeyFromObject(route), route); err != nil {
					return err
				}
				if err := routeCondition(route.Status.Parents, tc.parent, tc.condType, tc.status, string(tc.reason), route.Generation, tc.message); err != nil {
					return err
				}
				if tc.status == metav1.ConditionFalse {
					if ok, err := hasEvent(ctx, c, "gamma", route.Name, string(tc.reason)); !ok {
						return fmt.Errorf("want a %s Event (err %v)", tc.reason, err)
					}
				}
				return nil
			})
		})
	}

	t.Run("partially invalid: dropped rule reported, route accepted", func(t *testing.T) {
		route := &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "partial"},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}},
				Rules: []gatewayv1.HTTPRouteRule{
					{BackendRefs: []gatewayv1.HTTPBackendRef{httpBackend("web", 80)}},
					{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchRegularExpression), Value: ptr.To("/(")}}},
						BackendRefs: []gatewayv1.HTTPBackendRef{httpBackend("web", 80)}},
				},
			},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(route), route); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, ""); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionPartiallyInvalid, metav1.ConditionTrue,
				string(gatewayv1.RouteReasonUnsupportedValue), route.Generation, "Dropped Rule(s): rule 1: path regular expression")
		})
	})

	t.Run("other controllers' entries are left alone; stale Weft entries go", func(t *testing.T) {
		gw := gatewayv1.ParentReference{Name: "edge"}
		route := &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "shared"},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{gw, web}},
				Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{httpBackend("web", 80)}}},
			},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(route)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, "")
		})
		// A Gateway controller reports on its own parent, read-modify-write.
		foreign := gatewayv1.RouteParentStatus{
			ParentRef:      gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group(gatewayv1.GroupName)), Kind: ptr.To(gatewayv1.Kind("Gateway")), Name: "edge"},
			ControllerName: "example.com/gateway-controller",
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "Edge",
				ObservedGeneration: route.Generation, LastTransitionTime: metav1.Now()}},
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			route.Status.Parents = append(route.Status.Parents, foreign)
			return c.Status().Update(ctx, route)
		})
		// Changing the spec makes Weft rewrite its entry; the foreign one stays.
		route.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{httpBackend("web-v2", 80)}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			route.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{httpBackend("web-v2", 80)}
			return c.Update(ctx, route)
		})
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue, "ResolvedRefs", route.Generation, ""); err != nil {
				return err
			}
			if len(route.Status.Parents) != 2 || route.Status.Parents[0].ControllerName != foreign.ControllerName ||
				route.Status.Parents[0].Conditions[0].Message != "Edge" {
				return fmt.Errorf("want the foreign entry kept first and unchanged, got %+v", route.Status.Parents)
			}
			return nil
		})
		// Detaching from the Service removes Weft's entry and only it.
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			route.Spec.ParentRefs = []gatewayv1.ParentReference{gw}
			return c.Update(ctx, route)
		})
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if len(route.Status.Parents) != 1 || route.Status.Parents[0].ControllerName != foreign.ControllerName {
				return fmt.Errorf("want only the foreign entry, got %+v", route.Status.Parents)
			}
			return nil
		})
	})

	t.Run("GRPCRoute with a missing backend", func(t *testing.T) {
		route := &gatewayv1.GRPCRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "rpc"},
			Spec: gatewayv1.GRPCRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}},
				Rules: []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: "rpc-gone", Port: ptr.To[int32](9090)}}}}}},
			},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(route)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, ""); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionFalse,
				string(gatewayv1.RouteReasonBackendNotFound), route.Generation, "Service gamma/rpc-gone does not exist")
		})
		if err := c.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "rpc-gone"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9090}}},
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue, "ResolvedRefs", route.Generation, "")
		})
	})

	t.Run("GRPCRoute mirror to a missing Service, then created", func(t *testing.T) {
		route := &gatewayv1.GRPCRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "rpc-mirror"},
			Spec: gatewayv1.GRPCRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}},
				Rules: []gatewayv1.GRPCRouteRule{{
					Filters: []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
						BackendRef: gatewayv1.BackendObjectReference{Name: "rpc-shadow", Port: ptr.To[int32](9090)}, Percent: ptr.To[int32](10)}}},
					BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
						BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To[int32](80)}}}}}},
			},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(route)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			// The rule stays: only the mirror is dropped.
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, ""); err != nil {
				return err
			}
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionFalse,
				string(gatewayv1.RouteReasonBackendNotFound), route.Generation,
				"Nothing is mirrored to these RequestMirror backends: Service gamma/rpc-shadow does not exist"); err != nil {
				return err
			}
			if ok, err := hasEvent(ctx, c, "gamma", route.Name, string(gatewayv1.RouteReasonBackendNotFound)); !ok {
				return fmt.Errorf("want a BackendNotFound Event (err %v)", err)
			}
			return nil
		})
		// The mirror's Service is indexed like a backend's: creating it requeues the
		// route.
		if err := c.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "rpc-shadow"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9090}}},
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			return routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue, "ResolvedRefs", route.Generation, "All references resolved")
		})
	})

	t.Run("a bad retry or timeout annotation: a condition naming it, an Event, gone once fixed", func(t *testing.T) {
		route := &gatewayv1.GRPCRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "annotated",
				Annotations: map[string]string{"retry.weft.dev/http": "5xx", "timeout.weft.dev/request": "2"}},
			Spec: gatewayv1.GRPCRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{web}}},
		}
		if err := c.Create(ctx, route); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(route)
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			// The rules are untouched: still Accepted.
			if err := routeCondition(route.Status.Parents, web, gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, "Accepted", route.Generation, ""); err != nil {
				return err
			}
			for _, name := range []string{"retry.weft.dev/http", "not valid on a GRPCRoute", "timeout.weft.dev/request", "with its unit"} {
				if err := routeCondition(route.Status.Parents, web, controllers.RouteConditionAnnotationsAccepted, metav1.ConditionFalse,
					controllers.RouteReasonInvalidAnnotation, route.Generation, name); err != nil {
					return err
				}
			}
			if ok, err := hasEvent(ctx, c, "gamma", route.Name, controllers.RouteReasonInvalidAnnotation); !ok {
				return fmt.Errorf("want an InvalidAnnotation Event (err %v)", err)
			}
			return nil
		})
		route.Annotations = map[string]string{"retry.weft.dev/grpc": "unavailable", "timeout.weft.dev/request": "2s"}
		if err := c.Update(ctx, route); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if err := c.Get(ctx, key, route); err != nil {
				return err
			}
			if p := weftParent(route.Status.Parents, web); p == nil || meta.FindStatusCondition(p.Conditions, controllers.RouteConditionAnnotationsAccepted) != nil {
				return fmt.Errorf("want no %s once the annotations are valid; parents %+v", controllers.RouteConditionAnnotationsAccepted, route.Status.Parents)
			}
			return nil
		})
	})

	t.Run("a bad annotation on a Service raises an Event naming it", func(t *testing.T) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "gamma", Name: "annotated-svc", Annotations: map[string]string{"retry.weft.dev/limit": "lots"}},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if err := c.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			var events eventsv1.EventList
			if err := c.List(ctx, &events, client.InNamespace("gamma")); err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Regarding.Kind == "Service" && e.Regarding.Name == svc.Name && e.Reason == controllers.RouteReasonInvalidAnnotation &&
					strings.Contains(e.Note, "retry.weft.dev/limit") {
					return nil
				}
			}
			return fmt.Errorf("no InvalidAnnotation Event naming retry.weft.dev/limit on Service gamma/%s", svc.Name)
		})
	})
}
