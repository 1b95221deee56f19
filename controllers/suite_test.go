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
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/testenv"
)

// suiteMissingRefGrace is the grace a missing Service gets before the object is
// Stalled, short so that tests see both sides of it.
const suiteMissingRefGrace = 3 * time.Second

// startControllers starts a real API server and a manager running every reconciler, and
// returns a client for the test. Everything stops when the test ends.
func startControllers(t *testing.T) client.Client {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(t.Output())))
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the test API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	admin, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// With the privileges and the cache of an installed weft-controller.
	mgr, err := ctrl.NewManager(installRBAC(t, context.Background(), cfg, admin), ctrl.Options{
		Scheme:  testenv.Scheme,
		Cache:   controllers.CacheOptions("weft-system"),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Every suite of this package starts its own manager with the same controllers;
		// the process-wide name check would refuse the second.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: "weft-system", MissingRefGrace: suiteMissingRefGrace}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
	})
	return admin
}

// eventually polls check until it returns nil or the timeout passes, then fails with the
// last error.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// conditionIs reports whether the condition has the status and reason, and was set for
// the given generation.
func conditionIs(conds []metav1.Condition, condType string, status metav1.ConditionStatus, reason string, generation int64) bool {
	c := meta.FindStatusCondition(conds, condType)
	return c != nil && c.Status == status && c.Reason == reason && c.ObservedGeneration == generation
}

// hasEvent reports whether an Event with the reason regards the named object.
func hasEvent(ctx context.Context, c client.Client, namespace, name, reason string) (bool, error) {
	var events eventsv1.EventList
	if err := c.List(ctx, &events, client.InNamespace(namespace)); err != nil {
		return false, err
	}
	for _, e := range events.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			return true, nil
		}
	}
	return false, nil
}
