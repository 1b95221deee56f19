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
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/tapclient"
	"github.com/weftmesh/weft/proxy/api"
)

// tapOptions are the flags weft tap and weft top share: the target's filters. The
// cluster flags (impersonation with --as and --as-group included) are kubectl's, from
// the root command.
type tapOptions struct {
	to, toNamespace         string
	method, path, authority string
	maxRPS                  uint
}

func (o *tapOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "only requests to (outbound) or from (inbound) this workload, e.g. deploy/backend")
	f.StringVar(&o.toNamespace, "to-namespace", "", "only requests whose other side is in this namespace")
	f.StringVar(&o.method, "method", "", "only requests with this HTTP method")
	f.StringVar(&o.path, "path", "", "only requests whose path starts with this prefix")
	f.StringVar(&o.authority, "authority", "", "only requests for this authority (host:port as sent)")
	f.UintVar(&o.maxRPS, "max-rps", 100, "at most this many requests per second are shown (each is up to 3 events); the rest are dropped and counted")
}

// request builds the tap request and the REST config (with kubectl's impersonation).
func (o *tapOptions) request(c *cli, args []string) (*rest.Config, tapclient.Request, error) {
	resource, name, err := tapclient.ParseTarget(args)
	if err != nil {
		return nil, tapclient.Request{}, usageErrorf("%v", err)
	}
	m := &api.TapMatch{Method: o.method, PathPrefix: o.path, Authority: o.authority, Namespace: o.toNamespace}
	if o.to != "" {
		if m.Workload, err = tapclient.WorkloadMatch(o.to); err != nil {
			return nil, tapclient.Request{}, usageErrorf("%v", err)
		}
	}
	if o.maxRPS == 0 || o.maxRPS > 333 {
		return nil, tapclient.Request{}, usageErrorf("--max-rps %d: want 1 to 333 (the tap API sends at most 1,000 events per second)", o.maxRPS)
	}
	kc, err := c.clients()
	if err != nil {
		return nil, tapclient.Request{}, err
	}
	req := tapclient.Request{
		Namespace: kc.namespace, Resource: resource, Name: name,
		Observe: &api.ObserveRequest{Match: m, MaxEventsPerSecond: uint32(3 * o.maxRPS)},
	}
	if resource == "namespaces" {
		req.Namespace = name
	}
	return kc.config, req, nil
}

// tapTargets completes a tap target's kind and, from the cluster, its name.
func (c *cli) tapTargets(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return c.completeTyped(toComplete, "deploy", "pod", "ns")
}

func newTapCommand(c *cli) *cobra.Command {
	var (
		o      tapOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "tap RESOURCE/NAME",
		Short: "live requests of a workload's pods, through the tap API (RBAC-checked)",
		Long: "Live requests of a workload's meshed pods (ns/NAME for a whole namespace; pod, deploy,\n" +
			"rs, sts, ds, job), through the tap API: the kube-apiserver checks that you may\n" +
			"\"watch\" RESOURCE/tap in tap.weft.dev (kubectl auth can-i watch deployments.tap.weft.dev/tap).\n" +
			"Shows metadata only (method, authority, path, status, latency, identities), never bodies.",
		Example:           "  weft tap deploy/web -n weft-demo\n  weft tap deploy/web -n weft-demo --to deploy/backend --path /books -o json",
		Args:              usageArgs(cobra.RangeArgs(1, 2)),
		ValidArgsFunction: c.tapTargets,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := checkOutput(output, "lines", "json"); err != nil {
				return err
			}
			cfg, req, err := o.request(c, args)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			lw := &tapclient.LineWriter{W: c.out, JSON: output == "json"}
			if err := tapclient.Watch(ctx, cfg, req, lw.Write); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	o.register(cmd)
	addOutputFlag(cmd, &output, "lines", "json")
	return cmd
}

func newTopCommand(c *cli) *cobra.Command {
	var (
		o  tapOptions
		to topOptions
	)
	cmd := &cobra.Command{
		Use:   "top RESOURCE/NAME",
		Short: "a live table of a workload's hottest paths, from the tap API",
		Long: "The hottest paths of a workload's traffic, from the tap API (see weft tap): requests,\n" +
			"success rate and latency per method, authority and path, redrawn in the terminal\n" +
			"(printed as successive tables when the output is not a terminal).",
		Example:           "  weft top deploy/web -n weft-demo\n  weft top deploy/web -n weft-demo --interval 5s --count 1",
		Args:              usageArgs(cobra.RangeArgs(1, 2)),
		ValidArgsFunction: c.tapTargets,
		RunE: func(_ *cobra.Command, args []string) error {
			if to.interval <= 0 || to.rows <= 0 {
				return usageErrorf("--interval and --rows must be positive")
			}
			cfg, req, err := o.request(c, args)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			to.tty = isTerminal(c.out)
			if err := top(ctx, cfg, req, to, c.out); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.DurationVar(&to.interval, "interval", time.Second, "how often the table is redrawn (printed, when the output is not a terminal)")
	f.IntVar(&to.rows, "rows", 20, "the table's rows: the most requested paths")
	f.IntVar(&to.count, "count", 0, "stop after this many tables (0: until interrupted)")
	return cmd
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
