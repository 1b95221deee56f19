// Command weft-init programs a pod's network namespace so that its TCP traffic passes
// through the Weft proxy. It runs as an init container before the proxy and the app;
// see docs/init.md for the rules it writes and why.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/weftmesh/weft/internal/iptables"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg := iptables.DefaultConfig()
	fs := flag.NewFlagSet("weft-init", flag.ContinueOnError)
	iptables.RegisterFlags(fs, &cfg)
	var (
		dryRun    = fs.Bool("dry-run", false, "print the commands without running them")
		validate  = fs.Bool("validate", false, "change nothing: check that the rules are in place (CNI mode's validator; runs unprivileged)")
		timeout   = fs.Duration("timeout", 30*time.Second, "give up after this long")
		ipv4Bin   = fs.String("iptables", "iptables", "iptables binary (e.g. iptables-legacy); its save tool is <name>-save")
		ipv6Bin   = fs.String("ip6tables", "ip6tables", "ip6tables binary (e.g. ip6tables-legacy)")
		verbosity = fs.Int("v", 0, "log verbosity")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "weft-init: unexpected arguments %q\n", fs.Args())
		return 2
	}

	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, prefix, args)
	}, funcr.Options{LogTimestamp: true, Verbosity: *verbosity}).WithName("weft-init")

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()

	if *validate {
		return runValidate(ctx, log, cfg)
	}
	r := iptables.Runner{IPv4Binary: *ipv4Bin, IPv6Binary: *ipv6Bin, DryRun: *dryRun, Out: os.Stdout, Log: log}
	if err := r.Apply(logr.NewContext(ctx, log), cfg); err != nil {
		log.Error(err, "Failed to set up traffic redirection")
		return 1
	}
	log.Info("Traffic redirection in place", "inboundPort", cfg.InboundPort, "outboundPort", cfg.OutboundPort,
		"proxyUID", cfg.ProxyUID, "ipv6", cfg.IPv6, "dryRun", *dryRun)
	return 0
}

// runValidate is CNI mode's validator: the weft-cni plugin wrote the rules when the
// pod's sandbox was created, and this checks, before the proxy and the app start, that
// it really did. A pod whose sandbox was created while the plugin was not installed
// (the DaemonSet not yet running on a new node, or being upgraded) would otherwise run
// its app with no redirection: plaintext, past policy. Failing here keeps the pod in
// Init with this message instead.
func runValidate(ctx context.Context, log logr.Logger, cfg iptables.Config) int {
	if err := iptables.CheckRedirect(ctx, cfg); err != nil {
		msg := fmt.Sprintf("Traffic redirection is not in place: %v. The weft-cni plugin did not set up this pod's "+
			"network namespace: check that the weft-cni DaemonSet runs on this node and that the node's CNI "+
			"configuration chains weft-cni (docs/cni.md), then delete this pod so it is created again", err)
		log.Error(err, "Traffic redirection is not in place")
		// The kubelet shows the termination message in the pod's status.
		_ = os.WriteFile("/dev/termination-log", []byte(msg), 0o644)
		fmt.Fprintln(os.Stderr, msg)
		return 1
	}
	log.Info("Traffic redirection verified", "outboundPort", cfg.OutboundPort)
	return 0
}
