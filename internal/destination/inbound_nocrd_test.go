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
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/testenv"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// TestWithoutPolicyCRDs: in a cluster without the policy.weft.dev CRDs (config/crd does
// not install them yet) the destination service starts, syncs and serves, and the
// inbound policy API answers Unavailable rather than a policy compiled without them.
func TestWithoutPolicyCRDs(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bases := filepath.Join(root, "config", "crd", "bases")
	files, err := os.ReadDir(bases)
	if err != nil {
		t.Fatal(err)
	}
	paths := env.CRDDirectoryPaths[1:]
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), "policy.weft.dev_") {
			paths = append(paths, filepath.Join(bases, f.Name()))
		}
	}
	env.CRDDirectoryPaths = paths
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
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controlNS}}); err != nil {
		t.Fatal(err)
	}
	pki, err := desttest.NewPKI("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.Install(ctx, c, controlNS); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     testenv.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Logger:     zap.New(zap.WriteTo(io.Discard)),
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The suite's hooks must keep pointing at the suite's servers.
	savedHook := testHookServer
	testHookServer = nil
	addrc, synced := make(chan net.Addr, 1), make(chan struct{})
	err = AddToManager(mgr, Options{Namespace: controlNS, Addr: "127.0.0.1:0",
		OnListen: func(a net.Addr) { addrc <- a }, OnSynced: func() { close(synced) }})
	testHookServer = savedHook
	if err != nil {
		t.Fatalf("the destination service did not start without the policy CRDs: %v", err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	var addr string
	select {
	case a := <-addrc:
		addr = a.String()
	case err := <-mgrDone:
		t.Fatalf("the manager stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no listener within a minute")
	}
	select {
	case <-synced:
	case <-time.After(time.Minute):
		t.Fatal("the destination service did not sync without the policy CRDs")
	}

	cert, err := pki.WorkloadCert("shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := desttest.Dial(addr, pki.ClientTLS(serverName, &cert))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
	defer callCancel()
	ws, err := apigrpc.NewInboundPoliciesClient(cc).Watch(callCtx, &api.WatchInbound{Namespace: "shop", Pod: "web-0"})
	if err == nil {
		_, err = ws.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "CRDs") {
		t.Fatalf("Watch without the policy CRDs: %v, want Unavailable naming the CRDs", err)
	}
	// Destinations are served all the same.
	gs, err := apigrpc.NewDestinationClient(cc).Get(callCtx, authority("web", "shop", 80))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := gs.Recv(); err != nil || m.GetNotFound() == nil {
		t.Fatalf("Get without the policy CRDs: %v, %v; want not_found", m, err)
	}
}
