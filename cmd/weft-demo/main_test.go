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
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a serving subcommand until the test ends and waits until addr answers.
func start(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%v exited with %d", args, code)
		}
	})
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func load(t *testing.T, args ...string) LoadStats {
	t.Helper()
	var out, errw bytes.Buffer
	if code := run(context.Background(), append([]string{"load", "--json", "--report=0"}, args...), &out, &errw); code != 0 {
		t.Fatalf("load exited %d: %s", code, errw.String())
	}
	var s LoadStats
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("load output %q: %v", out.String(), err)
	}
	return s
}

// TestWorkloads runs the demo's workloads on loopback and drives them with the load
// generator, checking the counts the e2e suite relies on.
func TestWorkloads(t *testing.T) {
	backendV1, backendFlaky, grpcAddr, webAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, "backend", "--addr", backendV1, "--version", "v1")
	start(t, "backend", "--addr", backendFlaky, "--version", "flaky", "--failure-rate", "0.2")
	start(t, "grpc", "--addr", grpcAddr)
	start(t, "web", "--addr", webAddr, "--grpc", grpcAddr, "--backend", "http://"+backendV1)
	for _, a := range []string{backendV1, backendFlaky, webAddr} {
		waitHTTP(t, "http://"+a+"/healthz")
	}

	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, s LoadStats)
	}{{
		name: "exact count through web, gRPC and backend",
		args: []string{"--target", "http://" + webAddr + "/books/1", "--rps", "500", "--requests", "300"},
		check: func(t *testing.T, s LoadStats) {
			if s.Sent != 300 || s.Requests != 300 || s.Failures != 0 || s.ByStatus["200"] != 300 || s.ByVersion["v1"] != 300 {
				t.Errorf("want 300 successful v1 requests, got %+v", s)
			}
		},
	}, {
		name: "failure rate 0.2 gives about 20% 500s",
		args: []string{"--target", "http://" + backendFlaky + "/", "--rps", "2000", "--requests", "1000"},
		check: func(t *testing.T, s LoadStats) {
			// Binomial(1000, 0.2): standard deviation 12.6; 6 of them either side.
			if s.Requests != 1000 || s.Failures < 124 || s.Failures > 276 || s.ByStatus["500"] != s.Failures {
				t.Errorf("want ~200 failures in 1000 requests, all 500s, got %+v", s)
			}
			var bySecond uint64
			for _, n := range s.FailuresBySendSecond {
				bySecond += n
			}
			if bySecond != s.Failures {
				t.Errorf("failures by send second add up to %d, want %d", bySecond, s.Failures)
			}
		},
	}, {
		name: "timeouts count as errors",
		args: []string{"--target", "http://" + backendV1 + "/?sleep=2s", "--rps", "100", "--requests", "5", "--timeout", "100ms"},
		check: func(t *testing.T, s LoadStats) {
			if s.Requests != 5 || s.Errors != 5 || s.Failures != 5 || s.LastError == "" {
				t.Errorf("want 5 errors, got %+v", s)
			}
			if s.LatencyMs["p50"] < 95 || s.LatencyMs["max"] > 1000 {
				t.Errorf("want latencies about the 100ms timeout, got %v", s.LatencyMs)
			}
		},
	}, {
		name: "4xx is a failure only with --strict",
		args: []string{"--target", "http://" + backendV1 + "/?status=404", "--rps", "100", "--requests", "4", "--strict"},
		check: func(t *testing.T, s LoadStats) {
			if s.Failures != 4 || s.ByStatus["404"] != 4 {
				t.Errorf("want 4 failures, got %+v", s)
			}
		},
	}, {
		name: "constant rate over a duration",
		args: []string{"--target", "http://" + backendV1 + "/", "--rps", "200", "--duration", "1s"},
		check: func(t *testing.T, s LoadStats) {
			if math.Abs(float64(s.Requests)-200) > 4 || s.Failures != 0 {
				t.Errorf("want 200±4 requests in 1s at 200/s, got %+v", s)
			}
		},
	}, {
		name: "latency is measured",
		args: []string{"--target", "http://" + backendV1 + "/?sleep=50ms", "--rps", "100", "--requests", "20"},
		check: func(t *testing.T, s LoadStats) {
			if p := s.LatencyMs["p50"]; p < 49 || p > 200 {
				t.Errorf("want p50 about 50ms, got %v", s.LatencyMs)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, load(t, tc.args...)) })
	}
}

func TestLoadStatsEndpoint(t *testing.T) {
	backend, stats := freeAddr(t), freeAddr(t)
	start(t, "backend", "--addr", backend, "--version", "v2")
	waitHTTP(t, "http://"+backend+"/healthz")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"load", "--target", "http://" + backend + "/", "--rps", "100", "--requests", "10",
			"--stats-addr", stats, "--linger", "--report=0"}, io.Discard, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s LoadStats
		resp, err := http.Get("http://" + stats + "/stats")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
		}
		if err == nil && s.Done {
			if s.Requests != 10 || s.ByVersion["v2"] != 10 {
				t.Errorf("want 10 v2 responses, got %+v", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never said done: %+v, %v", s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{name: "no subcommand", want: 2},
		{name: "unknown", args: []string{"frobnicate"}, want: 2},
		{name: "help", args: []string{"load", "-h"}, want: 0},
		{name: "bad flag", args: []string{"backend", "--nope"}, want: 2},
		{name: "bad failure rate", args: []string{"backend", "--failure-rate", "2"}, want: 1},
		{name: "stray argument", args: []string{"grpc", "extra"}, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(context.Background(), tc.args, io.Discard, io.Discard); got != tc.want {
				t.Errorf("want exit %d, got %d", tc.want, got)
			}
		})
	}
}
