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

// Command weft-demo is every workload of the demo application (config/demo) and of the
// end-to-end suite (test/e2e) in one small static binary, so one image (weft-demo:dev)
// serves them all:
//
//	web      HTTP/1 front end: per request calls the gRPC service and the HTTP backend
//	grpc     gRPC server (grpc.testing.TestService and the health service)
//	backend  HTTP server with a version label, a failure rate and a latency
//	load     constant-rate HTTP load generator that counts what it sent and got back
//
// Each subcommand takes its own flags; `weft-demo <subcommand> -h` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]subcommand{
	"web":     {"HTTP/1 front end calling the gRPC service and the HTTP backend", runWeb},
	"grpc":    {"gRPC server (grpc.testing.TestService, grpc.health.v1.Health)", runGRPC},
	"backend": {"HTTP backend with a version label, failure rate and latency", runBackend},
	"load":    {"constant-rate HTTP load generator with its own counts", runLoad},
}

// errUsage means the flags were wrong; the flag package has already said why.
var errUsage = errors.New("usage")

// idleConnTimeout closes the HTTP clients' idle connections well before the proxy's
// protocol detection gives up (10s by default). Go's http.Transport keeps a connection
// it dialled for a request that another connection served, unused, in its idle pool; a
// connection whose first bytes come later than the detection timeout is forwarded as
// opaque TCP, unrouted and without HTTP metrics (docs/proxy.md, "Protocol detection").
const idleConnTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "weft-demo: unknown subcommand %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := sc.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "weft-demo %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: weft-demo <subcommand> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, subcommands[n].summary)
	}
}

// parse parses a subcommand's flags, mapping the flag package's errors onto ours.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return errUsage
	}
	return nil
}

// serve runs srv until ctx ends, then shuts it down gracefully: Kubernetes sends SIGTERM
// and the endpoint is removed at about the same time, so in-flight requests finish.
func serve(ctx context.Context, srv *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// podName names this process in responses so clients can tell replicas apart.
func podName() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	n, _ := os.Hostname()
	return n
}
