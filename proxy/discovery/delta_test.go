package discovery

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/proxy/api"
)

// compiled is the configuration the control plane's compiler makes for Service
// shop/web port 80 (cluster IP 10.96.0.10) with the given ready endpoint addresses,
// so deltas and versions in these tests are the real ones, not the client's idea of
// them.
func compiled(t testing.TB, addrs ...string) *api.DestinationConfig {
	t.Helper()
	es := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	s := &compiler.State{
		Services: []corev1.Service{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}},
		EndpointSlices: []discoveryv1.EndpointSlice{es},
	}
	s.SetMesh(nil)
	c, err := compiler.Compile(s, compiler.Target{Namespace: "shop", Name: "web", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// delta is the control plane's endpoint delta from prev to next.
func delta(t testing.TB, prev, next *api.DestinationConfig) *api.EndpointDelta {
	t.Helper()
	u := compiler.Update(prev, next)
	d := u.GetEndpoints()
	if d == nil {
		t.Fatalf("the compiler sent %v, not an endpoint delta", u)
	}
	return d
}

func TestApplyDelta(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev, next []string
	}{
		{"add one", []string{"10.0.0.1"}, []string{"10.0.0.1", "10.0.0.2"}},
		{"add before, numerically", []string{"10.0.0.10"}, []string{"10.0.0.9", "10.0.0.10"}},
		{"remove one", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []string{"10.0.0.1", "10.0.0.3"}},
		{"remove all", []string{"10.0.0.1", "10.0.0.2"}, nil},
		{"from none", nil, []string{"10.0.0.2", "10.0.0.1"}},
		{"replace all", []string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.3", "10.0.0.4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, next := compiled(t, tc.prev...), compiled(t, tc.next...)
			before := proto.Clone(prev)
			got, err := applyDelta(prev, delta(t, prev, next))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, next) {
				t.Errorf("applied delta:\n got %v\nwant %v", got, next)
			}
			if !proto.Equal(prev, before) {
				t.Errorf("the base configuration was modified:\n now %v\nwas %v", prev, before)
			}
			if got == prev || got.Backends[0] == prev.Backends[0] {
				t.Error("want a new configuration and a new backend, got the old ones")
			}
		})
	}
}

func TestApplyDeltaRefusesWrongBase(t *testing.T) {
	v1, v2, v3 := compiled(t, "10.0.0.1"), compiled(t, "10.0.0.1", "10.0.0.2"), compiled(t, "10.0.0.2")
	unknown := proto.CloneOf(delta(t, v1, v2))
	unknown.Backend = "shop/other:80"
	for _, tc := range []struct {
		name    string
		base    *api.DestinationConfig
		d       *api.EndpointDelta
		wantErr error
	}{
		// The delta from v2 to v3 only removes 10.0.0.1; applied to v1 it leaves no
		// endpoint, which is not v3.
		{"delta made against another base", v1, delta(t, v2, v3), errVersionMismatch},
		{"unknown backend", v1, unknown, nil},
		{"no snapshot yet", nil, delta(t, v1, v2), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyDelta(tc.base, tc.d)
			if err == nil {
				t.Fatalf("want an error, got %v", got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("want %v, got %v", tc.wantErr, err)
			}
		})
	}
}

func BenchmarkApplyDelta(b *testing.B) {
	var prevAddrs []string
	for i := range 1000 {
		prevAddrs = append(prevAddrs, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	prev := compiled(b, prevAddrs...)
	next := compiled(b, append(prevAddrs, "10.1.0.1")...)
	d := delta(b, prev, next)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := applyDelta(prev, d); err != nil {
			b.Fatal(err)
		}
	}
}
