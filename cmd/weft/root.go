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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// cli is what every command shares: the streams, and kubectl's cluster-access flags
// (--kubeconfig, --context, -n, --as, --request-timeout, ...) from cli-runtime, so
// that weft reaches a cluster exactly as kubectl does with the same flags.
type cli struct {
	in          io.Reader
	out, errOut io.Writer
	config      *genericclioptions.ConfigFlags
}

// exitError carries a command's exit code: 2 for a usage error (bad flag, wrong
// arguments), 1 for a failure. err nil means the command has already said why.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error: the command line itself is wrong (exit 2).
func usageErrorf(format string, args ...any) error {
	return exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// silentExit ends the command with code after it has printed why (weft check's failed
// checks).
func silentExit(code int) error { return exitError{code: code} }

// usageArgs turns a positional-argument check's error into a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return exitError{code: 2, err: err}
		}
		return nil
	}
}

// displayName is the name the usage lines show: "kubectl weft" when the binary runs as
// the kubectl plugin kubectl-weft (a copy or symlink of weft on the PATH), else weft.
func displayName(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if strings.HasPrefix(base, "kubectl-weft") {
		return "kubectl weft"
	}
	return "weft"
}

// newConfigFlags are kubectl's cluster-access flags. Not persistent: each command
// builds its clients once.
func newConfigFlags() *genericclioptions.ConfigFlags { return genericclioptions.NewConfigFlags(false) }

// run builds the command tree, runs args and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{in: stdin, out: stdout, errOut: stderr, config: newConfigFlags()}
	root := newRootCommand(c, displayName(os.Args[0]))
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var ee exitError
	if !errors.As(err, &ee) {
		ee = exitError{code: 1, err: err}
		// cobra's own usage error has no type of its own.
		if strings.HasPrefix(err.Error(), "unknown command") {
			ee.code = 2
		}
	}
	if ee.err != nil {
		name := root.DisplayName()
		if cmd != nil {
			name = cmd.DisplayName()
			if cmd.HasParent() {
				name = root.DisplayName() + " " + strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
			}
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, ee.err)
		if ee.code == 2 && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
		}
	}
	return ee.code
}

func newRootCommand(c *cli, name string) *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "Weft's command line: install, inject, check and observe the mesh",
		Long: "Weft's command line. The commands that talk to a cluster take kubectl's flags\n" +
			"(--kubeconfig, --context, -n/--namespace, --as, --request-timeout, ...).\n" +
			"It also works as a kubectl plugin: installed as kubectl-weft on the PATH, it runs as\n" +
			"'kubectl weft'.",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: name},
		// Errors are printed once by run, with the command's name, not by cobra with
		// its usage text, which would hide the message in a screen of flags.
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(c.errOut)
			_ = cmd.Help()
			return silentExit(2)
		},
	}
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitError{code: 2, err: err} })
	c.config.AddFlags(root.PersistentFlags())
	for _, sub := range subcommands(c) {
		root.AddCommand(sub)
	}
	if name != "weft" {
		renameExamples(root, name)
	}
	return root
}

// renameExamples makes the examples say "kubectl weft ..." as the usage lines do
// when run as the kubectl plugin.
func renameExamples(cmd *cobra.Command, name string) {
	cmd.Example = strings.ReplaceAll(cmd.Example, "  weft ", "  "+name+" ")
	for _, sub := range cmd.Commands() {
		renameExamples(sub, name)
	}
}
