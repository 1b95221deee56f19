// Command bench-proxy measures what a proxy pair costs on this machine: the same HTTP
// load (fortio's constant-rate generator, 16 connections, 1 KiB responses from
// fortio's echo server) goes client -> server directly, through a Weft proxy pair with
// mutual TLS, and through HAProxy, nginx and Caddy pairs with mutual TLS, all on
// loopback, every proxy with the same number of threads. It prints a table and Weft's
// figures as ratios to each peer, and writes the same as JSON (see row for the fields).
//
// Run it through `make bench-proxy` (hack/bench-proxy.sh builds weft-proxy first).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"
)

// row is one line of results: a setup at one constant rate.
type row struct {
	Setup     string  `json:"setup"`
	RPS       int     `json:"rps"`
	ActualRPS float64 `json:"actual_rps"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p999_ms"`
	// AddedP50 and AddedP99 are this setup's percentile minus direct's at the same rate.
	AddedP50 float64 `json:"added_p50_ms"`
	AddedP99 float64 `json:"added_p99_ms"`
	// CPUPer1k is CPU seconds (user+system) per 1,000 requests, averaged over the
	// setup's proxy processes; RSSPeakMB is the largest VmHWM among them. Both are
	// null for direct, which has no proxy.
	CPUPer1k  *float64 `json:"cpu_s_per_1k"`
	RSSPeakMB *float64 `json:"rss_peak_mb"`
	// MaxRPS is the setup's saturation throughput (as fast as 16 connections go).
	MaxRPS  float64    `json:"max_rps"`
	Proxies []proxyRow `json:"proxies,omitempty"`
	// ServerCPUPer1k is the echo server's own CPU seconds per 1,000 requests: a
	// yardstick for what handling one request costs on this machine.
	ServerCPUPer1k float64 `json:"server_cpu_s_per_1k"`
	// LoadAvg1m is the machine's one-minute load average just before the run: the
	// figures only mean something when it is well below the number of cores.
	LoadAvg1m float64 `json:"load_avg_1m"`
	// Threads is each proxy's thread count in this run (GOMAXPROCS, nbthread,
	// worker_processes); 0: each proxy's default.
	Threads int `json:"proxy_threads"`
	// WeftRatioTo, on the weft rows only, is Weft's figure divided by each peer's
	// (haproxy, nginx, caddy) at the same rate: below 1 is better for Weft, except
	// max_rps where above 1 is.
	WeftRatioTo map[string]ratio `json:"weft_ratio_to,omitempty"`
}

// ratio is Weft's figure over a peer's. A field is null when the peer's figure is not
// positive (an added latency within the noise can be zero or negative), since the
// ratio would then say nothing.
type ratio struct {
	AddedP50 *float64 `json:"added_p50"`
	AddedP99 *float64 `json:"added_p99"`
	CPUPer1k *float64 `json:"cpu_s_per_1k"`
	RSSPeak  *float64 `json:"rss_peak_mb"`
	MaxRPS   *float64 `json:"max_rps"`
}

// proxyRow is one proxy process's share of a row.
type proxyRow struct {
	Role      string  `json:"role"`
	CPUPer1k  float64 `json:"cpu_s_per_1k"`
	RSSPeakMB float64 `json:"rss_peak_mb"`
	// RSSAnonMB is RssAnon at the end of the run: the part of the resident memory
	// that is the proxy's own. The rest is mostly its binary's (and libraries')
	// file pages, which every proxy on a node started from the same image shares.
	RSSAnonMB float64 `json:"rss_anon_mb"`
}

// The main goroutine stays on the main thread; the PKI helper shares a package with
// code that moves threads between network namespaces and asks for this.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		addr := serverAddr
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		serve(addr)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "load" {
		loadMain(os.Args[2:])
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-proxy:", err)
		os.Exit(1)
	}
}

// serve runs fortio's echo server; /echo?size=1024 answers 1 KiB. It runs in its own
// process so that its CPU is not the load generator's.
func serve(addr string) {
	log.SetLogLevel(log.Error)
	fhttp.Serve(addr, "")
	select {}
}

type options struct {
	weftProxy, haproxy string
	nginx, caddy       string
	out, workDir       string
	setups             []string
	rates              []int
	conns              int
	duration, warmup   time.Duration
	satDuration        time.Duration
	profileDir         string
	threads            int
	rounds             int
	netns              bool
	weftInit           string
}

func run() error {
	var o options
	var setups, rates string
	flag.StringVar(&o.weftProxy, "weft-proxy", "bin/weft-proxy", "weft-proxy binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "caddy binary")
	flag.StringVar(&o.out, "out", "bench/results/proxy.json", "JSON results file")
	flag.StringVar(&o.workDir, "workdir", "", "directory for configs, certificates and proxy logs (default: a temporary one, removed afterwards)")
	flag.StringVar(&setups, "setups", "direct,weft,haproxy,nginx,caddy,weft-tcp,weft-trace1,weft-trace100,weft-tap", "setups to measure, direct first (it is the baseline): direct, weft, haproxy, nginx, caddy, weft-tcp (the Weft pair carrying the connections as opaque TCP over mTLS, to separate the HTTP layer's cost), and weft-trace1 and weft-trace100 (the Weft pair with tracing at 1% and 100% sampling to an in-process OTLP receiver that discards), and weft-tap (the Weft pair with one tap stream open on its client side, max 1,000 events a second: the cost of an active tap)")
	flag.StringVar(&rates, "rates", "1000,5000", "constant request rates (requests per second)")
	flag.IntVar(&o.conns, "connections", 16, "concurrent connections")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each constant-rate run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each setup's measurements")
	flag.DurationVar(&o.satDuration, "saturation-duration", 5*time.Second, "length of each max-throughput run")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write CPU profiles of the Weft proxies here (--weft-proxy must then be test/bench/weftprof)")
	// Every proxy gets the same number of threads, so that none wins by using more
	// cores than another: the default is one per core.
	flag.IntVar(&o.threads, "proxy-threads", runtime.NumCPU(), "threads per proxy: GOMAXPROCS for weft-proxy and Caddy, nbthread for HAProxy, worker_processes for nginx (0: each proxy's own default)")
	flag.IntVar(&o.rounds, "rounds", 3, "split each run into this many rounds, setups taking turns")
	flag.BoolVar(&o.netns, "netns", false, "also measure direct-netns and weft-netns: two network namespaces joined by a veth, weft-init's iptables rules, proxies as UID 2102 (needs root)")
	flag.StringVar(&o.weftInit, "weft-init", "bin/weft-init", "weft-init binary, for --netns")
	flag.Parse()
	o.setups = setupNames(setups)
	for _, f := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("invalid rate %q", f)
		}
		o.rates = append(o.rates, n)
	}
	if o.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	if len(o.setups) == 0 || o.setups[0] != "direct" {
		return errors.New("--setups must start with direct, the baseline")
	}
	log.SetLogLevel(log.Error)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	dir := o.workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "weft-bench-"); err != nil {
			return fmt.Errorf("make work dir: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make work dir: %w", err)
	}

	server, err := startServer(ctx, dir)
	if err != nil {
		return err
	}
	defer server.stop()
	p, err := newPKI(dir)
	if err != nil {
		return err
	}

	var started []*setup
	defer func() {
		for _, s := range started {
			s.stop()
		}
	}()
	for _, name := range o.setups {
		var s *setup
		switch name {
		case "direct":
			s = directSetup()
		case "weft":
			s, err = weftSetup(ctx, dir, o.weftProxy, name, weftBase, "", "", o.profileDir, o.threads, p)
		case "weft-tcp":
			s, err = weftSetup(ctx, dir, o.weftProxy, name, weftTCPBase, "opaque", "", o.profileDir, o.threads, p)
		case "weft-trace1", "weft-trace100":
			var collector string
			if collector, err = traceReceiver(ctx); err == nil {
				base, perMillion := weftTrace1Base, 10_000
				if name == "weft-trace100" {
					base, perMillion = weftTrace100Base, 1_000_000
				}
				s, err = weftSetup(ctx, dir, o.weftProxy, name, base, "", tracingConfig(collector, perMillion), o.profileDir, o.threads, p)
			}
		case "weft-tap":
			s, err = weftTapSetup(ctx, dir, o.weftProxy, o.profileDir, o.threads, p)
		case "haproxy":
			s, err = haproxySetup(ctx, dir, o.haproxy, o.threads, p)
		case "nginx":
			s, err = nginxSetup(ctx, dir, o.nginx, o.threads, p)
		case "caddy":
			s, err = caddySetup(ctx, dir, o.caddy, o.threads, p)
		default:
			err = fmt.Errorf("unknown setup %q", name)
		}
		if err != nil {
			return fmt.Errorf("setup %s: %w", name, err)
		}
		started = append(started, s)
	}
	if o.netns {
		pp, err := startPodPair(ctx, dir, o.weftProxy, o.weftInit, o.threads, p)
		if err != nil {
			return fmt.Errorf("netns pods: %w", err)
		}
		defer pp.stop()
		started = append(started, netnsSetups(pp)...)
	}
	for _, s := range started {
		if _, err := s.load(ctx, float64(o.rates[0]), o.conns, o.warmup); err != nil {
			return fmt.Errorf("setup %s: warm-up: %w", s.name, err)
		}
	}
	rows, err := measure(ctx, o, started, server.procs[0])
	if err != nil {
		return err
	}
	addDeltas(rows)
	for i := range rows {
		rows[i].Threads = o.threads
	}
	addRatios(rows)
	printTable(os.Stdout, rows)
	printRatios(os.Stdout, rows)
	if n := spansReceived.Load(); n > 0 {
		fmt.Printf("\nOTLP receiver (weft-trace*): %d spans received\n", n)
	}
	return writeJSON(o.out, rows)
}

// accum gathers one setup's rounds at one rate.
type accum struct {
	count, errors int64
	seconds       float64
	pcts          [][4]float64
	cpuBefore     []float64
	serverCPU     float64
	load          float64
}

// measure runs every rate, then the saturation run, over all setups. Each run is
// split into o.rounds rounds, and the setups take turns round by round (in a rotating
// order), so a burst of other work on the machine hits every setup alike instead of
// whichever happened to run then. Percentiles are the median over the rounds;
// counts, CPU and time are summed. Idle setups cost nothing measurable meanwhile
// (their proxies sleep in epoll).
func measure(ctx context.Context, o options, setups []*setup, server *proc) ([]row, error) {
	var rows []row
	for _, rate := range o.rates {
		acc := make([]accum, len(setups))
		for i, s := range setups {
			for _, p := range s.procs {
				if err := treeResetPeakRSS(p.pid()); err != nil {
					return nil, err
				}
				c, err := treeCPUSeconds(p.pid())
				if err != nil {
					return nil, err
				}
				acc[i].cpuBefore = append(acc[i].cpuBefore, c)
			}
		}
		for round := 0; round < o.rounds; round++ {
			for k := range setups {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				i := (k + round) % len(setups)
				a := &acc[i]
				a.load = math.Max(a.load, loadAvg())
				srv := server
				if setups[i].server != nil {
					srv = setups[i].server
				}
				serverBefore, err := cpuSeconds(srv.pid())
				if err != nil {
					return nil, err
				}
				res, err := setups[i].load(ctx, float64(rate), o.conns, o.duration/time.Duration(o.rounds))
				if err != nil {
					return nil, fmt.Errorf("%s at %d rps: %w", setups[i].name, rate, err)
				}
				// The run's own length as fortio measured it, not including the
				// start of a load process (netns setups).
				a.seconds += float64(res.count) / res.qps
				serverAfter, err := cpuSeconds(srv.pid())
				if err != nil {
					return nil, err
				}
				a.serverCPU += serverAfter - serverBefore
				a.count += res.count
				a.errors += res.errors
				a.pcts = append(a.pcts, res.p)
			}
		}
		for i, s := range setups {
			a := acc[i]
			var p [4]float64
			for j := range p {
				var vals []float64
				for _, r := range a.pcts {
					vals = append(vals, r[j])
				}
				p[j] = median(vals)
			}
			r := row{Setup: s.name, RPS: rate, ActualRPS: round(float64(a.count)/a.seconds, 1), Requests: a.count,
				Errors: a.errors, P50: p[0], P90: p[1], P99: p[2], P999: p[3],
				ServerCPUPer1k: round(a.serverCPU/float64(a.count)*1000, 4), LoadAvg1m: a.load}
			if len(s.procs) > 0 {
				var cpuSum, rssMax float64
				for j, pr := range s.procs {
					after, err := treeCPUSeconds(pr.pid())
					if err != nil {
						return nil, err
					}
					rss, err := treePeakRSSMB(pr.pid())
					if err != nil {
						return nil, err
					}
					anon, err := treeAnonRSSMB(pr.pid())
					if err != nil {
						return nil, err
					}
					per1k := (after - a.cpuBefore[j]) / float64(a.count) * 1000
					r.Proxies = append(r.Proxies, proxyRow{Role: pr.role, CPUPer1k: round(per1k, 4), RSSPeakMB: round(rss, 1), RSSAnonMB: round(anon, 1)})
					cpuSum += per1k
					rssMax = math.Max(rssMax, rss)
				}
				cpu, rss := round(cpuSum/float64(len(s.procs)), 4), round(rssMax, 1)
				r.CPUPer1k, r.RSSPeakMB = &cpu, &rss
			}
			fmt.Fprintf(os.Stderr, "%-8s %5d rps: p50 %.3f ms p99 %.3f ms, %d requests, %d errors\n", s.name, rate, r.P50, r.P99, r.Requests, r.Errors)
			rows = append(rows, r)
		}
	}
	sat := make([][]float64, len(setups))
	for round := 0; round < o.rounds; round++ {
		for k := range setups {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			i := (k + round) % len(setups)
			res, err := setups[i].load(ctx, -1, o.conns, o.satDuration/time.Duration(o.rounds))
			if err != nil {
				return nil, fmt.Errorf("%s saturation: %w", setups[i].name, err)
			}
			sat[i] = append(sat[i], res.qps)
		}
	}
	for i, s := range setups {
		m := math.Round(median(sat[i]))
		fmt.Fprintf(os.Stderr, "%-8s max: %.0f rps\n", s.name, m)
		for j := range rows {
			if rows[j].Setup == s.name {
				rows[j].MaxRPS = m
			}
		}
	}
	return rows, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type loadResult struct {
	qps    float64
	count  int64
	errors int64
	p      [4]float64 // p50, p90, p99, p99.9 in ms
}

// load runs fortio's HTTP runner at qps (negative: as fast as possible) with conns
// connections for d.
func load(url string, qps float64, conns int, d time.Duration) (loadResult, error) {
	o := fhttp.HTTPRunnerOptions{
		RunnerOptions: periodic.RunnerOptions{
			QPS:         qps,
			NumThreads:  conns,
			Duration:    d,
			Percentiles: []float64{50, 90, 99, 99.9},
			// 10 µs buckets: the default 1 ms cannot resolve a sub-millisecond p50.
			Resolution: 0.00001,
			// Spread the connections' send times over the period instead of firing
			// all 16 together, so the rate is constant rather than bursty.
			Uniform: true,
			Out:     io.Discard,
		},
		// A connection that fails on its first request (a rare refused connect
		// when the machine is loaded) is counted as an error instead of aborting
		// the whole run; errors are reported in the table.
		AllowInitialErrors: true,
	}
	o.Init(url)
	res, err := fhttp.RunHTTPTest(&o)
	if err != nil {
		return loadResult{}, err
	}
	h := res.DurationHistogram
	lr := loadResult{qps: res.ActualQPS, count: h.Count}
	for code, n := range res.RetCodes {
		if code != 200 {
			lr.errors += n
		}
	}
	for i, p := range h.Percentiles {
		if i < len(lr.p) {
			lr.p[i] = round(p.Value*1000, 3)
		}
	}
	if lr.count == 0 {
		return lr, errors.New("no request completed")
	}
	return lr, nil
}

// addDeltas subtracts the matching direct row: "direct" for loopback setups,
// "direct-netns" for the *-netns ones.
func addDeltas(rows []row) {
	type key struct {
		base string
		rps  int
	}
	baseOf := func(setup string) string {
		if strings.HasSuffix(setup, "-netns") {
			return "direct-netns"
		}
		return "direct"
	}
	base := map[key]row{}
	for _, r := range rows {
		if r.Setup == baseOf(r.Setup) {
			base[key{r.Setup, r.RPS}] = r
		}
	}
	for i, r := range rows {
		if b, ok := base[key{baseOf(r.Setup), r.RPS}]; ok {
			rows[i].AddedP50 = round(r.P50-b.P50, 3)
			rows[i].AddedP99 = round(r.P99-b.P99, 3)
		}
	}
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\trps\tachieved\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\t+p50 ms\t+p99 ms\tCPU s/1k (per proxy)\tpeak RSS MB (per proxy)\tof it anon\tmax rps\terrors\t")
	for _, r := range rows {
		cpu, rss, anon := "-", "-", "-"
		if len(r.Proxies) > 0 {
			var c, m, a []string
			for _, p := range r.Proxies {
				c = append(c, fmt.Sprintf("%.4f", p.CPUPer1k))
				m = append(m, fmt.Sprintf("%.1f", p.RSSPeakMB))
				a = append(a, fmt.Sprintf("%.1f", p.RSSAnonMB))
			}
			cpu, rss, anon = strings.Join(c, " / "), strings.Join(m, " / "), strings.Join(a, " / ")
		}
		achieved := fmt.Sprintf("%.0f", r.ActualRPS)
		if r.ActualRPS < 0.95*float64(r.RPS) {
			// fortio times each request from when it was sent, so a setup that cannot
			// keep the rate shows its latency at the rate it managed, not the one asked.
			achieved += " (!)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%+.3f\t%+.3f\t%s\t%s\t%s\t%.0f\t%d\t\n",
			r.Setup, r.RPS, achieved, r.P50, r.P90, r.P99, r.P999, r.AddedP50, r.AddedP99, cpu, rss, anon, r.MaxRPS, r.Errors)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "per proxy: client side / server side; direct has no proxy; (!): the setup could not sustain the rate")
	var maxLoad float64
	for _, r := range rows {
		maxLoad = math.Max(maxLoad, r.LoadAvg1m)
	}
	// The benchmark itself keeps about two cores' worth of processes runnable at
	// high rates, so only more than twice the cores means someone else was busy.
	if cores := float64(runtime.NumCPU()); maxLoad > 2*cores {
		fmt.Fprintf(w, "WARNING: load average reached %.1f on %d cores before a run: other work shared the CPUs, treat the figures as noisy\n", maxLoad, runtime.NumCPU())
	}
	for _, r := range rows {
		if r.Setup == "direct" {
			fmt.Fprintf(w, "yardstick: the echo server itself used %.4f CPU s/1k at %d rps\n", r.ServerCPUPer1k, r.RPS)
		}
	}
}

func writeJSON(path string, rows []row) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("make results dir: %w", err)
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	return nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// startServer re-runs this binary as the echo server and waits for it.
func startServer(ctx context.Context, dir string) (*setup, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	p, err := startProc(dir, "server", self, "serve")
	if err != nil {
		return nil, err
	}
	s := &setup{name: "server", procs: []*proc{p}}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, "http://"+serverAddr+"/echo?size=1024"); err != nil {
		s.stop()
		return nil, fmt.Errorf("echo server: %w", err)
	}
	return s, nil
}

// loadAvg is the one-minute load average (0 if unreadable).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// peers are the setups Weft's figures are compared with, in the order printed.
var peers = []string{"haproxy", "nginx", "caddy"}

// addRatios fills WeftRatioTo of each weft row from the peers' rows at the same rate.
func addRatios(rows []row) {
	byKey := map[string]row{}
	for _, r := range rows {
		byKey[fmt.Sprint(r.Setup, r.RPS)] = r
	}
	div := func(w, p float64) *float64 {
		if p <= 0 || w < 0 {
			return nil
		}
		v := round(w/p, 2)
		return &v
	}
	deref := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	for i, w := range rows {
		if w.Setup != "weft" {
			continue
		}
		for _, name := range peers {
			p, ok := byKey[fmt.Sprint(name, w.RPS)]
			if !ok {
				continue
			}
			if rows[i].WeftRatioTo == nil {
				rows[i].WeftRatioTo = map[string]ratio{}
			}
			rows[i].WeftRatioTo[name] = ratio{
				AddedP50: div(w.AddedP50, p.AddedP50),
				AddedP99: div(w.AddedP99, p.AddedP99),
				CPUPer1k: div(deref(w.CPUPer1k), deref(p.CPUPer1k)),
				RSSPeak:  div(deref(w.RSSPeakMB), deref(p.RSSPeakMB)),
				MaxRPS:   div(w.MaxRPS, p.MaxRPS),
			}
		}
	}
}

// printRatios prints Weft's figures over each peer's, one line per rate and peer.
func printRatios(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	printed := false
	for _, r := range rows {
		for _, name := range peers {
			q, ok := r.WeftRatioTo[name]
			if !ok {
				continue
			}
			if !printed {
				fmt.Fprintln(w)
				fmt.Fprintln(tw, "weft / peer\trps\t+p50\t+p99\tCPU s/1k\tpeak RSS\tmax rps\t")
				printed = true
			}
			f := func(v *float64) string {
				if v == nil {
					return "n/a"
				}
				return fmt.Sprintf("%.2f", *v)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", name, r.RPS, f(q.AddedP50), f(q.AddedP99), f(q.CPUPer1k), f(q.RSSPeak), f(q.MaxRPS))
		}
	}
	if !printed {
		return
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "below 1: Weft costs less (max rps: above 1 is better); n/a: the peer's figure is not positive; threads per proxy: %d\n", rows[0].Threads)
}
