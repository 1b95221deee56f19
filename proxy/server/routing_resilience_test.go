package server_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/server"
)

// TestRoutedRetries: a backend failing 20% of requests becomes ≥ 99.5% success
// within the budget; a tight budget stops retries; bodies over 64 KiB are not
// retried.
func TestRoutedRetries(t *testing.T) {
	t.Run("20% failures become at least 99.5% success within the budget", func(t *testing.T) {
		const svc = "10.96.1.4:80"
		rng := rand.New(rand.NewPCG(7, 7))
		var mu sync.Mutex
		flaky := newApp(t, "flaky", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			mu.Lock()
			fail := rng.Float64() < 0.2
			mu.Unlock()
			if fail {
				w.WriteHeader(503)
				return true
			}
			return false
		})
		rp := startRouted(t, svc)
		cfg := dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/flaky:80", 1)}, Retry: &api.RetryPolicy{}}}, nil, be("shop/flaky:80", flaky))
		rp.src.set(cfg)
		c := h1Client()
		const n = 1000
		ok := 0
		for i := range n {
			var body []byte
			method := "GET"
			if i%2 == 1 {
				method, body = "POST", bytes.Repeat([]byte("b"), 2048)
			}
			res := rp.do(c, method, "/", nil, body)
			if res.err == nil && res.status == 200 {
				ok++
				if method == "POST" && !strings.Contains(res.body, "body=2048") {
					t.Fatalf("retried body arrived as %q", res.body)
				}
			}
		}
		text := rp.metricsText()
		retries := metricValue(text, "weft_route_retry_total", `rt_route="all"`)
		budget := 0.2*n + 10*10 // ratio × originals + min per second × ttl
		t.Logf("success %d/%d, retries %v (budget %v), backend hits %d", ok, n, retries, budget, flaky.hits.Load())
		if float64(ok)/n < 0.995 {
			t.Fatalf("success rate %.2f%%, want ≥ 99.5%%", 100*float64(ok)/n)
		}
		if retries <= 0 || retries > budget {
			t.Fatalf("retries = %v, want > 0 and ≤ %v", retries, budget)
		}
		if got := float64(flaky.hits.Load()); got != n+retries {
			t.Fatalf("backend saw %v requests, want originals + retries = %v", got, n+retries)
		}
		if v := metricValue(text, "route_actual_request_total", `rt_route="all"`); v != n+retries {
			t.Fatalf("route_actual_request_total = %v, want %v", v, n+retries)
		}
	})
	t.Run("retries stop at the budget and are counted", func(t *testing.T) {
		const svc = "10.96.1.5:80"
		down := newApp(t, "down", failing(503))
		// Keep the failing endpoint in rotation: this test is about the budget.
		rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailureThreshold = 1 << 30 })
		cfg := dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/down:80", 1)}, Retry: &api.RetryPolicy{MaxAttempts: 2}}}, nil, be("shop/down:80", down))
		cfg.RetryBudget = &api.RetryBudget{RetryRatio: 0.1, MinRetriesPerSecond: 0, Ttl: durationpb.New(10 * time.Second)}
		rp.src.set(cfg)
		c := h1Client()
		const n = 300
		for range n {
			if res := rp.do(c, "GET", "/", nil, nil); res.status != 503 {
				t.Fatalf("status %d, want the backend's 503", res.status)
			}
		}
		text := rp.metricsText()
		retries := metricValue(text, "weft_route_retry_total", `rt_route="all"`)
		skipped := metricValue(text, "weft_route_retry_skipped_total", `rt_route="all"`, `reason="budget"`)
		t.Logf("retries %v, skipped %v", retries, skipped)
		if retries > 0.1*n || retries < 0.1*n-2 {
			t.Fatalf("retries = %v, want the budget's %v", retries, 0.1*n)
		}
		if retries+skipped != n {
			t.Fatalf("retries %v + skipped %v != %d failed originals", retries, skipped, n)
		}
	})
	t.Run("max_attempts and backoff", func(t *testing.T) {
		const svc = "10.96.1.15:80"
		down := newApp(t, "down", failing(502))
		rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailureThreshold = 1 << 30 })
		rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/down:80", 1)},
			Retry:    &api.RetryPolicy{MaxAttempts: 3, Backoff: durationpb.New(100 * time.Millisecond)}}}, nil, be("shop/down:80", down)))
		start := time.Now()
		res := rp.do(h1Client(), "GET", "/", nil, nil)
		took := time.Since(start)
		if res.status != 502 || down.hits.Load() != 3 {
			t.Fatalf("status %d after %d attempts, want the backend's 502 after 3", res.status, down.hits.Load())
		}
		if took < 200*time.Millisecond || took > time.Second {
			t.Fatalf("took %v, want two 100ms backoffs", took)
		}
	})
	t.Run("a body over 64 KiB is not retried", func(t *testing.T) {
		const svc = "10.96.1.6:80"
		// Odd hits fail: each request's first attempt fails.
		odd := newApp(t, "odd", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
			if hit%2 == 1 {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(503)
				return true
			}
			return false
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, []*api.Route{{Name: "all", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
			Backends: []*api.WeightedBackend{wb("shop/odd:80", 1)}, Retry: &api.RetryPolicy{}}}, nil, be("shop/odd:80", odd)))
		c := h1Client()
		small := rp.do(c, "POST", "/", nil, bytes.Repeat([]byte("s"), 64<<10))
		if small.status != 200 || !strings.Contains(small.body, fmt.Sprintf("body=%d", 64<<10)) {
			t.Fatalf("64 KiB body: %d %q, want 200 after a retry with the whole body", small.status, small.body)
		}
		big := rp.do(c, "POST", "/", nil, bytes.Repeat([]byte("b"), 64<<10+1))
		if big.status != 503 {
			t.Fatalf("64 KiB + 1 body: status %d, want the first attempt's 503", big.status)
		}
		if v := metricValue(rp.metricsText(), "weft_route_retry_skipped_total", `rt_route="all"`, `reason="body"`); v != 1 {
			t.Fatalf("weft_route_retry_skipped_total{reason=body} = %v, want 1", v)
		}
		if odd.hits.Load() != 3 {
			t.Fatalf("backend saw %d requests, want 3 (2 for the retried body, 1 for the big one)", odd.hits.Load())
		}
	})
}

// TestRoutedEjection: an endpoint that fails by status is ejected after failing
// FailureThreshold times in a row, and traffic moves to the healthy ones. (One that
// refuses connections is ejected at its first refusal, and the request goes to
// another endpoint: TestRoutedUnprocessedResend.)
func TestRoutedEjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func() *app
	}{
		{"5xx answers", func() *app { return newApp(t, "bad", failing(500)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.7:80"
			g1, g2, bad := newApp(t, "g1", nil), newApp(t, "g2", nil), tc.bad()
			rp := startRouted(t, svc)
			rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", g1, g2, bad)))
			c := h1Client()
			// P2C decides how often the bad endpoint is tried, so count requests
			// until it has failed 7 times in a row (the threshold), within a bound.
			failures, sent := 0, 0
			for ; failures < 7 && sent < 3000; sent++ {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					failures++
				}
			}
			if failures < 7 {
				t.Fatalf("only %d of %d requests reached the bad endpoint", failures, sent)
			}
			badHits := bad.hits.Load()
			// Ejected for 1s ± 20%: the next requests (well under 800ms) all go to
			// the healthy endpoints.
			start := time.Now()
			for i := range 200 {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					t.Fatalf("request %d after the 7th failure failed (%d %q): not ejected", i, res.status, res.header.Get("Weft-Proxy-Error"))
				}
			}
			if took := time.Since(start); took > 700*time.Millisecond {
				t.Logf("200 requests took %v: the ejection may have ended meanwhile", took)
			}
			if bad.hits.Load() != badHits {
				t.Fatalf("the ejected endpoint got %d more requests", bad.hits.Load()-badHits)
			}
			text := rp.metricsText()
			bl := []string{`authority="` + routedAuthority + `"`, `backend="shop/web:80"`}
			if v := metricValue(text, "weft_balancer_endpoints", append(bl, `state="ejected"`)...); v != 1 {
				t.Fatalf("weft_balancer_endpoints{ejected} = %v, want 1", v)
			}
			if v := metricValue(text, "weft_balancer_endpoints", append(bl, `state="ready"`)...); v != 2 {
				t.Fatalf("weft_balancer_endpoints{ready} = %v, want 2", v)
			}
			if v := metricValue(text, "weft_balancer_ejections_total", bl...); v != 1 {
				t.Fatalf("weft_balancer_ejections_total = %v, want 1", v)
			}
			t.Logf("ejected after %d requests; good hits %d+%d", sent, g1.hits.Load(), g2.hits.Load())
		})
	}
}

// TestRoutedSlowEndpoint: an endpoint 10× slower than the others gets < 10% of
// requests.
func TestRoutedSlowEndpoint(t *testing.T) {
	const svc = "10.96.1.8:80"
	delay := func(d time.Duration) func(http.ResponseWriter, *http.Request, int64) bool {
		return func(http.ResponseWriter, *http.Request, int64) bool { time.Sleep(d); return false }
	}
	fast := []*app{newApp(t, "f1", delay(5*time.Millisecond)), newApp(t, "f2", delay(5*time.Millisecond)), newApp(t, "f3", delay(5*time.Millisecond))}
	slow := newApp(t, "slow", delay(50*time.Millisecond))
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", fast[0], fast[1], slow, fast[2])))
	var wg sync.WaitGroup
	var errs atomic.Int64
	const workers, each = 8, 60
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for range each {
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d requests failed", errs.Load())
	}
	share := float64(slow.hits.Load()) / (workers * each)
	t.Logf("slow endpoint: %d of %d (%.1f%%); fast: %d %d %d", slow.hits.Load(), workers*each, 100*share, fast[0].hits.Load(), fast[1].hits.Load(), fast[2].hits.Load())
	if share >= 0.10 {
		t.Fatalf("slow endpoint got %.1f%% of requests, want < 10%%", 100*share)
	}
}

// TestRoutedConfigChange swaps the configuration while requests flow: the next
// request follows the new one.
func TestRoutedConfigChange(t *testing.T) {
	const svc = "10.96.1.9:80"
	a, b := newApp(t, "a", nil), newApp(t, "b", nil)
	rp := startRouted(t, svc)
	toA := dest(svc, nil, fallbackTo(wb("shop/a:80", 1)), be("shop/a:80", a))
	toB := dest(svc, nil, fallbackTo(wb("shop/b:80", 1)), be("shop/b:80", b))
	rp.src.set(toA)
	stop := make(chan struct{})
	var flowErrs atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
					flowErrs.Add(1)
				}
			}
		}()
	}
	c := h1Client()
	for range 20 {
		if res := rp.do(c, "GET", "/", nil, nil); res.backend != "a" {
			t.Fatalf("before the change: backend %q, want a", res.backend)
		}
	}
	rp.src.set(toB)
	for i := range 20 {
		if res := rp.do(c, "GET", "/", nil, nil); res.backend != "b" {
			t.Fatalf("request %d after the change: backend %q, want b", i, res.backend)
		}
	}
	// Back to A, over an HTTP/2 connection that stays open across the change.
	h2 := h2cClient()
	rp.do(h2, "GET", "/", nil, nil)
	rp.src.set(toA)
	if res := rp.do(h2, "GET", "/", nil, nil); res.backend != "a" {
		t.Fatalf("after the second change on a kept HTTP/2 connection: backend %q, want a", res.backend)
	}
	close(stop)
	wg.Wait()
	if flowErrs.Load() > 0 {
		t.Fatalf("%d requests failed while the configuration changed", flowErrs.Load())
	}
}
