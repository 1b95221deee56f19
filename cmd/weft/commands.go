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

import "github.com/spf13/cobra"

// subcommands lists weft's commands in the order `weft --help` shows them by group.
// A new command is one constructor here: func(*cli) *cobra.Command, its flags bound to
// its own options, its cluster access through c.clients(). The shell completion command is cobra's own (`weft completion`).
func subcommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		// Manifests, offline.
		newManifestsCommand(c, "inject"),
		newManifestsCommand(c, "uninject"),
		// Installing and checking.
		newInstallCommand(c),
		newUninstallCommand(c),
		newCheckCommand(c),
		newVersionCommand(c),
		// Observing the mesh, from the proxies.
		newStatCommand(c),
		newEdgesCommand(c),
		newRoutesCommand(c),
		newAuthzCommand(c),
		newDiagnosticsCommand(c),
		// Observing live requests, through the tap API.
		newTapCommand(c),
		newTopCommand(c),
		newDashboardCommand(c),
	}
}
