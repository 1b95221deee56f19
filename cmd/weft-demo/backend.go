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
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Response headers of the backend, read by the load generator and the tests.
const (
	HeaderVersion = "X-Weft-Demo-Version"
	HeaderPod     = "X-Weft-Demo-Pod"
)

// backend is the HTTP backend's behaviour.
type backend struct {
	version     string
	failureRate float64       // share of requests answered 500, 0..1
	latency     time.Duration // added to every response
	jitter      time.Duration // plus a uniform random part in [0, jitter)
	pod         string
}

func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-demo backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8080", "listen address")
	b := &backend{pod: podName()}
	fs.StringVar(&b.version, "version", "v1", "version label, returned in the "+HeaderVersion+" header and the body")
	fs.Float64Var(&b.failureRate, "failure-rate", 0, "share of requests (0..1) answered with 500")
	fs.DurationVar(&b.latency, "latency", 0, "latency added to every response")
	fs.DurationVar(&b.jitter, "jitter", 0, "random latency in [0, jitter) added on top of --latency")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft-demo backend [flags]\n\nAnswers every path with JSON naming its version and pod. Per request, the query\n"+
			"parameters sleep=<duration> (instead of --latency) and status=<code> (instead of the\nfailure draw) override the flags; /healthz always answers 200 at once.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if b.failureRate < 0 || b.failureRate > 1 {
		return fmt.Errorf("--failure-rate %v is not in [0, 1]", b.failureRate)
	}
	fmt.Fprintf(stdout, "backend %s listening on %s (failure rate %v, latency %s+%s)\n", b.version, *addr, b.failureRate, b.latency, b.jitter)
	return serve(ctx, &http.Server{Addr: *addr, Handler: b, ReadHeaderTimeout: 10 * time.Second})
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		io.WriteString(w, "ok\n")
		return
	}
	delay := b.latency
	if b.jitter > 0 {
		delay += rand.N(b.jitter)
	}
	if s := r.URL.Query().Get("sleep"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			http.Error(w, "bad sleep: "+err.Error(), http.StatusBadRequest)
			return
		}
		delay = d
	}
	status := http.StatusOK
	if b.failureRate > 0 && rand.Float64() < b.failureRate {
		status = http.StatusInternalServerError
	}
	if s := r.URL.Query().Get("status"); s != "" {
		code, err := strconv.Atoi(s)
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad status: "+s, http.StatusBadRequest)
			return
		}
		status = code
	}
	if delay > 0 {
		// A client that gives up (a proxy timeout) must not keep the handler busy.
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set(HeaderVersion, b.version)
	w.Header().Set(HeaderPod, b.pod)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"version": b.version, "pod": b.pod, "status": status, "path": r.URL.Path})
}
