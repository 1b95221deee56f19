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

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/destination"
	internalidentity "github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/proxy/discovery"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/test/localmesh"
)

// meshEnv is a control plane with a Ready Mesh and the meshed namespace "shop", with
// what the injector would mount into a pod there: the trust roots and tokens.
type meshEnv struct {
	cp    *localmesh.ControlPlane
	dir   string
	roots string
}

const shop = "shop"

func startMesh(t *testing.T) *meshEnv {
	t.Helper()
	cp := startControlPlane(t)
	ctx := context.Background()
	e := &meshEnv{cp: cp, dir: t.TempDir()}
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop,
		Annotations: map[string]string{"weft.dev/inject": "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "books"} {
		if err := cp.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: sa}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.Client.Create(ctx, &meshv1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1alpha1.MeshName}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the Mesh to be Ready", func() error {
		m := &meshv1alpha1.Mesh{}
		if err := cp.Client.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, m); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(m.Status.Conditions, meshv1alpha1.ConditionReady) {
			return fmt.Errorf("conditions: %+v", m.Status.Conditions)
		}
		return nil
	})
	e.roots = filepath.Join(e.dir, "ca-bundle.pem")
	waitFor(t, 10*time.Second, "the trust roots in the meshed namespace", func() error {
		cm := &corev1.ConfigMap{}
		if err := cp.Client.Get(ctx, types.NamespacedName{Namespace: shop, Name: controllers.TrustRootsName}, cm); err != nil {
			return err
		}
		if cm.Data[controllers.TrustRootsKey] == "" {
			return fmt.Errorf("empty bundle")
		}
		return os.WriteFile(e.roots, []byte(cm.Data[controllers.TrustRootsKey]), 0o600)
	})
	return e
}

func (e *meshEnv) token(t *testing.T, sa string) string {
	t.Helper()
	path, err := e.cp.Token(context.Background(), e.dir, shop, sa)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// create creates obj, or updates it when it exists (keeping its resourceVersion).
func (e *meshEnv) apply(t *testing.T, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	obj.SetResourceVersion("")
	err := e.cp.Client.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		cur := obj.DeepCopyObject().(client.Object)
		if err := e.cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			t.Fatal(err)
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		err = e.cp.Client.Update(ctx, obj)
	}
	if err != nil {
		t.Fatalf("applying %T %s: %v", obj, obj.GetName(), err)
	}
}

func (e *meshEnv) delete(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e.cp.Client.Delete(context.Background(), obj); err != nil {
		t.Fatalf("deleting %T %s: %v", obj, obj.GetName(), err)
	}
}

// service is a Service in shop with port 80 named http to targetPort; the API server
// allocates its cluster IP.
func service(name string, targetPort int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80,
			TargetPort: intstr.FromInt32(int32(targetPort))}}},
	}
}

// endpointSlice is the one EndpointSlice of Service svc, with ready endpoints at the
// backends' addresses (all on the same port, as the pods of a Deployment are).
func endpointSlice(svc string, bs ...*backend) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: svc + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for i, b := range bs {
		if i == 0 {
			es.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(b.addr.Port()))}}
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{b.addr.Addr().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

// backend is a real HTTP server on a loopback address that names itself in its
// answers and can be made slow or failing.
type backend struct {
	name      string
	addr      netip.AddrPort
	delay     atomic.Int64 // nanoseconds before answering
	failEvery atomic.Int64 // answer 500 to every n-th request; 0: never
	failAll   atomic.Bool
	hits      atomic.Int64
	srv       *http.Server
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := b.hits.Add(1)
	if d := time.Duration(b.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Backend", b.name)
	if fe := b.failEvery.Load(); b.failAll.Load() || (fe > 0 && n%fe == 0) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s fails", b.name)
		return
	}
	fmt.Fprint(w, b.name)
}

// TestDestinationClientAgainstTheControlPlane runs the proxy's destination client
// in-process against the real destination service: its certificate comes from the
// real identity service, and what it receives follows the API server's objects.
func TestDestinationClientAgainstTheControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, cert-manager and the control plane")
	}
	pods := startEndpointNet(t)
	e := startMesh(t)
	ctx := context.Background()
	webID := internalidentity.SPIFFEID("cluster.local", shop, "web")

	store := &identity.Store{}
	idCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go (&identity.Mesh{Addr: e.cp.IdentityAddr, ServerName: internalidentity.ServiceName + "." + localmesh.Namespace + ".svc",
		ID: webID, TokenPath: e.token(t, "web"), RootsPath: e.roots, Store: store, Log: logr.Discard()}).Run(idCtx)
	waitFor(t, 20*time.Second, "a workload certificate", func() error {
		if !store.Ready() {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	c := discovery.New(discovery.Options{Addr: e.cp.DestinationAddr,
		ServerName: destination.ServiceName + "." + localmesh.Namespace + ".svc",
		Namespace:  shop, Identity: store, FirstAnswerWait: 5 * time.Second})
	defer c.Close()

	bs := pods.backends(t, "books-a", "books-b")
	e.apply(t, service("books", endpointPort))
	e.apply(t, endpointSlice("books", bs[0]))
	target := discovery.Target{Authority: "books.shop.svc.cluster.local:80"}
	endpoints := func() []string {
		cfg := c.Lookup(ctx, target)
		if cfg == nil {
			return nil
		}
		var out []string
		for _, b := range cfg.GetBackends() {
			for _, ep := range b.GetEndpoints() {
				out = append(out, net.JoinHostPort(ep.GetAddress(), strconv.Itoa(int(ep.GetPort()))))
			}
		}
		return out
	}
	waitFor(t, 10*time.Second, "the first configuration", func() error {
		if got := endpoints(); len(got) != 1 || got[0] != bs[0].addr.String() {
			return fmt.Errorf("endpoints %v", got)
		}
		return nil
	})

	// An endpoint change reaches the client quickly.
	start := time.Now()
	e.apply(t, endpointSlice("books", bs[0], bs[1]))
	waitFor(t, time.Second, "the second endpoint", func() error {
		if got := endpoints(); len(got) != 2 {
			return fmt.Errorf("endpoints %v", got)
		}
		return nil
	})
	t.Logf("EndpointSlice change seen by the client after %s", time.Since(start).Round(time.Millisecond))

	// Lookup by the Service's cluster IP finds the same destination.
	svc := &corev1.Service{}
	if err := e.cp.Client.Get(ctx, types.NamespacedName{Namespace: shop, Name: "books"}, svc); err != nil {
		t.Fatal(err)
	}
	byAddr := discovery.Target{Addr: netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)}
	if cfg := c.Lookup(ctx, byAddr); cfg == nil || cfg.GetService().GetName() != "books" {
		t.Errorf("lookup by cluster IP %s: got %v", byAddr.Addr, cfg)
	}
	// An unknown destination is nil, and does not wait again.
	if cfg := c.Lookup(ctx, discovery.Target{Authority: "nothing.shop.svc.cluster.local:80"}); cfg != nil {
		t.Errorf("unknown destination: got %v", cfg)
	}

	// The destination service restarts: the client keeps its configuration, then
	// follows the cluster again.
	if err := e.cp.StopDestination(); err != nil {
		t.Fatal(err)
	}
	if got := endpoints(); len(got) != 2 {
		t.Errorf("with the destination service down, want the last 2 endpoints, got %v", got)
	}
	e.apply(t, endpointSlice("books", bs[1]))
	if err := e.cp.StartDestination(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 15*time.Second, "the configuration after the restart", func() error {
		if got := endpoints(); len(got) != 1 || got[0] != bs[1].addr.String() {
			return fmt.Errorf("endpoints %v", got)
		}
		return nil
	})
	t.Logf("fresh configuration %s after the destination service restarted; client stats %+v",
		time.Since(start).Round(time.Millisecond), c.Stats())

	// Deleting the Service makes the destination unknown.
	e.delete(t, service("books", 0))
	waitFor(t, time.Second, "the deleted Service to be unknown", func() error {
		if got := c.Lookup(ctx, target); got != nil {
			return fmt.Errorf("still %v", got.GetService())
		}
		return nil
	})
}
