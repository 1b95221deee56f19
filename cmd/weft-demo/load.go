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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LoadStats is what the load generator counted, as `load --json` prints it and its
// /stats endpoint serves it. Counters are cumulative since the first request, so a
// reader can take two samples and subtract.
type LoadStats struct {
	Target string  `json:"target"`
	RPS    float64 `json:"rps"` // the configured rate
	// Sent counts requests started; Requests counts those completed (a response or an
	// error); Failures counts completed requests that were errors or had status >= 500
	// (or any non-2xx/3xx status with --strict).
	Sent     uint64            `json:"sent"`
	Requests uint64            `json:"requests"`
	Failures uint64            `json:"failures"`
	Errors   uint64            `json:"errors"` // transport errors (no response)
	ByStatus map[string]uint64 `json:"byStatus"`
	// ByVersion counts responses by the backend's version header (X-Weft-Demo-Version).
	ByVersion map[string]uint64 `json:"byVersion"`
	// ElapsedSeconds runs from the first request to now (or to the end of a bounded run).
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	// LatencyMs are quantiles of the completed requests' latencies.
	LatencyMs map[string]float64 `json:"latencyMs"`
	// FailuresBySendSecond counts failures by the Unix second in which their request was
	// sent (the last ten minutes), so that a reader can tell requests sent after an
	// event from earlier ones that only completed (timed out) after it.
	FailuresBySendSecond map[string]uint64 `json:"failuresBySendSecond,omitempty"`
	// LastError is the most recent failure's description, for humans.
	LastError string `json:"lastError,omitempty"`
	Done      bool   `json:"done"`
}

// latencyHist is a log-bucketed histogram: bucket i holds latencies up to
// histBase*histGrowth^i, so quantiles are exact to about 2% at any scale with a few
// hundred counters, and a generator running for days uses constant memory.
type latencyHist struct {
	counts [histBuckets]uint64
	total  uint64
}

const (
	histBase    = 0.01 // ms
	histGrowth  = 1.02
	histBuckets = 1024 // up to ~6.3e6 ms
)

func (h *latencyHist) add(ms float64) {
	i := 0
	if ms > histBase {
		i = int(math.Ceil(math.Log(ms/histBase) / math.Log(histGrowth)))
	}
	h.counts[min(i, histBuckets-1)]++
	h.total++
}

func (h *latencyHist) quantile(q float64) float64 {
	if h.total == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			return histBase * math.Pow(histGrowth, float64(i))
		}
	}
	return math.Inf(1)
}

// loader sends requests at a constant rate and counts the outcomes.
type loader struct {
	target      string
	rps         float64
	headers     http.Header
	client      *http.Client
	concurrency int
	strict      bool

	mu    sync.Mutex
	stats LoadStats
	hist  latencyHist
	start time.Time
	end   time.Time
}

// headerFlags is a repeatable "Name: value" flag.
type headerFlags http.Header

func (h headerFlags) String() string { return fmt.Sprint(http.Header(h)) }
func (h headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q is not Name: value", s)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-demo load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	l := &loader{headers: http.Header{}}
	fs.StringVar(&l.target, "target", "http://web:8080/", "URL to request (GET)")
	fs.Float64Var(&l.rps, "rps", 50, "requests per second, sent at a constant rate whatever the latency")
	fs.IntVar(&l.concurrency, "concurrency", 256, "most requests in flight; at the limit the next request waits, and the rate drops")
	fs.BoolVar(&l.strict, "strict", false, "count every status outside 2xx/3xx as a failure (default: only >= 500 and errors)")
	fs.Var(headerFlags(l.headers), "header", "request header 'Name: value' (repeatable)")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until stopped)")
	requests := fs.Uint64("requests", 0, "stop after this many requests (0: no limit)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	statsAddr := fs.String("stats-addr", "", "serve the cumulative counts as JSON at http://<addr>/stats (e.g. :9102)")
	report := fs.Duration("report", 10*time.Second, "print a summary line this often (0: never)")
	jsonOut := fs.Bool("json", false, "at the end, print the counts as JSON on stdout (for scripts and tests)")
	linger := fs.Bool("linger", false, "after a bounded run, keep serving /stats until stopped")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft-demo load [flags]\n\nSends GET requests to --target at a constant rate and counts requests, failures,\n"+
			"statuses, backend versions and latencies.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if l.rps <= 0 || l.concurrency <= 0 {
		return errors.New("--rps and --concurrency must be positive")
	}
	l.client = &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: l.concurrency, IdleConnTimeout: idleConnTimeout,
			DisableCompression: true},
	}
	l.stats = LoadStats{Target: l.target, RPS: l.rps, ByStatus: map[string]uint64{}, ByVersion: map[string]uint64{},
		FailuresBySendSecond: map[string]uint64{}}

	if *statsAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(l.snapshot())
		})
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		srv := &http.Server{Addr: *statsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = serve(ctx, srv) }()
	}
	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if *report > 0 {
		go func() {
			t := time.NewTicker(*report)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					s := l.snapshot()
					fmt.Fprintf(stderr, "load: %d requests in %.0fs (%.1f/s), %d failures, p50 %.1fms p99 %.1fms%s\n",
						s.Requests, s.ElapsedSeconds, float64(s.Requests)/math.Max(s.ElapsedSeconds, 1e-9), s.Failures,
						s.LatencyMs["p50"], s.LatencyMs["p99"], lastErr(s.LastError))
				}
			}
		}()
	}
	l.run(runCtx, *requests)
	s := l.snapshot()
	if *jsonOut {
		if err := json.NewEncoder(stdout).Encode(s); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "load: done: %d requests in %.2fs, %d failures, statuses %v, versions %v, latency ms %v\n",
			s.Requests, s.ElapsedSeconds, s.Failures, s.ByStatus, s.ByVersion, s.LatencyMs)
	}
	if *linger && *statsAddr != "" {
		<-ctx.Done()
	}
	return nil
}

func lastErr(s string) string {
	if s == "" {
		return ""
	}
	return " (last failure: " + s + ")"
}

// run sends requests on schedule until ctx ends or n requests were sent (0: no limit),
// then waits for those in flight. Request i is due at start + i/rps: a slow response
// does not delay the next request (open loop), unless --concurrency is reached.
func (l *loader) run(ctx context.Context, n uint64) {
	interval := time.Duration(float64(time.Second) / l.rps)
	sem := make(chan struct{}, l.concurrency)
	var wg sync.WaitGroup
	l.mu.Lock()
	l.start = time.Now()
	l.mu.Unlock()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := uint64(0); n == 0 || i < n; i++ {
		due := l.start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				goto done
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			goto done
		case sem <- struct{}{}:
		}
		l.mu.Lock()
		l.stats.Sent++
		l.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.one()
		}()
	}
done:
	wg.Wait()
	l.mu.Lock()
	l.end = time.Now()
	l.stats.Done = true
	l.mu.Unlock()
}

// one sends a request and records its outcome. Requests in flight when the run ends
// still complete (they are not cancelled), so Sent == Requests at the end.
func (l *loader) one() {
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, l.target, nil)
	if err != nil {
		l.record(start, 0, "", err)
		return
	}
	for k, vs := range l.headers {
		req.Header[k] = vs
	}
	resp, err := l.client.Do(req)
	if err != nil {
		l.record(start, 0, "", err)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.record(start, resp.StatusCode, resp.Header.Get(HeaderVersion), err)
}

// failureSecondsKept bounds FailuresBySendSecond for generators that run for days.
const failureSecondsKept = 600

func (l *loader) record(sent time.Time, status int, version string, err error) {
	latency := time.Since(sent)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Requests++
	l.hist.add(float64(latency) / float64(time.Millisecond))
	failed := func(why string) {
		l.stats.Failures++
		l.stats.LastError = why
		sec := sent.Unix()
		l.stats.FailuresBySendSecond[strconv.FormatInt(sec, 10)]++
		if len(l.stats.FailuresBySendSecond) > failureSecondsKept {
			for k := range l.stats.FailuresBySendSecond {
				if s, _ := strconv.ParseInt(k, 10, 64); s <= sec-failureSecondsKept {
					delete(l.stats.FailuresBySendSecond, k)
				}
			}
		}
	}
	switch {
	case err != nil:
		l.stats.Errors++
		l.stats.ByStatus["error"]++
		failed(err.Error())
		return
	case status >= 500, l.strict && status >= 400:
		failed("status " + strconv.Itoa(status))
	}
	l.stats.ByStatus[strconv.Itoa(status)]++
	if version != "" {
		l.stats.ByVersion[version]++
	}
}

// snapshot returns a deep copy of the counts with the elapsed time and quantiles.
func (l *loader) snapshot() LoadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.ByStatus = make(map[string]uint64, len(l.stats.ByStatus))
	for k, v := range l.stats.ByStatus {
		s.ByStatus[k] = v
	}
	s.ByVersion = make(map[string]uint64, len(l.stats.ByVersion))
	for k, v := range l.stats.ByVersion {
		s.ByVersion[k] = v
	}
	s.FailuresBySendSecond = make(map[string]uint64, len(l.stats.FailuresBySendSecond))
	for k, v := range l.stats.FailuresBySendSecond {
		s.FailuresBySendSecond[k] = v
	}
	switch {
	case l.start.IsZero():
	case !l.end.IsZero():
		s.ElapsedSeconds = l.end.Sub(l.start).Seconds()
	default:
		s.ElapsedSeconds = time.Since(l.start).Seconds()
	}
	s.LatencyMs = map[string]float64{}
	if l.hist.total > 0 {
		for name, q := range map[string]float64{"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1} {
			s.LatencyMs[name] = math.Round(l.hist.quantile(q)*100) / 100
		}
	}
	return s
}
