package server_test

import (
	"bytes"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testpki"
)

// BenchmarkPairHTTP1 measures one HTTP/1.1 request with a 1 KiB response through a
// client proxy and a server proxy with mTLS between them (run with -cpuprofile to
// see what the proxies cost). cpu-ns/op is the process's CPU time (user and system,
// getrusage) per request, the client's and the app's included: on a shared machine
// it moves less with the load than ns/op does.
func BenchmarkPairHTTP1(b *testing.B) {
	ca := testpki.NewCA(b, "anchor")
	payload := bytes.Repeat([]byte("x"), 1024)
	backend := serveHTTP(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(payload) }))
	bp := startProxy(b, &config.Config{}, newStore(b, ca.IssueValid(b, spiffe("b", serverSA)), ca))
	ap := startProxy(b, &config.Config{Destinations: []config.Destination{{
		Addresses: []string{svcHTTPBin},
		Endpoints: []config.Endpoint{{Address: "127.0.0.1", Port: mustPort(backend), Identity: spiffe("b", serverSA), ProxyPort: bp.inboundPort()}},
	}}}, newStore(b, ca.IssueValid(b, spiffe("a", clientSA)), ca))
	url := "http://" + ap.outbound(svcHTTPBin) + "/"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(8)
	b.ResetTimer()
	cpu0 := processCPU(b)
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
