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

// Command weft-dashboard serves Weft's web dashboard (internal/dashboard) on loopback:
// users reach it only through `weft dashboard`, a port-forward the API server
// authorizes, so the dashboard needs no authentication of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftmesh/weft/internal/dashboard"
	"github.com/weftmesh/weft/internal/scheme"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8084", "listen address; keep it on loopback: the port-forward of `weft dashboard` is the only way in")
	interval := flag.Duration("interval", 5*time.Second, "how often the proxies' /metrics are read; the pages' rates are over this window")
	domain := flag.String("cluster-domain", "cluster.local", "the cluster's DNS domain, to recognise Service authorities")
	promURL := flag.String("prometheus-url", os.Getenv("WEFT_PROMETHEUS_URL"), "a Prometheus that scrapes the proxies (config/prometheus), e.g. http://prometheus.monitoring:9090: the namespaces, workloads, edges and routes pages then come from it, and from the proxies' own /metrics only when it fails; empty (the default) reads the proxies (env WEFT_PROMETHEUS_URL)")
	promWindow := flag.Duration("prometheus-window", time.Minute, "the rate() window of the Prometheus queries; keep it at least four scrape intervals")
	promSelector := flag.String("prometheus-selector", `job="weft-proxy"`, "PromQL label matchers that pick the proxies' series (the scrape job of config/prometheus)")
	tap := flag.Bool("tap", true, "serve the live tap view: the dashboard taps (tap.weft.dev) with its own ServiceAccount for whoever reaches it; false turns the view off")
	flag.Parse()
	var prom *dashboard.PromSource
	if *promURL != "" {
		var err error
		if prom, err = dashboard.NewPromSource(*promURL); err != nil {
			fmt.Fprintln(os.Stderr, "weft-dashboard:", err)
			os.Exit(2)
		}
		prom.Window, prom.Selector = *promWindow, *promSelector
	}
	if err := run(*addr, *interval, *domain, prom, *tap); err != nil {
		fmt.Fprintln(os.Stderr, "weft-dashboard:", err)
		os.Exit(1)
	}
}

func run(addr string, interval time.Duration, domain string, prom *dashboard.PromSource, tap bool) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "weft-dashboard"
	cfg.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	col := &dashboard.Collector{Kube: kube, Interval: interval, HTTP: &http.Client{Timeout: 3 * time.Second}}
	go col.Run(ctx)
	ds := &dashboard.Server{Collector: col, Client: c, Discovery: kube.Discovery(), ClusterDomain: domain, APITimeout: 5 * time.Second, Prometheus: prom}
	if tap {
		// Its own copy: tapclient.Watch drops the overall timeout a stream cannot have.
		ds.Tap = &dashboard.TapStreams{Config: rest.CopyConfig(cfg)}
	}
	srv := &http.Server{
		// WriteTimeout bounds the JSON pages; a tap stream sets a deadline per write.
		Handler:           ds.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = srv.Shutdown(sctx)
	}()
	source := "the proxies' /metrics"
	if prom != nil {
		source = "Prometheus at " + prom.URL
	}
	fmt.Fprintf(os.Stderr, "weft-dashboard: serving on %s, golden metrics from %s\n", ln.Addr(), source)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
