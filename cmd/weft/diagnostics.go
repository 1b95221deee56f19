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
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/inject"
)

func newDiagnosticsCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diagnostics",
		Short: "raw data from the mesh's components, for debugging",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(c.errOut)
			_ = cmd.Help()
			return silentExit(2)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "proxy-metrics (deploy|sts|ds|pod)/NAME | POD",
		Short: "the raw Prometheus metrics of a workload's proxies",
		Long: "Prints the /metrics of the proxy of each running pod of the workload, read through the\n" +
			"API server's pod proxy as 'weft stat' reads them (needs get on pods/proxy), each under a\n" +
			"header naming the pod.",
		Example:           "  weft diagnostics proxy-metrics deploy/web -n weft-demo",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: c.completeWorkloads,
		RunE: func(_ *cobra.Command, args []string) error {
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return proxyMetrics(ctx, kc, args[0], c.out)
		},
	})
	return cmd
}

// proxyMetrics writes the raw metrics of the target's meshed pods, in pod name order.
// A pod that cannot be read fails the command after the others are written.
func proxyMetrics(ctx context.Context, kc *kubeClients, target string, w io.Writer) error {
	pods, err := targetPods(ctx, kc.client, kc.namespace, target)
	if err != nil {
		return err
	}
	var meshed []*corev1.Pod
	for _, p := range pods {
		if ok, _ := inject.ProxyAdminPort(p); ok && p.Status.Phase == corev1.PodRunning {
			meshed = append(meshed, p)
		}
	}
	if len(meshed) == 0 {
		return fmt.Errorf("no running meshed pods of %s in namespace %s", target, kc.namespace)
	}
	var failed error
	for i, p := range meshed {
		_, port := inject.ProxyAdminPort(p)
		text, err := fetchMetrics(ctx, kc, p.Namespace, p.Name, port)
		if err != nil {
			failed = fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
			continue
		}
		fmt.Fprintf(w, "#\n# POD %s/%s (%d of %d)\n#\n", p.Namespace, p.Name, i+1, len(meshed))
		// Label values carry what clients sent (the authority is a request's Host):
		// control characters are escaped so that they cannot drive the terminal.
		if _, err := io.WriteString(w, escapeControls(text, true)); err != nil {
			return err
		}
	}
	return failed
}
