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

// Package certmanager runs the real cert-manager controllers, and its CA injector, in a
// Weft process: cmd/weft-cert-manager in a cluster, and tests and the local mesh
// against a test API server (through internal/testenv/certmanager).
//
// cert-manager's controller and cainjector binaries are not Go modules we can fetch, but
// their controllers live in the root module: the certificate controllers register
// themselves with controllerpkg.Register when their package is imported, and the
// injectors are set up on a controller-runtime manager by cainjector.RegisterAllInjectors.
// This package imports the controllers Weft relies on, builds them from
// controllerpkg.Known() with a ContextFactory, starts the shared informers and runs
// them. Nothing here fakes cert-manager's behaviour.
package certmanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// The controllers register themselves in init().
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer implementations the issuers/clusterissuers controllers set up.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// Controllers are the cert-manager controllers Start runs: the Certificate pipeline,
// the CertificateRequest approver, the selfSigned and CA signers, and the issuer status
// controllers. ACME, Vault, Venafi and the ingress/gateway shims are left out.
var Controllers = []string{
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
	"certificaterequests-approver",
	"certificaterequests-issuer-selfsigned",
	"certificaterequests-issuer-ca",
	"issuers",
	"clusterissuers",
}

// Config says how to run the controllers.
type Config struct {
	// RESTConfig reaches the API server; it needs rights on cert-manager's kinds,
	// Secrets, Events and Leases (an envtest admin config has them). Nil: Kubeconfig,
	// or the in-cluster configuration when that is empty too.
	RESTConfig *rest.Config
	// Kubeconfig is the path of a kubeconfig file, used when RESTConfig is nil.
	Kubeconfig string
	// ClusterResourceNamespace is where ClusterIssuers keep their Secrets. Default:
	// cert-manager.
	ClusterResourceNamespace string
	// Workers per controller. Default: 2.
	Workers int
	// Log receives the controllers' logs. Default: discard.
	Log logr.Logger
}

// Start builds the controllers and runs them until ctx is done. It returns once the
// informers have synced, so objects created afterwards are acted on. The goroutines it
// starts end when ctx ends; errors they meet after Start returns are logged.
func Start(ctx context.Context, cfg Config) error {
	if cfg.ClusterResourceNamespace == "" {
		cfg.ClusterResourceNamespace = "cert-manager"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	log := cfg.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	ctx = logf.NewContext(ctx, log)

	// cert-manager builds its REST config from a kubeconfig path (or in-cluster), so a
	// caller's REST config is written to a private kubeconfig file first.
	kubeconfig := cfg.Kubeconfig
	if cfg.RESTConfig != nil {
		path, err := writeKubeconfig(cfg.RESTConfig)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(path))
		kubeconfig = path
	}

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   200,
		KubernetesAPIBurst: 400,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: cfg.ClusterResourceNamespace,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			// The defaults of cert-manager's controller binary.
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return fmt.Errorf("building the cert-manager context factory: %w", err)
	}

	known := controllerpkg.Known()
	type named struct {
		name string
		ctrl controllerpkg.Interface
	}
	var ctrls []named
	for _, name := range Controllers {
		construct, ok := known[name]
		if !ok {
			registered := make([]string, 0, len(known))
			for n := range known {
				registered = append(registered, n)
			}
			sort.Strings(registered)
			return fmt.Errorf("cert-manager controller %q is not registered (registered: %v)", name, registered)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing cert-manager controller %q: %w", name, err)
		}
		ctrls = append(ctrls, named{name, c})
	}

	// Every Context the factory builds shares the same informer factories; the
	// controllers asked for their informers while being constructed, so starting the
	// factories now starts exactly those.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the cert-manager context: %w", err)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	shared.GWShared.Start(ctx.Done())

	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for informer, ok := range shared.KubeSharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			return fmt.Errorf("cert-manager informer %v did not sync", informer)
		}
	}
	for informer, ok := range shared.SharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			return fmt.Errorf("cert-manager informer %v did not sync", informer)
		}
	}

	var wg sync.WaitGroup
	for _, c := range ctrls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ctrl.Run(cfg.Workers, ctx); err != nil {
				log.Error(err, "cert-manager controller stopped", "controller", c.name)
			}
		}()
	}
	go func() {
		<-ctx.Done()
		wg.Wait()
	}()
	return nil
}

// writeKubeconfig writes cfg as a kubeconfig file in a new temporary directory.
func writeKubeconfig(cfg *rest.Config) (string, error) {
	dir, err := os.MkdirTemp("", "weft-cert-manager-")
	if err != nil {
		return "", fmt.Errorf("creating a kubeconfig directory: %w", err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		CertificateAuthority:     cfg.CAFile,
		InsecureSkipTLSVerify:    cfg.Insecure,
	}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientCertificate:     cfg.CertFile,
		ClientKeyData:         cfg.KeyData,
		ClientKey:             cfg.KeyFile,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return path, nil
}
