package destination

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/proxy/api"
)

// TestApplyHTTPFault: an HTTPFault that appears, changes or goes recompiles the roots
// of the routes and ServiceProfiles of its namespace that name it, and no other; the
// compiler's state carries it.
func TestApplyHTTPFault(t *testing.T) {
	parent := func(svc string) []gatewayv1.ParentReference {
		return []gatewayv1.ParentReference{{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(svc)}}
	}
	ref := func(name string) []gatewayv1.HTTPRouteRule {
		return []gatewayv1.HTTPRouteRule{{Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef,
			ExtensionRef: &gatewayv1.LocalObjectReference{Group: "mesh.weft.dev", Kind: "HTTPFault", Name: gatewayv1.ObjectName(name)}}}}}
	}
	s := newStore("cluster.local")
	s.apply(nil, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "uses", Generation: 1},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parent("web")}, Rules: ref("chaos")}})
	s.apply(nil, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "other", Generation: 1},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parent("api")}, Rules: ref("else")}})
	s.apply(nil, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "same-name", Generation: 1},
		Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parent("ops")}, Rules: ref("chaos")}})
	s.apply(nil, &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "books.shop.svc.cluster.local", Generation: 1},
		Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{{Name: "r", Fault: "chaos"}}}})
	s.roots = map[string]struct{}{}

	f := &meshv1alpha1.HTTPFault{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "chaos", Generation: 1},
		Spec: meshv1alpha1.HTTPFaultSpec{Abort: &meshv1alpha1.FaultAbort{HTTPStatus: ptr.To[int32](503), Percentage: 5}}}
	if !s.apply(nil, f) {
		t.Fatal("an HTTPFault was not a change")
	}
	want := map[string]struct{}{"shop/web": {}, "shop/books": {}}
	if len(s.roots) != len(want) {
		t.Errorf("roots %v, want %v", s.roots, want)
	}
	for k := range want {
		if _, ok := s.roots[k]; !ok {
			t.Errorf("roots %v, want %s among them", s.roots, k)
		}
	}
	if st := s.state("cluster.local", nil, nil, nil); len(st.HTTPFaults) != 1 || st.HTTPFaults[0].Name != "chaos" {
		t.Errorf("state's HTTPFaults %v", st.HTTPFaults)
	}
	// The same generation again (a metadata change) is no change.
	if s.apply(f, f.DeepCopy()) {
		t.Error("an unchanged HTTPFault was a change")
	}
	s.roots = map[string]struct{}{}
	if !s.apply(f, nil) {
		t.Fatal("a deleted HTTPFault was not a change")
	}
	if _, ok := s.roots["shop/web"]; !ok || len(s.faults) != 0 {
		t.Errorf("after delete: roots %v, faults %v", s.roots, s.faults)
	}
}

// TestFaultRecompiles: through the real destination service and API server, a route
// naming a missing HTTPFault compiles to the 500 abort; creating the HTTPFault reaches
// the subscriber as the fault, changing it as the new share, deleting it as the 500
// again.
func TestFaultRecompiles(t *testing.T) {
	ns := namespace(t, "faults")
	apply(t, fmt.Sprintf(webYAML, ns, clusterIP(t)))
	req := authority("web", ns, 80)
	req.ContextNamespace = ns
	sub := subscribe(t, conn(t, ns), req)
	if sub.next(t, 5*time.Second).GetSnapshot() == nil {
		t.Fatal("want a snapshot first")
	}
	fault := func() *api.Fault {
		t.Helper()
		for _, f := range sub.cfg.GetRoutes()[0].GetFilters() {
			if ft := f.GetFault(); ft != nil {
				return ft
			}
		}
		t.Fatalf("no fault filter in %v", sub.cfg.GetRoutes())
		return nil
	}
	apply(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {namespace: %s, name: web}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - name: chaos
    filters:
    - type: ExtensionRef
      extensionRef: {group: mesh.weft.dev, kind: HTTPFault, name: chaos}
`, ns))
	sub.next(t, within)
	if f := fault(); f.GetAbort().GetHttpStatus() != 500 || f.GetAbort().GetPerMillion() != 1_000_000 {
		t.Fatalf("missing HTTPFault: %v, want the 500 abort", f)
	}
	faultYAML := `
apiVersion: mesh.weft.dev/v1alpha1
kind: HTTPFault
metadata: {namespace: %s, name: chaos}
spec:
  abort: {httpStatus: 503, percentage: %d}
`
	apply(t, fmt.Sprintf(faultYAML, ns, 10))
	sub.next(t, within)
	if f := fault(); f.GetAbort().GetHttpStatus() != 503 || f.GetAbort().GetPerMillion() != 100_000 {
		t.Fatalf("created HTTPFault: %v, want 503 at 10%%", f)
	}
	apply(t, fmt.Sprintf(faultYAML, ns, 20))
	sub.next(t, within)
	if f := fault(); f.GetAbort().GetPerMillion() != 200_000 {
		t.Fatalf("changed HTTPFault: %v, want 20%%", f)
	}
	if err := suite.client.Delete(context.Background(), &meshv1alpha1.HTTPFault{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chaos"}}); err != nil {
		t.Fatal(err)
	}
	sub.next(t, within)
	if f := fault(); f.GetAbort().GetHttpStatus() != 500 {
		t.Fatalf("deleted HTTPFault: %v, want the 500 abort again", f)
	}
}
