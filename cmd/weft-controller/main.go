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

// Command weft-controller is Weft's control plane: the reconcilers (leader only), and on
// every replica the identity service, the webhooks, the destination service and the tap
// API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/weftmesh/weft/controllers"
	"github.com/weftmesh/weft/internal/ctrlmetrics"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/meshdefaults"
	weftscheme "github.com/weftmesh/weft/internal/scheme"
	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/webhooks"
)

func main() {
	var (
		metricsAddr, metricsCertDir string
		probeAddr, namespace        string
		leaderElect, enableWebhooks bool
		enableTapAPI                bool
		tapAPICertDir               string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":9090", "Address the Prometheus metrics endpoint (HTTPS; callers need a token allowed to get /metrics, see ClusterRole weft-metrics-reader) binds to; 0 disables it.")
	flag.StringVar(&metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint; empty: a self-signed certificate generated at start.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":9091", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one replica reconciles; the services run on every replica.")
	flag.BoolVar(&enableWebhooks, "enable-webhooks", true, "Serve the pod injector and the validators; needs the serving certificate that config/certmanager issues, so `make run` outside the cluster turns it off.")
	flag.BoolVar(&enableTapAPI, "enable-tap-api", true, "Serve the tap API (APIService v1alpha1.tap.weft.dev); needs the serving certificate that config/tap issues, so `make run` outside the cluster turns it off.")
	flag.StringVar(&tapAPICertDir, "tap-api-cert-dir", tap.DefaultCertDir, "Directory with tls.crt and tls.key for the tap API (Secret weft-tap-cert).")
	flag.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", meshdefaults.ControlPlaneNamespace), "The control-plane namespace, where the identity chain and the serving certificates live.")
	zapOpts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if limit, ok := memoryLimit(os.Getenv("GOMEMLIMIT"), os.Getenv(memoryLimitEnv)); ok {
		debug.SetMemoryLimit(limit)
		log.Info("Set the Go memory limit from the container's", "bytes", limit, "containerLimit", os.Getenv(memoryLimitEnv))
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:  weftscheme.Scheme,
		Metrics: ctrlmetrics.ServerOptions(metricsAddr, metricsCertDir),
		// Restricted to what config/rbac lets the controller list and watch.
		Cache:                   controllers.CacheOptions(namespace),
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "weft-controller.mesh.weft.dev",
		LeaderElectionNamespace: namespace,
		// A leader that stops (rollout, eviction) hands over at once instead of
		// leaving the reconcilers idle until its lease expires; its reconcilers
		// have stopped by then.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "Unable to create the manager")
		os.Exit(1)
	}

	noGatewayAPI, err := gatewayAPISupport(mgr, 30*time.Second)
	if err != nil {
		log.Error(err, "Unable to look up the Gateway API kinds")
		os.Exit(1)
	}

	if err := controllers.AddToManager(mgr, controllers.Options{Namespace: namespace, NoGatewayAPI: noGatewayAPI}); err != nil {
		log.Error(err, "Unable to set up the reconcilers")
		os.Exit(1)
	}

	idService, err := identity.Setup(mgr, identity.Options{Namespace: namespace})
	if err != nil {
		log.Error(err, "Unable to set up the identity service")
		os.Exit(1)
	}

	if enableTapAPI {
		// The tap API signs its client certificate with the identity service's
		// issuer: no pod can obtain the tap identity (identity refuses to sign it).
		if err := tap.AddToManager(mgr, tap.Options{Signer: idService, CertDir: tapAPICertDir}); err != nil {
			log.Error(err, "Unable to set up the tap API")
			os.Exit(1)
		}
	}

	if err := destination.AddToManager(mgr, destination.Options{Namespace: namespace, NoGatewayAPI: noGatewayAPI}); err != nil {
		log.Error(err, "Unable to set up the destination service")
		os.Exit(1)
	}

	if enableWebhooks {
		if err := webhooks.AddToManager(mgr, webhooks.Options{Namespace: namespace}); err != nil {
			log.Error(err, "Unable to set up the webhooks")
			os.Exit(1)
		}
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	// /readyz also has the identity and destination services' checks (their
	// AddToManager adds them): a replica gets traffic only once it serves all three.
	if enableWebhooks {
		if err := mgr.AddReadyzCheck("webhooks", mgr.GetWebhookServer().StartedChecker()); err != nil {
			log.Error(err, "Unable to set up the webhook readiness check")
			os.Exit(1)
		}
	}

	log.Info("Starting weft-controller", "namespace", namespace, "leaderElection", leaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}

// memoryLimitEnv holds the container's memory limit in bytes (the downward API's
// resourceFieldRef limits.memory; config/manager sets it).
const memoryLimitEnv = "WEFT_MEMORY_LIMIT"

// memoryLimitShare is the part of the container's memory limit the Go heap, stacks and
// runtime may use before the collector works harder to stay under it: the rest is
// for what Go does not count (the binary, thread stacks, the kernel's buffers of its
// sockets).
const memoryLimitShare = 0.9

// memoryLimit is the Go runtime's soft memory limit for a container limit of
// containerLimit bytes, unless GOMEMLIMIT (gomemlimit) sets one. Without it the heap
// grows to twice what is live before a collection (GOGC=100), and a controller whose
// live memory is over half its limit is OOM-killed in the first burst of
// subscriptions or informer resync; with it the collector runs more often as the
// limit nears. ok is false when there is nothing to set.
func memoryLimit(gomemlimit, containerLimit string) (limit int64, ok bool) {
	if gomemlimit != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(containerLimit, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int64(float64(n) * memoryLimitShare), true
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// gatewayAPISupport says whether the API server lacks the Gateway API routes
// (noGatewayAPI). The Gateway API CRDs are an optional part of the install: without
// them the controller meshes all the same and serves no routes, says so in its log
// (and weft check says so), and restarts once they appear (gatewayAPIWatcher, polling
// every interval), since the informers are fixed at start.
func gatewayAPISupport(mgr ctrl.Manager, every time.Duration) (noGatewayAPI bool, err error) {
	err = gatewayapi.RoutesAvailable(mgr.GetRESTMapper())
	var missing *gatewayapi.RoutesMissingError
	switch {
	case err == nil:
		return false, nil
	case !errors.As(err, &missing):
		return false, err
	}
	mgr.GetLogger().WithName("setup").Info("HTTPRoutes and GRPCRoutes are not supported: " + err.Error())
	if err := mgr.Add(&gatewayAPIWatcher{mapper: mgr.GetRESTMapper(), every: every}); err != nil {
		return false, fmt.Errorf("adding the Gateway API watcher: %w", err)
	}
	return true, nil
}

// gatewayAPIWatcher ends the manager once the API server serves the Gateway API routes,
// so that the controller restarts (once) and watches them: the informers of a running
// manager are fixed. Without it, routes applied after their CRDs would be ignored until
// someone restarted the control plane.
type gatewayAPIWatcher struct {
	mapper gatewayapi.Mapper
	every  time.Duration
}

// NeedLeaderElection is false: every replica serves routes to proxies.
func (w *gatewayAPIWatcher) NeedLeaderElection() bool { return false }

func (w *gatewayAPIWatcher) Start(ctx context.Context) error {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := gatewayapi.RoutesAvailable(w.mapper); err == nil {
			return fmt.Errorf("the Gateway API CRDs were installed: restarting to serve HTTPRoutes and GRPCRoutes")
		}
	}
}
