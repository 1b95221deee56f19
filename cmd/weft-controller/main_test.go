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

package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestStartsWithoutGatewayAPI: on an API server without the Gateway API CRDs the
// controller's reconcilers and destination service start and sync (before, the route
// reconcilers' watches failed the manager and the controller crash-looped); a policy
// targeting an HTTPRoute finds it missing; once the CRDs are installed the manager
// stops with an error saying it restarts to serve routes. And, so the test can fail,
// the same setup told the routes exist does not start.
func TestStartsWithoutGatewayAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	const ns = "weft-system"
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "config", "cert-manager", "crds")}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	pki, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.Install(ctx, c, ns); err != nil {
		t.Fatal(err)
	}
	newManager := func() ctrl.Manager {
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:  testenv.Scheme,
			Metrics: metricsserver.Options{BindAddress: "0"},
			Logger:  zap.New(zap.WriteTo(io.Discard)),
			Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true),
				CacheSyncTimeout: 10 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		return mgr
	}

	t.Run("told the routes exist, the manager fails", func(t *testing.T) {
		mgr := newManager()
		err := controllers.AddToManager(mgr, controllers.Options{Namespace: ns})
		if err == nil {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			err = mgr.Start(ctx)
		}
		if err == nil || !meta.IsNoMatchError(err) && !strings.Contains(err.Error(), "HTTPRoute") {
			t.Fatalf("the manager ran watching kinds the API server does not serve: %v", err)
		}
	})

	mgr := newManager()
	noGatewayAPI, err := gatewayAPISupport(mgr, 200*time.Millisecond)
	if err != nil || !noGatewayAPI {
		t.Fatalf("gatewayAPISupport = %v, %v; want true (no Gateway API CRDs)", noGatewayAPI, err)
	}
	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: ns, NoGatewayAPI: true}); err != nil {
		t.Fatalf("setting up the reconcilers: %v", err)
	}
	synced := make(chan struct{})
	if err := destination.AddToManager(mgr, destination.Options{Namespace: ns, Addr: "127.0.0.1:0",
		OnSynced: func() { close(synced) }, NoGatewayAPI: true}); err != nil {
		t.Fatalf("setting up the destination service: %v", err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	select {
	case <-synced:
	case err := <-mgrDone:
		t.Fatalf("the manager stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the destination service did not sync without the Gateway API CRDs")
	}

	// A policy targeting a route: the route cannot exist, so it authorizes nothing.
	ap := &policyv1alpha1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "to-route"},
		Spec: policyv1alpha1.AuthorizationPolicySpec{
			TargetRef: policyv1alpha1.TargetReference{Group: gatewayapi.Group, Kind: "HTTPRoute", Name: "books"},
			RequiredAuthenticationRefs: []policyv1alpha1.AuthenticationReference{
				{Group: "policy.weft.dev", Kind: "MeshTLSAuthentication", Name: "any"}},
		},
	}
	if err := c.Create(ctx, ap); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ap), ap); err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(ap.Status.Conditions, "ResolvedRefs")
		if cond != nil && cond.Status == metav1.ConditionFalse && strings.Contains(cond.Message, "HTTPRoute") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the AuthorizationPolicy's ResolvedRefs does not name the missing HTTPRoute: %+v", ap.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The CRDs arrive: the manager stops so that the controller restarts with routes.
	crds, err := install.BundledGatewayAPI(gatewayapi.Standard)
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if err := c.Create(ctx, crd); err != nil {
			t.Fatal(err)
		}
	}
	if err := install.WaitEstablished(ctx, c, crds, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-mgrDone:
		if err == nil || !strings.Contains(err.Error(), "restarting to serve HTTPRoutes and GRPCRoutes") {
			t.Fatalf("the manager stopped with %v, want the restart for the Gateway API", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the manager kept running without routes after the Gateway API CRDs were installed")
	}
}

// TestMemoryLimit: the container's limit (the downward API's bytes) becomes a Go
// memory limit of 90% of it; GOMEMLIMIT set by the operator wins, and no usable
// limit sets nothing.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, gomemlimit, container string
		want                        int64
		wantOK                      bool
	}{
		{name: "1Gi", container: "1073741824", want: 966367641, wantOK: true},
		{name: "GOMEMLIMIT set", gomemlimit: "700MiB", container: "1073741824"},
		{name: "unset", container: ""},
		{name: "not a number", container: "1Gi"},
		{name: "zero", container: "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := memoryLimit(tc.gomemlimit, tc.container)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("memoryLimit(%q, %q) = %d, %v; want %d, %v", tc.gomemlimit, tc.container, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
