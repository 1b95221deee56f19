// Command weft is Weft's command line. Each subcommand is one entry in commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run gets the arguments after the subcommand's name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"inject": {
		summary: "add the Weft proxy to the workloads in Kubernetes manifests",
		run: func(a []string, in io.Reader, out, errw io.Writer) int {
			return runManifests("inject", a, in, out, errw)
		},
	},
	"stat": {
		summary: "golden metrics (RPS, success rate, latency, mTLS) of meshed workloads",
		run:     runStat,
	},
	"dashboard": {
		summary: "open the web dashboard (a port-forward to weft-dashboard)",
		run:     runDashboard,
	},
	"authz": {
		summary: "what the inbound policy of a workload's pods admits, port by port",
		run:     runAuthz,
	},
	"check": {
		summary: "check that the control plane, certificates and meshed pods are healthy",
		run:     runCheck,
	},
	"install": {
		summary: "install Weft (and the Gateway API CRDs when absent) with server-side apply",
		run:     runInstall,
	},
	"uninstall": {
		summary: "remove what 'weft install' applied",
		run:     runUninstall,
	},
	"uninject": {
		summary: "remove the Weft proxy from the workloads in Kubernetes manifests",
		run: func(a []string, in io.Reader, out, errw io.Writer) int {
			return runManifests("uninject", a, in, out, errw)
		},
	},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "weft: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: weft <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'weft <command> -h' for a command's flags.")
}

// parseNoArgs parses a subcommand's flags for a command that takes no arguments. ok is
// false when the command must end with code: 0 after -h, 2 on a bad flag (the flag
// package has printed why) or an argument.
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
