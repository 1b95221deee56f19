// Command weft-cni is two programs in one binary (docs/cni.md):
//
//   - run by the container runtime (CNI_COMMAND set), the chained CNI plugin that
//     writes a meshed pod's traffic redirection rules when its sandbox is created;
//   - `weft-cni install`, the weft-cni DaemonSet's container, which copies this binary
//     onto the node, chains the plugin into the node's conflist and removes it again
//     when stopped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/weftmesh/weft/internal/cni"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		os.Exit(install(os.Args[2:]))
	}
	// The runtime shows stderr when a command fails; stdout carries only the result.
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) },
		funcr.Options{LogTimestamp: true}).WithName(cni.PluginType)
	p := cni.Plugin{Pods: cni.NewPodGetter, Log: log}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   func(a *skel.CmdArgs) error { return p.Add(a, os.Stdout) },
		Check: p.Check,
		Del:   p.Del,
	}, cni.SupportedVersions, "weft-cni: Weft's traffic redirection for meshed pods (docs/cni.md)")
}

func install(args []string) int {
	fs := flag.NewFlagSet("weft-cni install", flag.ContinueOnError)
	var (
		binDir     = fs.String("bin-dir", "/host/opt/cni/bin", "where this container sees the host's CNI bin directory")
		netDir     = fs.String("net-dir", "/host/etc/cni/net.d", "where this container sees the host's CNI conf directory")
		hostNetDir = fs.String("host-net-dir", "/etc/cni/net.d", "the CNI conf directory's path on the host (written into the conflist)")
		conflist   = fs.String("conflist", "", "conflist file name to chain into (default: the first *.conflist in --net-dir)")
		apiServer  = fs.String("api-server", "", "API server URL reachable from the node's network namespace "+
			"(default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
		saDir     = fs.String("service-account-dir", "/var/run/secrets/kubernetes.io/serviceaccount", "the ServiceAccount token and CA")
		exclude   = fs.String("exclude-namespaces", "kube-system", "comma-separated namespaces whose pods the plugin never looks up")
		ipt       = fs.String("iptables", "", "iptables binary the plugin runs on the node (default: iptables in the runtime's PATH)")
		ip6t      = fs.String("ip6tables", "", "ip6tables binary the plugin runs on the node (default: ip6tables in the runtime's PATH)")
		interval  = fs.Duration("interval", 30*time.Second, "how often to re-check the installation and refresh the token")
		uninstall = fs.Bool("uninstall", false, "remove the plugin and exit")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) },
		funcr.Options{LogTimestamp: true}).WithName("weft-cni-install")
	server := *apiServer
	if server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			fmt.Fprintln(os.Stderr, "weft-cni install: --api-server is required outside a pod")
			return 2
		}
		server = "https://" + net.JoinHostPort(host, port)
	}
	self, err := os.Executable()
	if err != nil {
		log.Error(err, "Cannot find this binary")
		return 1
	}
	in := cni.Installer{
		BinDir: *binDir, NetDir: *netDir, HostNetDir: *hostNetDir, Conflist: *conflist,
		Binary: self, APIServer: server,
		TokenFile: *saDir + "/token", CAFile: *saDir + "/ca.crt",
		IPTables: *ipt, IP6Tables: *ip6t, Log: log,
	}
	for _, ns := range strings.Split(*exclude, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			in.ExcludeNamespaces = append(in.ExcludeNamespaces, ns)
		}
	}
	if *uninstall {
		return exitCode(log, in.Uninstall())
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return exitCode(log, in.Run(ctx, *interval))
}

func exitCode(log logr.Logger, err error) int {
	if err != nil {
		log.Error(err, "weft-cni install failed")
		return 1
	}
	return 0
}
