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

// Package gitops_test judges Weft's objects the way GitOps tools do: kstatus, Flux's
// healthCheckExprs and Argo CD's Lua health checks (config/gitops), over real objects
// that a real API server holds and Weft's real reconcilers (and cert-manager's) wrote
// the status of: healthy, broken in each way, and mid-change.
package gitops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/internal/testenv/certmanager"
)

const (
	controlPlaneNS = "weft-system"
	appNS          = "shop"
	// missingRefGrace is the grace a missing Service gets before the object is
	// Stalled: long enough to observe the in-progress side, short for the test.
	missingRefGrace = 4 * time.Second
)

// cluster is a real API server with cert-manager's controllers, and Weft's reconcilers
// in a manager the test can stop (to hold an object mid-change) and start again.
type cluster struct {
	t       *testing.T
	ctx     context.Context
	cfg     *rest.Config
	c       client.Client
	stopMgr func()
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(t.Output())))
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{controlPlaneNS, appNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := certmanager.Start(ctx, certmanager.Config{RESTConfig: cfg, ClusterResourceNamespace: controlPlaneNS}); err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}
	cl := &cluster{t: t, ctx: ctx, cfg: cfg, c: c, stopMgr: func() {}}
	t.Cleanup(func() { cl.stopMgr() })
	cl.start()
	return cl
}

// start runs every Weft reconciler, as weft-controller does.
func (cl *cluster) start() {
	t := cl.t
	t.Helper()
	mgr, err := ctrl.NewManager(cl.cfg, ctrl.Options{
		Scheme:  testenv.Scheme,
		Cache:   controllers.CacheOptions(controlPlaneNS),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// The test starts the same controllers more than once.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: controlPlaneNS, MissingRefGrace: missingRefGrace}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(cl.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	cl.stopMgr = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
		cl.stopMgr = func() {}
	}
}

// stop stops Weft's reconcilers: what the API server holds then is what a GitOps tool
// reads between its apply and the controller's next reconcile.
func (cl *cluster) stop() { cl.stopMgr() }

// object names one object to judge.
type object struct {
	gvk schema.GroupVersionKind
	key client.ObjectKey
}

// gatewayGV is the Gateway API routes' group and version.
var gatewayGV = schema.GroupVersion{Group: gatewayv1.GroupVersion.Group, Version: gatewayv1.GroupVersion.Version}

var (
	profile = object{meshv1alpha1.GroupVersion.WithKind("ServiceProfile"), client.ObjectKey{Namespace: appNS, Name: "web.shop.svc.cluster.local"}}
	split   = object{splitv1alpha2.GroupVersion.WithKind("TrafficSplit"), client.ObjectKey{Namespace: appNS, Name: "books"}}
	mesh    = object{meshv1alpha1.GroupVersion.WithKind("Mesh"), client.ObjectKey{Name: meshv1alpha1.MeshName}}
	hroute  = object{gatewayGV.WithKind("HTTPRoute"), client.ObjectKey{Namespace: appNS, Name: "web"}}
	groute  = object{gatewayGV.WithKind("GRPCRoute"), client.ObjectKey{Namespace: appNS, Name: "rpc"}}
	server  = object{policyv1alpha1.GroupVersion.WithKind("Server"), client.ObjectKey{Namespace: appNS, Name: "web-http"}}
)

func (cl *cluster) get(o object) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(o.gvk)
	return u, cl.c.Get(cl.ctx, o.key, u)
}

// edit applies a change to an object's spec as a GitOps tool would: an update of the
// stored object.
func (cl *cluster) edit(obj client.Object, change func()) error {
	if err := cl.c.Get(cl.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	change()
	return cl.c.Update(cl.ctx, obj)
}

func service(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
}

// Verdicts of the three judges.
var (
	healthy        = verdicts{KStatus: "Current", Flux: "Current", ArgoCD: "Healthy"}
	progress       = verdicts{KStatus: "InProgress", Flux: "InProgress", ArgoCD: "Progressing"}
	broken         = verdicts{KStatus: "Failed", Flux: "Failed", ArgoCD: "Degraded"}
	noStatus       = verdicts{KStatus: "Current", Flux: "Unknown", ArgoCD: "Progressing"}
	brokenRoute    = verdicts{KStatus: "Current", Flux: "Failed", ArgoCD: "Degraded"}
	routeMidChange = verdicts{KStatus: "Current", Flux: "InProgress", ArgoCD: "Progressing"}
)

// TestGitOpsHealth walks Weft's kinds and the Gateway API routes through healthy,
// broken and mid-change states on a real API server with Weft's and cert-manager's
// real controllers, and asserts what kstatus, Flux (with config/gitops/flux) and Argo
// CD (with config/gitops/argocd) each say. Rows where kstatus says Current of a broken
// or unobserved object are kstatus's known blind spots (no status yet; routes' status
// is per parent): the shipped expressions and scripts are what closes them.
func TestGitOpsHealth(t *testing.T) {
	j := loadJudges(t)
	for _, gk := range []schema.GroupKind{
		{Group: "mesh.weft.dev", Kind: "Mesh"}, {Group: "mesh.weft.dev", Kind: "ServiceProfile"},
		{Group: "split.smi-spec.io", Kind: "TrafficSplit"},
		{Group: "policy.weft.dev", Kind: "Server"}, {Group: "policy.weft.dev", Kind: "AuthorizationPolicy"},
		{Group: "policy.weft.dev", Kind: "MeshTLSAuthentication"}, {Group: "policy.weft.dev", Kind: "NetworkAuthentication"},
		{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}, {Group: "gateway.networking.k8s.io", Kind: "GRPCRoute"},
	} {
		if j.flux[gk] == nil {
			t.Errorf("config/gitops/flux has no healthCheckExprs for %s", gk)
		}
		if j.argo[gk] == "" {
			t.Errorf("config/gitops/argocd has no health script for %s", gk)
		}
	}
	cl := startCluster(t)
	c, ctx := cl.c, cl.ctx

	sp := &meshv1alpha1.ServiceProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: profile.key.Name},
		Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{
			{Name: "books", Condition: meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*"}},
		}},
	}
	ts := &splitv1alpha2.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: split.key.Name},
		Spec: splitv1alpha2.TrafficSplitSpec{
			Service:  "books",
			Backends: []splitv1alpha2.TrafficSplitBackend{{Service: "books-v1", Weight: 90}, {Service: "books-v2", Weight: 10}},
			Matches:  []splitv1alpha2.TrafficSplitMatch{{Kind: "HTTPRouteGroup", Name: "canary-users"}},
		},
	}
	port := gatewayv1.PortNumber(80)
	backend := func(name string) gatewayv1.HTTPBackendRef {
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: &port}}}
	}
	serviceParent := func(name string) gatewayv1.ParentReference {
		return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
	}
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: hroute.key.Name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParent("web")}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{backend("web")}}},
		},
	}
	gr := &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: groute.key.Name},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{serviceParent("web")}},
			Rules: []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: &port}}}}}},
		},
	}

	steps := []struct {
		name string
		do   func() error
		obj  object
		want verdicts
		// says, when set, is in kstatus's and Argo CD's messages (Flux's expressions
		// give none): which cause the verdict has, where two would give the same one.
		says    string
		timeout time.Duration
	}{
		{name: "ServiceProfile applied, controller not yet reconciled", obj: profile, want: noStatus, do: func() error {
			cl.stop()
			return c.Create(ctx, sp)
		}},
		{name: "ServiceProfile whose Service is missing, within the grace", obj: profile, want: progress, says: "Waiting up to", timeout: missingRefGrace / 2, do: func() error {
			cl.start()
			return nil
		}},
		{name: "ServiceProfile whose Service stays missing", obj: profile, want: broken, timeout: missingRefGrace + 10*time.Second},
		{name: "ServiceProfile once the Service exists", obj: profile, want: healthy, do: func() error {
			return c.Create(ctx, service("web"))
		}},
		{name: "ServiceProfile changed, not yet observed", obj: profile, want: progress, do: func() error {
			cl.stop()
			return cl.edit(sp, func() {
				sp.Spec.Routes = append(sp.Spec.Routes, meshv1alpha1.RouteSpec{Name: "orders", Condition: meshv1alpha1.RequestMatch{Method: "POST"}})
			})
		}},
		{name: "ServiceProfile with a regular expression that does not compile", obj: profile, want: broken, do: func() error {
			cl.start()
			return cl.edit(sp, func() { sp.Spec.Routes[0].Condition.PathRegex = "/books/(unclosed" })
		}},
		{name: "ServiceProfile fixed", obj: profile, want: healthy, do: func() error {
			return cl.edit(sp, func() { sp.Spec.Routes[0].Condition.PathRegex = "/books/[^/]*" })
		}},

		{name: "TrafficSplit with an unsupported match", obj: split, want: broken, do: func() error {
			for _, name := range []string{"books", "books-v1", "books-v2"} {
				if err := c.Create(ctx, service(name)); err != nil {
					return err
				}
			}
			return c.Create(ctx, ts)
		}},
		{name: "TrafficSplit fixed", obj: split, want: healthy, do: func() error {
			return cl.edit(ts, func() { ts.Spec.Matches = nil })
		}},
		{name: "TrafficSplit whose backend Service was deleted, within the grace", obj: split, want: progress, says: "Waiting up to", timeout: missingRefGrace / 2, do: func() error {
			return c.Delete(ctx, service("books-v2"))
		}},
		{name: "TrafficSplit whose backend Service stays deleted", obj: split, want: broken, timeout: missingRefGrace + 10*time.Second},

		{name: "HTTPRoute applied, controller not yet reconciled", obj: hroute, want: noStatus, do: func() error {
			cl.stop()
			return c.Create(ctx, hr)
		}},
		{name: "HTTPRoute accepted, backends resolved", obj: hroute, want: healthy, do: func() error {
			cl.start()
			return nil
		}},
		{name: "HTTPRoute changed, not yet observed", obj: hroute, want: routeMidChange, do: func() error {
			cl.stop()
			return cl.edit(hr, func() { hr.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{backend("gone")} })
		}},
		{name: "HTTPRoute whose backend Service does not exist", obj: hroute, want: brokenRoute, do: func() error {
			cl.start()
			return nil
		}},
		{name: "HTTPRoute with a rule using an unsupported filter (rule dropped)", obj: hroute, want: brokenRoute, do: func() error {
			return cl.edit(hr, func() {
				hr.Spec.Rules = []gatewayv1.HTTPRouteRule{
					{BackendRefs: []gatewayv1.HTTPBackendRef{backend("web")}},
					{
						Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/shaped")}}},
						Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterExtensionRef, ExtensionRef: &gatewayv1.LocalObjectReference{
							Group: "example.com", Kind: "Shaper", Name: "s"}}},
						BackendRefs: []gatewayv1.HTTPBackendRef{backend("web")},
					},
				}
			})
		}},
		{name: "HTTPRoute fixed", obj: hroute, want: healthy, do: func() error {
			return cl.edit(hr, func() { hr.Spec.Rules = hr.Spec.Rules[:1] })
		}},
		{name: "HTTPRoute attached to a Service that does not exist", obj: hroute, want: brokenRoute, do: func() error {
			return cl.edit(hr, func() { hr.Spec.ParentRefs = []gatewayv1.ParentReference{serviceParent("nosuch")} })
		}},

		{name: "GRPCRoute accepted, backends resolved", obj: groute, want: healthy, do: func() error {
			return c.Create(ctx, gr)
		}},
		{name: "GRPCRoute whose backend Service does not exist", obj: groute, want: brokenRoute, do: func() error {
			return cl.edit(gr, func() { gr.Spec.Rules[0].BackendRefs[0].Name = "gone" })
		}},

		{name: "Mesh issued and Ready", obj: mesh, want: healthy, timeout: 60 * time.Second, do: func() error {
			return c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": meshv1alpha1.GroupVersion.String(), "kind": "Mesh",
				"metadata": map[string]any{"name": meshv1alpha1.MeshName},
				"spec":     map[string]any{"trustDomain": "cluster.local"},
			}})
		}},
		{name: "Mesh switched to an external issuer that does not exist, within the grace", obj: mesh, want: progress, says: "Waiting up to", timeout: missingRefGrace / 2, do: func() error {
			u, err := cl.get(mesh)
			if err != nil {
				return err
			}
			return c.Patch(ctx, u, client.RawPatch("application/merge-patch+json",
				[]byte(`{"spec":{"identity":{"externalIssuerRef":{"name":"corp-ca","kind":"Issuer"}}}}`)))
		}},
		{name: "Mesh whose external issuer stays missing", obj: mesh, want: broken, timeout: missingRefGrace + 10*time.Second},
		{name: "Mesh once the issuer exists", obj: mesh, want: healthy, timeout: 60 * time.Second, do: func() error {
			return c.Create(ctx, &cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-ca", Namespace: controlPlaneNS},
				Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}})
		}},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.do != nil {
				if err := st.do(); err != nil {
					t.Fatal(err)
				}
			}
			timeout := st.timeout
			if timeout == 0 {
				timeout = 15 * time.Second
			}
			var got verdicts
			var why string
			deadline := time.Now().Add(timeout)
			for {
				u, err := cl.get(st.obj)
				if err != nil {
					t.Fatal(err)
				}
				got, why = j.judge(t, u)
				if got == st.want && strings.Count(why, st.says) >= 2 {
					t.Logf("%s (%s)", got, why)
					dump(t, st.name, u, got)
					return
				}
				if time.Now().After(deadline) {
					conds, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
					t.Fatalf("after %v: %s, want %s saying %q\n%s\nstatus: %v", timeout, got, st.want, st.says, why, conds)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		if !ok {
			// The steps build on each other.
			break
		}
	}
}

// TestGitOpsHealthPolicyKinds judges policy.weft.dev objects. Their reconcilers are
// built on StatusReconciler like ServiceProfile's but are not in this tree yet, so the
// test writes, through the API server's status subresource, the status StatusReconciler
// writes (the same conditions, reasons and generations), and checks the shipped
// expressions and scripts read it as they read ServiceProfile's.
func TestGitOpsHealthPolicyKinds(t *testing.T) {
	j := loadJudges(t)
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}); err != nil {
		t.Fatal(err)
	}
	srv := &policyv1alpha1.Server{}
	srv.Namespace, srv.Name = server.key.Namespace, server.key.Name
	srv.Spec.Port = intstr.FromString("http")
	srv.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	if err := c.Create(ctx, srv); err != nil {
		t.Fatal(err)
	}
	judge := func() verdicts {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(server.gvk)
		if err := c.Get(ctx, server.key, u); err != nil {
			t.Fatal(err)
		}
		v, why := j.judge(t, u)
		t.Logf("%s (%s)", v, why)
		return v
	}
	setStatus := func(conds ...metav1.Condition) {
		t.Helper()
		if err := c.Get(ctx, server.key, srv); err != nil {
			t.Fatal(err)
		}
		srv.Status.ObservedGeneration = srv.Generation
		srv.Status.Conditions = nil
		for _, cond := range conds {
			cond.ObservedGeneration = srv.Generation
			meta.SetStatusCondition(&srv.Status.Conditions, cond)
		}
		if err := c.Status().Update(ctx, srv); err != nil {
			t.Fatal(err)
		}
	}
	if got := judge(); got != noStatus {
		t.Errorf("Server with no status: %s, want %s", got, noStatus)
	}
	setStatus(
		metav1.Condition{Type: meshv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonAccepted, Message: "The Server is valid"},
		metav1.Condition{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonReady, Message: "Ready"})
	if got := judge(); got != healthy {
		t.Errorf("Ready Server: %s, want %s", got, healthy)
	}
	setStatus(
		metav1.Condition{Type: meshv1alpha1.ConditionAccepted, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonInvalid, Message: "Fix the spec: spec.port: invalid"},
		metav1.Condition{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonInvalid, Message: "Fix the spec: spec.port: invalid"},
		metav1.Condition{Type: controllers.ConditionStalled, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonInvalid, Message: "Fix the spec: spec.port: invalid"})
	if got := judge(); got != broken {
		t.Errorf("Stalled Server: %s, want %s", got, broken)
	}
	setStatus(
		metav1.Condition{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: meshv1alpha1.ReasonRefNotFound, Message: "waiting"},
		metav1.Condition{Type: controllers.ConditionReconciling, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonRefNotFound, Message: "Waiting up to 30s"})
	if got := judge(); got != progress {
		t.Errorf("Reconciling Server: %s, want %s", got, progress)
	}
	// A spec change the controller has not seen: in progress whatever the old status said.
	setStatus(metav1.Condition{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: meshv1alpha1.ReasonReady, Message: "Ready"})
	if err := c.Get(ctx, server.key, srv); err != nil {
		t.Fatal(err)
	}
	srv.Spec.Port = intstr.FromInt32(8080)
	if err := c.Update(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if got := judge(); got != progress {
		t.Errorf("Server changed, not yet observed: %s, want %s", got, progress)
	}
}

// dump writes the judged object and the verdicts into $WEFT_GITOPS_DUMP, when set, so
// the objects can be judged again by other implementations of the same tools (Flux's
// own evaluator was run over them this way; docs/gitops.md).
func dump(t *testing.T, name string, u *unstructured.Unstructured, v verdicts) {
	dir := os.Getenv("WEFT_GITOPS_DUMP")
	if dir == "" {
		return
	}
	data, err := json.Marshal(map[string]any{"name": name, "object": u.Object, "verdicts": v})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, fmt.Sprintf("%03d.json", dumped.Add(1)))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

var dumped atomic.Int32
