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
	"flag"
	"fmt"
	"io"
	"os/exec"
	"runtime"

	"github.com/weftmesh/weft/internal/dashboard"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// runDashboard port-forwards to the weft-dashboard pod and opens it in the browser. The
// dashboard listens on its pod's loopback only, so this port-forward, which the API
// server authorizes with the user's own RBAC, is the only way in.
func runDashboard(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var kf kubeFlags
	kf.register(fs)
	cpNS := fs.String("control-plane-namespace", meshdefaults.ControlPlaneNamespace, "the control plane's namespace, where weft-dashboard runs")
	port := fs.Int("port", 50750, "the local port (on 127.0.0.1); 0 picks a free one")
	showURL := fs.Bool("show-url", false, "print the URL and do not open a browser")
	if code, ok := parseNoArgs(fs, args, stderr); !ok {
		return code
	}
	if *port < 0 || *port > 65535 {
		fmt.Fprintln(stderr, "weft dashboard: --port must be 0-65535")
		return 2
	}
	kc, err := kf.clients()
	if err != nil {
		fmt.Fprintf(stderr, "weft dashboard: %v\n", err)
		return 1
	}
	ctx, cancel := signalContext()
	defer cancel()
	u, done, err := dashboard.Forward(ctx, kc.config, kc.kube, *cpNS, *port)
	if err != nil {
		fmt.Fprintf(stderr, "weft dashboard: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Weft dashboard at %s (Ctrl-C to stop)\n", u)
	if !*showURL {
		if err := openBrowser(ctx, u); err != nil {
			fmt.Fprintf(stderr, "weft dashboard: no browser opened (%v); open the URL above\n", err)
		}
	}
	select {
	case <-ctx.Done():
		return 0
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "weft dashboard: the port-forward ended: %v\n", err)
			return 1
		}
		return 0
	}
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
