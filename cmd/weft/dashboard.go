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
	"errors"
	"fmt"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/dashboard"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// newDashboardCommand port-forwards to the weft-dashboard pod and opens it in the
// browser. The dashboard listens on its pod's loopback only, so this port-forward,
// which the API server authorizes with the user's own RBAC, is the only way in.
func newDashboardCommand(c *cli) *cobra.Command {
	var (
		cpNS    string
		port    int
		showURL bool
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "open the web dashboard through a port-forward",
		Long: "Port-forwards to the weft-dashboard pod (your RBAC decides: pods/portforward in the\n" +
			"control plane's namespace) and opens the dashboard in the browser, or prints its URL.",
		Example: "  weft dashboard\n  weft dashboard --show-url --port 0",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 {
				return usageErrorf("--port must be 0-65535")
			}
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			u, done, err := dashboard.Forward(ctx, kc.config, kc.kube, cpNS, port)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "Weft dashboard at %s (Ctrl-C to stop)\n", u)
			if !showURL {
				if err := openBrowser(ctx, u); err != nil {
					fmt.Fprintf(c.errOut, "weft dashboard: no browser opened (%v); open the URL above\n", err)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("the port-forward ended: %w", err)
				}
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cpNS, "control-plane-namespace", meshdefaults.ControlPlaneNamespace, "the control plane's namespace, where weft-dashboard runs")
	f.IntVar(&port, "port", 50750, "the local port (on 127.0.0.1); 0 picks a free one")
	f.BoolVar(&showURL, "show-url", false, "print the URL and do not open a browser")
	return cmd
}

func openBrowser(ctx context.Context, u string) error {
	var name string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return exec.CommandContext(ctx, "rundll32", "url.dll,FileProtocolHandler", u).Start()
	default:
		name = "xdg-open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	return exec.CommandContext(ctx, path, u).Start()
}
