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
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/proxy/api"
)

// tapFlags are the flags weft tap and weft top share: the target's filters and the
// identity to act as.
type tapFlags struct {
	kube                    kubeFlags
	to, toNamespace         string
	method, path, authority string
	maxRPS                  uint
	as                      string
	asGroups                stringList
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (f *tapFlags) register(fs *flag.FlagSet) {
	f.kube.register(fs)
	fs.StringVar(&f.to, "to", "", "only requests to (outbound) or from (inbound) this workload, e.g. deploy/backend")
	fs.StringVar(&f.toNamespace, "to-namespace", "", "only requests whose other side is in this namespace")
	fs.StringVar(&f.method, "method", "", "only requests with this HTTP method")
	fs.StringVar(&f.path, "path", "", "only requests whose path starts with this prefix")
	fs.StringVar(&f.authority, "authority", "", "only requests for this authority (host:port as sent)")
	fs.UintVar(&f.maxRPS, "max-rps", 100, "at most this many requests per second are shown (each is up to 3 events); the rest are dropped and counted")
	fs.StringVar(&f.as, "as", "", "act as this user (kubectl's impersonation; needs the impersonate permission)")
	fs.Var(&f.asGroups, "as-group", "act as this group (repeatable; with --as)")
}

// parseWithTarget parses flags that may follow the positional target, as kubectl does.
func parseWithTarget(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		if fs.NArg() == 0 {
			return pos, 0, true
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// request builds the tap request and the REST config (with impersonation).
func (f *tapFlags) request(pos []string) (*rest.Config, tapclient.Request, error) {
	resource, name, err := tapclient.ParseTarget(pos)
	if err != nil {
		return nil, tapclient.Request{}, err
	}
	m := &api.TapMatch{Method: f.method, PathPrefix: f.path, Authority: f.authority, Namespace: f.toNamespace}
	if f.to != "" {
		if m.Workload, err = tapclient.WorkloadMatch(f.to); err != nil {
			return nil, tapclient.Request{}, err
		}
	}
	if f.maxRPS == 0 || f.maxRPS > 333 {
		return nil, tapclient.Request{}, fmt.Errorf("--max-rps %d: want 1 to 333 (the tap API sends at most 1,000 events per second)", f.maxRPS)
	}
	kc, err := f.kube.clients()
	if err != nil {
		return nil, tapclient.Request{}, err
	}
	cfg := rest.CopyConfig(kc.config)
	if f.as != "" || len(f.asGroups) > 0 {
		cfg.Impersonate = rest.ImpersonationConfig{UserName: f.as, Groups: f.asGroups}
	}
	req := tapclient.Request{
		Namespace: kc.namespace, Resource: resource, Name: name,
		Observe: &api.ObserveRequest{Match: m, MaxEventsPerSecond: uint32(3 * f.maxRPS)},
	}
	if resource == "namespaces" {
		req.Namespace = name
	}
	return cfg, req, nil
}

func runTap(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft tap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f tapFlags
	f.register(fs)
	var output string
	fs.StringVar(&output, "o", "", "output format: empty for lines, or json (one TapEvent per line)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft tap <resource>/<name> [flags]\n\n"+
			"Live requests of a workload's meshed pods (ns/<name> for a whole namespace; pod, deploy,\n"+
			"rs, sts, ds, job), through the tap API: the kube-apiserver checks that you may\n"+
			"\"watch\" <resource>/tap in tap.weft.dev (kubectl auth can-i watch deployments.tap.weft.dev/tap).\n"+
			"Shows metadata only (method, authority, path, status, latency, identities), never bodies.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseWithTarget(fs, args)
	if !ok {
		return code
	}
	if output != "" && output != "json" {
		fmt.Fprintf(stderr, "weft tap: -o %q: want json or nothing\n", output)
		return 2
	}
	cfg, req, err := f.request(pos)
	if err != nil {
		fmt.Fprintf(stderr, "weft tap: %v\n", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	lw := &tapclient.LineWriter{W: stdout, JSON: output == "json"}
	if err := tapclient.Watch(ctx, cfg, req, lw.Write); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "weft tap: %v\n", err)
		return 1
	}
	return 0
}

func runTop(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f tapFlags
	f.register(fs)
	var (
		interval time.Duration
		rows     int
		count    int
	)
	fs.DurationVar(&interval, "interval", time.Second, "how often the table is redrawn (printed, when the output is not a terminal)")
	fs.IntVar(&rows, "rows", 20, "the table's rows: the most requested paths")
	fs.IntVar(&count, "count", 0, "stop after this many tables (0: until interrupted)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft top <resource>/<name> [flags]\n\n"+
			"The hottest paths of a workload's traffic, from the tap API (see weft tap): requests,\n"+
			"success rate and latency per method, authority and path, redrawn in the terminal.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseWithTarget(fs, args)
	if !ok {
		return code
	}
	if interval <= 0 || rows <= 0 {
		fmt.Fprintln(stderr, "weft top: --interval and --rows must be positive")
		return 2
	}
	cfg, req, err := f.request(pos)
	if err != nil {
		fmt.Fprintf(stderr, "weft top: %v\n", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := top(ctx, cfg, req, topOptions{interval: interval, rows: rows, count: count, tty: isTerminal(stdout)}, stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "weft top: %v\n", err)
		return 1
	}
	return 0
}

type topOptions struct {
	interval    time.Duration
	rows, count int
	tty         bool
}

// top aggregates the stream and draws the table every interval: in place on a
// terminal, as successive snapshots (separated by a blank line) otherwise.
func top(ctx context.Context, cfg *rest.Config, req tapclient.Request, o topOptions, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu sync.Mutex
		tp tapclient.Top
	)
	errc := make(chan error, 1)
	go func() {
		errc <- tapclient.Watch(ctx, cfg, req, func(ev *api.TapEvent) error {
			mu.Lock()
			tp.Add(ev)
			mu.Unlock()
			return nil
		})
	}()
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
			return errors.New("the tap stream ended: the workload's pods are gone")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if o.tty {
			fmt.Fprint(w, "\x1b[H\x1b[2J") // home, clear screen
		} else if n > 1 {
			fmt.Fprintln(w)
		}
		mu.Lock()
		err := tp.WriteTable(w, o.rows)
		mu.Unlock()
		if err != nil {
			return err
		}
		if o.count > 0 && n >= o.count {
			return nil
		}
	}
}
