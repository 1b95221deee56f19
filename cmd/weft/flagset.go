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
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// A command written against the standard flag package (weft tap and weft top are
// written so, in parallel with the move to cobra) plugs into the tree unchanged with
// flagSetCommand, until it is moved onto cobra's flags:
//
//	flagSetCommand("tap", "watch live requests of a workload", runTap),
//
// in subcommands (commands.go). kubeFlags and parseNoArgs are what such commands use.

// flagSetCommand wraps run(args, stdin, stdout, stderr) exit-code as a cobra command
// that leaves every argument, flags included, to run.
func flagSetCommand(name, summary string, run func(args []string, stdin io.Reader, stdout, stderr io.Writer) int) func(*cli) *cobra.Command {
	return func(c *cli) *cobra.Command {
		return &cobra.Command{
			Use:                name + " [flags] [arguments]",
			Short:              summary,
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				if code := run(args, c.in, c.out, c.errOut); code != 0 {
					return silentExit(code)
				}
				return nil
			},
		}
	}
}

// kubeFlags are the cluster flags of a flag-package command: --kubeconfig, --context
// and -n/--namespace, resolved by cli-runtime's ConfigFlags as cobra commands' are.
type kubeFlags struct {
	kubeconfig, context, namespace string
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context (default: the current context)")
	fs.StringVar(&k.namespace, "n", "", "namespace (default: the context's namespace)")
	fs.StringVar(&k.namespace, "namespace", "", "same as -n")
}

func (k *kubeFlags) clients() (*kubeClients, error) {
	cf := genericclioptions.NewConfigFlags(false)
	cf.KubeConfig, cf.Context, cf.Namespace = &k.kubeconfig, &k.context, &k.namespace
	return (&cli{config: cf}).clients()
}

// parseNoArgs parses a flag-package command's flags for a command that takes no
// arguments. ok is false when the command must end with code: 0 after -h, 2 on a bad
// flag (the flag package has printed why) or an argument.
func parseNoArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}
