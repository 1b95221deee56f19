package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testpki"
	"github.com/weftmesh/weft/proxy/server"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestIdlePoolsAreSwept: after requests to short-lived plaintext backends and to
// short-lived peer proxies, all of which then go away, the proxy's pools empty and its
// open file descriptors return to where they were, on the sweep timer alone (nothing
// uses those addresses again).
func TestIdlePoolsAreSwept(t *testing.T) {
	const idle = 200 * time.Millisecond
	ca := testpki.NewCA(t, "weft test anchor")
	a := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("a", clientSA)), ca), func(o *server.Options) {
		o.IdleConnTimeout = idle
	})
	type stopper interface{ Shutdown(context.Context) error }
	var stops []stopper
	cfg := &config.Config{}
	var plainAddrs, meshAddrs []string
	const n = 5
	// Start everything before the baseline is taken, so that only what the proxy
	// under test holds is measured.
	for i := range n {
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		ln := listen(t)
		go hs.Serve(ln)
		stops = append(stops, hs)
		plainAddrs = append(plainAddrs, a.outbound(ln.Addr().String()))

		be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		bln := listen(t)
		go be.Serve(bln)
		stops = append(stops, be)
		b := startProxy(t, &config.Config{}, newStore(t, ca.IssueValid(t, spiffe("b", serverSA)), ca))
		stops = append(stops, b.srv)
		svc := fmt.Sprintf("10.96.1.%d:80", i+1)
		cfg.Destinations = append(cfg.Destinations, config.Destination{Name: svc, Addresses: []string{svc},
			Endpoints: []config.Endpoint{endpoint(bln.Addr().String(), b, spiffe("b", serverSA))}})
		meshAddrs = append(meshAddrs, a.outbound(svc))
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	a.srv.SetConfig(cfg)
	before := openFDs(t)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, addr := range append(plainAddrs, meshAddrs...) {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			req, _ := http.NewRequest(m, "http://"+addr+"/", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	conns, peers := a.srv.PooledForTest()
	t.Logf("after the requests: %d pooled connections, %d peer clients, %d fds (baseline %d)", conns, peers, openFDs(t), before)
	if conns == 0 || peers != n {
		t.Fatalf("pooled %d connections and %d peer clients; want some and %d (the test would prove nothing)", conns, peers, n)
	}
	// The endpoints go away (their pods are deleted).
	for _, s := range stops {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.Shutdown(ctx)
		cancel()
	}
	// What stopping the endpoints freed (their listeners and connections) is
	// measured after a moment in which no sweep runs; the proxy must then free what
	// it held: its connections to the endpoints.
	time.Sleep(idle / 2)
	stopped := openFDs(t)
	held := openDst(a)
	t.Logf("endpoints stopped: %d fds, the proxy holds %v connections to endpoints", stopped, held)
	deadline := time.Now().Add(10 * idle)
	for {
		conns, peers = a.srv.PooledForTest()
		fds, open := openFDs(t), openDst(a)
		if conns == 0 && peers == 0 && open == 0 && fds <= stopped-int(held) {
			t.Logf("swept: %d fds (baseline %d)", fds, before)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d pooled connections, %d peer clients, %v open connections to endpoints, %d fds (%d when the endpoints stopped, baseline %d)",
				10*idle, conns, peers, open, fds, stopped, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openDst is how many connections the proxy holds open to endpoints and peer
// proxies (tcp_open_connections, outbound, peer dst, every identity).
func openDst(p *proxy) float64 {
	var sum float64
	for _, line := range strings.Split(p.metricsText(), "\n") {
		if strings.HasPrefix(line, "tcp_open_connections{") && strings.Contains(line, `direction="outbound"`) && strings.Contains(line, `peer="dst"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}
