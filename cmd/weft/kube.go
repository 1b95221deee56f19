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
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/scheme"
)

// kubeFlags are the cluster-access flags of the subcommands that talk to a cluster,
// with kubectl's names and meaning (KUBECONFIG, the current context and its namespace).
type kubeFlags struct {
	kubeconfig, context, namespace string
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context (default: the current context)")
	fs.StringVar(&k.namespace, "n", "", "namespace (default: the context's namespace)")
	fs.StringVar(&k.namespace, "namespace", "", "same as -n")
}

// kubeClients are the clients the cluster subcommands use.
type kubeClients struct {
	config    *rest.Config
	kube      kubernetes.Interface
	client    client.Client
	namespace string // -n, else the context's namespace, else "default"
	explicit  bool   // -n was given
}

func (k *kubeFlags) clients() (*kubeClients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "weft-cli"
	// Many pods are scraped concurrently; client-go's default of 5 QPS would pace them.
	cfg.QPS, cfg.Burst = 50, 100
	kc := &kubeClients{config: cfg, namespace: k.namespace, explicit: k.namespace != ""}
	if kc.namespace == "" {
		if kc.namespace, _, err = cc.Namespace(); err != nil || kc.namespace == "" {
			kc.namespace = "default"
		}
	}
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
