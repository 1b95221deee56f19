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
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/weftmesh/weft/internal/iptables"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// portsFlag and subnetsFlag parse comma-separated lists as the flag is read, so a typo
// fails with the flag's name in the message.
type portsFlag struct{ v *[]iptables.PortRange }

func (p portsFlag) String() string {
	if p.v == nil {
		return ""
	}
	s := make([]string, len(*p.v))
	for i, r := range *p.v {
		s[i] = strings.ReplaceAll(r.String(), ":", "-")
	}
	return strings.Join(s, ",")
}

func (p portsFlag) Set(s string) error {
	v, err := iptables.ParsePorts(s)
	if err != nil {
		return err
	}
	*p.v = v
	return nil
}

type subnetsFlag struct{ c *iptables.Config }

func (s subnetsFlag) String() string {
	if s.c == nil {
		return ""
	}
	out := make([]string, len(s.c.SkipSubnets))
	for i, p := range s.c.SkipSubnets {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

func (s subnetsFlag) Set(v string) error {
	p, err := iptables.ParseSubnets(v)
	if err != nil {
		return err
	}
	s.c.SkipSubnets = p
	return nil
}

func run(args []string) int {
	cfg := iptables.DefaultConfig()
	fs := flag.NewFlagSet("weft-init", flag.ContinueOnError)
	var (
		proxyUID  = fs.Int("proxy-uid", cfg.ProxyUID, "UID the proxy runs as; its traffic is never redirected")
		inbound   = fs.Uint("inbound-port", uint(cfg.InboundPort), "proxy inbound port that inbound TCP is redirected to")
		outbound  = fs.Uint("outbound-port", uint(cfg.OutboundPort), "proxy outbound port that outbound TCP is redirected to")
		dryRun    = fs.Bool("dry-run", false, "print the commands without running them")
		timeout   = fs.Duration("timeout", 30*time.Second, "give up after this long")
		ipv4Bin   = fs.String("iptables", "iptables", "iptables binary (e.g. iptables-legacy); its save tool is <name>-save")
		ipv6Bin   = fs.String("ip6tables", "ip6tables", "ip6tables binary (e.g. ip6tables-legacy)")
		verbosity = fs.Int("v", 0, "log verbosity")
	)
	fs.Var(portsFlag{&cfg.SkipInboundPorts}, "skip-inbound-ports", "comma-separated ports or ranges (a-b) whose inbound traffic bypasses the proxy")
	fs.Var(portsFlag{&cfg.SkipOutboundPorts}, "skip-outbound-ports", "comma-separated ports or ranges (a-b) whose outbound traffic bypasses the proxy")
	fs.Var(subnetsFlag{&cfg}, "skip-subnets", "comma-separated CIDRs (IPv4 and IPv6) whose traffic, to or from, bypasses the proxy")
	fs.BoolVar(&cfg.IPv6, "ipv6", cfg.IPv6, "also program ip6tables")
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
	if *inbound > 65535 || *outbound > 65535 {
		fmt.Fprintln(os.Stderr, "weft-init: ports must be at most 65535")
		return 2
	}
	cfg.ProxyUID, cfg.InboundPort, cfg.OutboundPort = *proxyUID, uint16(*inbound), uint16(*outbound)

	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, prefix, args)
	}, funcr.Options{LogTimestamp: true, Verbosity: *verbosity}).WithName("weft-init")

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()

	r := iptables.Runner{IPv4Binary: *ipv4Bin, IPv6Binary: *ipv6Bin, DryRun: *dryRun, Out: os.Stdout, Log: log}
	if err := r.Apply(logr.NewContext(ctx, log), cfg); err != nil {
		log.Error(err, "Failed to set up traffic redirection")
		return 1
	}
	log.Info("Traffic redirection in place", "inboundPort", cfg.InboundPort, "outboundPort", cfg.OutboundPort,
		"proxyUID", cfg.ProxyUID, "ipv6", cfg.IPv6, "dryRun", *dryRun)
	return 0
}
