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

// Command weft-cert-manager runs the real cert-manager controllers Weft relies on (the
// Certificate pipeline, the CertificateRequest approver, the selfSigned and CA issuers)
// and cert-manager's CA injector, as one binary built from cert-manager's Go module:
// its own controller and cainjector binaries cannot be fetched here. It is deployed by
// config/cert-manager. Both parts run on the elected leader only.
package main

import (
	"context"
	"flag"
	"os"

	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/internal/certmanager"
)

func main() {
	var (
		metricsAddr, probeAddr, namespace, clusterResourceNamespace string
		leaderElect, caInjector                                     bool
		workers                                                     int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":9402", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":9403", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one replica runs the controllers.")
	flag.StringVar(&namespace, "leader-election-namespace", envOr("POD_NAMESPACE", "cert-manager"), "Namespace of the leader election Lease.")
	flag.StringVar(&clusterResourceNamespace, "cluster-resource-namespace", envOr("POD_NAMESPACE", "cert-manager"), "Namespace where ClusterIssuers keep their Secrets (cert-manager's flag of the same name).")
	flag.BoolVar(&caInjector, "enable-cainjector", true, "Run the CA injector: copy CAs into webhook configurations, CRDs and APIServices annotated cert-manager.io/inject-ca-from.")
	flag.IntVar(&workers, "concurrent-workers", 2, "Workers per cert-manager controller.")
	zapOpts := zap.Options{TimeEncoder: zapcore.ISO8601TimeEncoder}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	logger := zap.New(zap.UseFlagOptions(&zapOpts))
	ctrl.SetLogger(logger)
	// cert-manager's packages also log through klog.
	klog.SetLogger(logger)
	log := ctrl.Log.WithName("setup")

	restConfig := ctrl.GetConfigOrDie()
	// The CA injector's server-side applies use the part before the slash as their field
	// manager, so that ownership of caBundle is visible as "weft-cert-manager".
	restConfig.UserAgent = "weft-cert-manager/" + userAgentVersion
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  certmanager.InjectorScheme,
		Client:                  certmanager.InjectorClientOptions(),
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "weft-cert-manager",
		LeaderElectionNamespace: namespace,
		// Hand the lease over at once on a clean shutdown instead of making the next
		// leader wait for it to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "Unable to create the manager")
		os.Exit(1)
	}

	cmConfig := certmanager.Config{
		ClusterResourceNamespace: clusterResourceNamespace,
		Workers:                  workers,
		Log:                      ctrl.Log.WithName("cert-manager"),
	}
	// In a pod cert-manager reads the in-cluster configuration itself; elsewhere it gets
	// the manager's configuration (from --kubeconfig or $KUBECONFIG).
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		cmConfig.RESTConfig = restConfig
	}
	// A Runnable without NeedLeaderElection runs only on the leader.
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := certmanager.Start(ctx, cmConfig); err != nil {
			return err
		}
		log.Info("cert-manager controllers running", "controllers", certmanager.Controllers)
		<-ctx.Done()
		return nil
	}))
	if err != nil {
		log.Error(err, "Unable to add the cert-manager controllers")
		os.Exit(1)
	}

	ctx := ctrl.SetupSignalHandler()
	if caInjector {
		if err := certmanager.AddCAInjector(ctx, mgr); err != nil {
			log.Error(err, "Unable to set up the CA injector")
			os.Exit(1)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the readiness check")
		os.Exit(1)
	}

	log.Info("Starting weft-cert-manager", "leaderElection", leaderElect, "caInjector", caInjector,
		"clusterResourceNamespace", clusterResourceNamespace)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}

// userAgentVersion names the cert-manager release whose controllers are linked in.
const userAgentVersion = "v1.21.2"

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
