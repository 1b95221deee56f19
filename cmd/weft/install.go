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
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/gatewayapi"
	"github.com/weftmesh/weft/internal/install"
)

type installOptions struct {
	gatewayAPI     gatewayapi.Mode
	dryRun         bool
	gatewayAPIOnly bool
	force          bool
	timeout        time.Duration
}

func newInstallCommand(c *cli) *cobra.Command {
	var o installOptions
	var gw string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "install Weft (and the Gateway API CRDs when absent) with server-side apply",
		Long: fmt.Sprintf("Installs Weft (the objects of config/default, built into this binary) with server-side apply,\n"+
			"field manager %q: the CRDs first, then, once they are Established, the rest. Running it again\n"+
			"changes nothing; running a newer weft upgrades. The Gateway API CRDs are installed only when\n"+
			"absent or older (--gateway-api). Needs cert-manager: run 'weft check --pre' first.", install.FieldManager),
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			mode, err := gatewayapi.ParseMode(gw)
			if err != nil {
				return exitError{code: 2, err: err}
			}
			o.gatewayAPI = mode
			if o.gatewayAPIOnly && mode == gatewayapi.None {
				return usageErrorf("--gateway-api-only with --gateway-api=none installs nothing")
			}
			ctx, cancel := signalContext()
			defer cancel()
			if o.dryRun && mode == gatewayapi.None {
				// Nothing to read from a cluster: a render for GitOps or review, offline.
				p, err := install.NewPlan(nil, gatewayapi.None)
				if err != nil {
					return err
				}
				return install.WriteYAML(c.out, p.All())
			}
			kc, err := c.clients()
			if err != nil {
				return err
			}
			return installWeft(ctx, kc, o, c.out, c.errOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&gw, "gateway-api", string(gatewayapi.Auto), "the Gateway API CRDs: auto (install the standard channel when absent, upgrade an older compatible install in its channel, else leave them), standard, experimental (also install or upgrade over an incompatible one, never a downgrade), none (never touch them)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the YAML that would be applied and apply nothing")
	f.BoolVar(&o.gatewayAPIOnly, "gateway-api-only", false, "apply only the Gateway API CRDs (as --gateway-api decides), not Weft")
	f.BoolVar(&o.force, "force", false, "install even over a Weft installed by another tool (Helm, kubectl), taking over its fields")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the CRDs to be Established")
	_ = cmd.RegisterFlagCompletionFunc("gateway-api", cobra.FixedCompletions([]string{"auto", "standard", "experimental", "none"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// installWeft plans and applies (or, with dryRun, prints) the install. Messages go to
// stderr under --dry-run, so stdout is only YAML.
func installWeft(ctx context.Context, kc *kubeClients, o installOptions, stdout, stderr io.Writer) error {
	log := stdout
	if o.dryRun {
		log = stderr
	}
	var in *gatewayapi.Installed
	if o.gatewayAPI != gatewayapi.None {
		var err error
		if in, err = gatewayapi.Inspect(ctx, kc.client); err != nil {
			return fmt.Errorf("reading the Gateway API CRDs to decide about them (--gateway-api=none skips this): %w", err)
		}
	}
	p, err := install.NewPlan(in, o.gatewayAPI)
	if err != nil {
		return err
	}
	fmt.Fprintln(log, p.GatewayAPI.Message)
	if o.gatewayAPIOnly {
		p.OnlyGatewayAPI()
	} else if !o.force {
		if clash := existingInstall(ctx, kc.client); clash != "" {
			return fmt.Errorf("%s; upgrade it the way it was installed, or pass --force to take it over", clash)
		}
	}
	if o.dryRun {
		return install.WriteYAML(stdout, p.All())
	}
	_, err = install.Apply(ctx, kc.client, p, o.timeout, log)
	return err
}

func newUninstallCommand(c *cli) *cobra.Command {
	var o install.UninstallOptions
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "remove what 'weft install' applied",
		Long: "Removes what 'weft install' applied: the webhook configurations first, then the control plane,\n" +
			"then Weft's CRDs that hold no objects. Refuses while a Mesh or meshed pods exist. The Gateway\n" +
			"API CRDs stay unless --gateway-api.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			kc, err := c.clients()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return install.Uninstall(ctx, kc.client, o, c.out)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.GatewayAPI, "gateway-api", false, "also remove the Gateway API CRDs that 'weft install' installed (never ones another tool installed); this deletes every HTTPRoute and GRPCRoute with them")
	f.BoolVar(&o.Force, "force", false, "remove even while Meshes or meshed pods exist (the Meshes are deleted first), and delete CRDs that still hold objects (which deletes the objects)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be deleted and delete nothing")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for Meshes to be gone under --force")
	return cmd
}
