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

package replicacache_test

import (
	"context"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/internal/replicacache"
	"github.com/weftmesh/weft/internal/testenv"
)

// TestCacheRunsWithoutTheLease starts a manager that cannot become leader (another
// holder has the lease) and checks that a ByObject cache added through Add syncs and
// serves reads anyway — and that the same cache added with plain mgr.Add does not,
// which is the behaviour Add exists to avoid.
func TestCacheRunsWithoutTheLease(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run through make test")
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Someone else leads for the whole test.
	now := metav1.NewMicroTime(time.Now())
	if err := c.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "replicacache-test", Namespace: "default"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &now, RenewTime: &now,
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "wanted", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}

	synced := func(add func(manager.Manager, cache.Cache) error) bool {
		mgr, err := manager.New(cfg, manager.Options{
			Scheme:                  testenv.Scheme,
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			LeaderElection:          true,
			LeaderElectionID:        "replicacache-test",
			LeaderElectionNamespace: "default",
		})
		if err != nil {
			t.Fatal(err)
		}
		own, err := cache.New(cfg, cache.Options{
			Scheme: testenv.Scheme,
			ByObject: map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {
				Field: fields.OneTermEqualSelector("metadata.name", "wanted")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := add(mgr, own); err != nil {
			t.Fatal(err)
		}
		mctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = mgr.Start(mctx) }()
		defer func() { stop(); <-done }()
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if !own.WaitForCacheSync(wctx) {
			return false
		}
		var cm corev1.ConfigMap
		if err := own.Get(wctx, client.ObjectKey{Namespace: "default", Name: "wanted"}, &cm); err != nil {
			t.Fatalf("reading through the synced cache: %v", err)
		}
		return true
	}

	if !synced(replicacache.Add) {
		t.Fatal("a cache added with replicacache.Add did not sync on a replica without the lease")
	}
	if synced(func(m manager.Manager, c cache.Cache) error { return m.Add(c) }) {
		t.Fatal("a ByObject cache added with mgr.Add synced without the lease: controller-runtime changed, replicacache may be unnecessary")
	}
}
