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
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weftmesh/weft/internal/destination"
	weftscheme "github.com/weftmesh/weft/internal/scheme"
)

// runServer is the child process: a manager with the destination service, as
// weft-controller builds it, plus a /stats endpoint on loopback for the parent. It
// prints "LISTEN <addr>", "STATS <addr>" and "SYNCED" on stdout.
func runServer(kubeconfig string) error {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.InfoLevel), zap.WriteTo(os.Stderr)))
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	// As weft-controller: the client's default rate limits.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 weftscheme.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return err
	}
	err = destination.AddToManager(mgr, destination.Options{
		Namespace: controlNS,
		Addr:      "127.0.0.1:0",
		OnListen:  func(a net.Addr) { fmt.Println("LISTEN", a.String()) },
		OnSynced:  func() { fmt.Println("SYNCED") },
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("STATS", lis.Addr().String())
	mux := http.NewServeMux()
	// Profiles of the service, for --profile-dir.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		// Two collections: the first moves sync.Pool caches (gRPC's buffers of the
		// last burst of sends) to the victim cache, the second frees them, so the
		// heap is what stays referenced.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss, peak := procStatus()
		st := serverStats{
			HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine(),
			RSS: rss, PeakRSS: peak, GoVersion: runtime.Version(),
		}
		m := &dto.Metric{}
		if err := destination.ChangeLatencySeconds.Write(m); err == nil {
			h := m.GetHistogram()
			st.ChangeCount = h.GetSampleCount()
			st.ChangeP50Ms = bucketQuantile(h, 0.50) * 1000
			st.ChangeP99Ms = bucketQuantile(h, 0.99) * 1000
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	go func() { _ = http.Serve(lis, mux) }()
	return mgr.Start(ctrl.SetupSignalHandler())
}

// bucketQuantile is the upper bound of the histogram bucket that holds quantile q:
// an upper estimate, at the resolution of the buckets (powers of two).
func bucketQuantile(h *dto.Histogram, q float64) float64 {
	want := uint64(math.Ceil(q * float64(h.GetSampleCount())))
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() >= want {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}
