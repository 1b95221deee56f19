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
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/scheme"
)

// kubeClients are the clients the cluster subcommands use.
type kubeClients struct {
	config    *rest.Config
	kube      kubernetes.Interface
	client    client.Client
	namespace string // -n, else the context's namespace, else "default"
	explicit  bool   // -n was given
}

// clients connects with kubectl's flags (cli-runtime's ConfigFlags): the kubeconfig,
// context, namespace, impersonation and request timeout they name.
func (c *cli) clients() (*kubeClients, error) {
	cfg, err := c.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "weft-cli"
	// Many pods are scraped concurrently; client-go's default of 5 QPS would pace them.
	cfg.QPS, cfg.Burst = 50, 100
	kc := &kubeClients{config: cfg}
	ns, explicit, err := c.config.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	kc.namespace, kc.explicit = ns, explicit
	if kc.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if kc.client, err = client.New(cfg, client.Options{Scheme: scheme.Scheme}); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return kc, nil
}

// signalContext is cancelled by Ctrl-C or SIGTERM, so --watch ends cleanly.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
