package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
)

// The inbound rate limit (issue 20) through real proxies over real sockets: clients
// with real mesh certificates call B, whose inbound policy carries the rate limit the
// control plane would compile from an HTTPLocalRateLimitPolicy.

const svcLimited = "10.96.1.1:80"

// admitAll is an authorization with no conditions: every client, as
// accessPolicy: all-unauthenticated compiles.
var admitAll = &api.Authorization{Ref: &api.PolicyRef{Kind: "default", Name: "all-unauthenticated"}}

func limitedServer(backend string, rl *api.RateLimit) *api.InboundServer {
	s := portServer("limited", backend, admitAll)
	s.RateLimit = rl
	return s
}

func rlRef() *api.PolicyRef {
	return &api.PolicyRef{Group: "policy.weft.dev", Kind: "HTTPLocalRateLimitPolicy", Namespace: "b", Name: "limits"}
}

// clientProxy starts a client proxy whose certificate is sa's in namespace a, with one
// destination, svcLimited, the backend behind B; it returns the address the app dials.
func clientProxy(t *testing.T, mp *meshPair, sa, backend string) string {
	t.Helper()
	cfg := &config.Config{
		// Generous: on a loaded machine a connection whose first bytes take longer
		// than the pair's 300ms would be forwarded as opaque TCP, which no HTTP rate
		// limit reads (docs/ratelimit.md).
		DetectTimeout: config.Duration{Duration: 10 * time.Second},
		Destinations: []config.Destination{{Name: svcLimited, Addresses: []string{svcLimited},
			Endpoints: []config.Endpoint{endpoint(backend, mp.b, spiffe("b", serverSA))}}},
	}
	return startProxy(t, cfg, newStore(t, mp.ca.IssueValid(t, spiffe("a", sa)), mp.ca)).outbound(svcLimited)
}

// okBackend answers 200 at once: the app behind the limit.
func okBackend(t *testing.T) string {
	return serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
}

// pacedLoad sends requests to addr at rate per second for d, each at its scheduled
// time (an open-loop client: a slow answer does not slow the offered rate), and
// counts the answers by status.
func pacedLoad(t *testing.T, c *http.Client, addr string, rate int, d time.Duration) (sent int, codes map[int]int) {
	t.Helper()
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		errs    atomic.Int64
		inFlite = make(chan struct{}, 256)
	)
	codes = map[int]int{}
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		inFlite <- struct{}{}
		wg.Add(1)
		sent++
		go func() {
			defer func() { <-inFlite; wg.Done() }()
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				errs.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if e := errs.Load(); e > 0 {
		t.Errorf("%d requests failed", e)
	}
	return sent, codes
}

func pooledClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
}

// TestRateLimitAccuracy: a total limit of 100 and of 1,000 requests per second admits
// that rate within 5% over 10 s, under a paced load of 1.5 times the limit, once the
// bucket's burst (one second's worth) is spent.
func TestRateLimitAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("26 s of paced load; CI runs it (make test has no -short)")
	}
	for _, rate := range []int{100, 1000} {
		t.Run(strconv.Itoa(rate), func(t *testing.T) {
			mp := newMeshPair(t, pairOpts{})
			be := okBackend(t)
			mp.b.srv.SetInboundPolicy(denyAllBut("v1", limitedServer(be, &api.RateLimit{Ref: rlRef(), Total: uint32(rate)})))
			app := clientProxy(t, mp, clientSA, be)
			c := pooledClient()
			offered := rate * 3 / 2
			// Spend the burst: a full bucket holds one second's worth, and the load
			// exceeds the rate by half of it, so two seconds empty it; three to be
			// sure.
			pacedLoad(t, c, app, offered, 3*time.Second)
			rejected := func() float64 {
				return metricValue(mp.b.metricsText(), "weft_inbound_http_ratelimit_rejected_total", `ratelimit_name="limits"`)
			}
			before := rejected()
			start := time.Now()
			sent, codes := pacedLoad(t, c, app, offered, 10*time.Second)
			elapsed := time.Since(start)
			want := float64(rate) * elapsed.Seconds()
			got := float64(codes[http.StatusOK])
			t.Logf("rate %d: offered %d in %v, admitted %d (%.1f/s), refused %d", rate, sent, elapsed.Round(time.Millisecond),
				codes[200], got/elapsed.Seconds(), codes[http.StatusTooManyRequests])
			if v := rejected(); v-before != float64(codes[429]) {
				t.Errorf("weft_inbound_http_ratelimit_rejected_total grew by %v, want the %d refused", v-before, codes[429])
			}
			if codes[200]+codes[429] != sent {
				t.Errorf("answers %v do not add up to %d", codes, sent)
			}
			if got < want*0.95 || got > want*1.05 {
				t.Errorf("admitted %v in %v, want %v ±5%%", got, elapsed, want)
			}
		})
	}
}

// TestRateLimitIdentities: identity's rate applies to each client identity on its
// own, an override gives a named identity its own rate, and clients without an
// identity share one bucket.
func TestRateLimitIdentities(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	be := okBackend(t)
	vip := spiffe("a", "vip")
	mp.b.srv.SetInboundPolicy(denyAllBut("v1", limitedServer(be, &api.RateLimit{Ref: rlRef(), Identity: 20,
		Overrides: []*api.RateLimitOverride{{RequestsPerSecond: 200, Ids: []string{vip}}}})))
	plain := mp.b.inboundPlain(be)
	apps := map[string]string{
		"client": clientProxy(t, mp, clientSA, be),
		"other":  clientProxy(t, mp, "other", be),
		"vip":    clientProxy(t, mp, "vip", be),
	}
	c := pooledClient()
	// Half a second at 300/s from each client at once. Each identity gets its burst
	// (one second's worth) and what refills while the load runs; on a busy machine the
	// load takes longer than planned, so the bound is computed from the time it took.
	type result struct {
		codes   map[int]int
		elapsed time.Duration
	}
	var wg sync.WaitGroup
	results := map[string]result{}
	var mu sync.Mutex
	for name, addr := range map[string]string{"client": apps["client"], "other": apps["other"], "vip": apps["vip"], "plain": plain} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, codes := pacedLoad(t, c, addr, 300, 500*time.Millisecond)
			mu.Lock()
			results[name] = result{codes, time.Since(start)}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, rate := range map[string]float64{"client": 20, "other": 20, "plain": 20, "vip": 200} {
		r := results[name]
		got := r.codes[200]
		lo := min(int(rate), r.codes[200]+r.codes[429]) // at least the whole bucket, or all that was offered
		hi := int(rate + rate*r.elapsed.Seconds() + 1)
		t.Logf("%s: admitted %d of %d in %v (want %d..%d)", name, got, r.codes[200]+r.codes[429], r.elapsed.Round(time.Millisecond), lo, hi)
		if got < lo || got > hi {
			t.Errorf("%s: %d admitted (%v), want %d..%d", name, got, r.codes, lo, hi)
		}
	}
	if results["vip"].codes[200] <= results["client"].codes[200]*2 {
		t.Errorf("the override did not raise vip's rate: vip %v, client %v", results["vip"].codes, results["client"].codes)
	}
	text := mp.b.metricsText()
	if v := metricValue(text, "weft_inbound_http_ratelimit_rejected_total", `srv_name="limited"`, `ratelimit_kind="HTTPLocalRateLimitPolicy"`,
		`ratelimit_name="limits"`, `client_id="`+spiffe("a", clientSA)+`"`); v != float64(results["client"].codes[429]) {
		t.Errorf("weft_inbound_http_ratelimit_rejected_total for client = %v, want %d\n%s", v, results["client"].codes[429], text)
	}
	if v := metricValue(text, "weft_inbound_http_ratelimit_rejected_total", `srv_name="limited"`, `tls="no_identity"`); v != float64(results["plain"].codes[429]) {
		t.Errorf("weft_inbound_http_ratelimit_rejected_total without identity = %v, want %d", v, results["plain"].codes[429])
	}
}

// TestRateLimitAnswers: over the limit, HTTP gets 429 with Retry-After and a body
// naming the policy; a real grpc-go client gets RESOURCE_EXHAUSTED; a policy update
// that leaves the limit alone keeps its buckets; removing the limit admits again.
func TestRateLimitAnswers(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	be := okBackend(t)
	rl := &api.RateLimit{Ref: rlRef(), Total: 1}
	grpcServer := limitedServer(mp.be.grpc, rl)
	grpcServer.Ref = serverRef("grpc")
	mp.b.srv.SetInboundPolicy(denyAllBut("v1", limitedServer(be, rl), grpcServer))
	app := clientProxy(t, mp, clientSA, be)
	c := h1Client()
	get := func() *http.Response {
		t.Helper()
		resp, err := c.Get("http://" + app + "/")
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp := get()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		!strings.Contains(string(body), "total rate limit of policy.weft.dev/HTTPLocalRateLimitPolicy/limits") {
		t.Fatalf("second request: %d Retry-After %q %q, want 429, 1 and the policy named", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	// Another version of the policy, same limit: the bucket is kept (still empty).
	mp.b.srv.SetInboundPolicy(denyAllBut("v2", limitedServer(be, &api.RateLimit{Ref: rlRef(), Total: 1}), grpcServer,
		portServer("unrelated", "127.0.0.1:1", admitAll)))
	if resp := get(); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after an unrelated policy change: %d, want 429 (the bucket kept)", resp.StatusCode)
	}

	t.Run("gRPC RESOURCE_EXHAUSTED", func(t *testing.T) {
		cc, err := grpc.NewClient("passthrough:///"+mp.addr[svcGRPC], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tc := testgrpc.NewTestServiceClient(cc)
		if _, err := tc.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatalf("first call: %v", err)
		}
		_, err = tc.EmptyCall(ctx, &testgrpc.Empty{})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "HTTPLocalRateLimitPolicy/limits") {
			t.Fatalf("second call: %v, want ResourceExhausted naming the policy", err)
		}
	})

	// No limit: admitted again at once.
	mp.b.srv.SetInboundPolicy(denyAllBut("v3", limitedServer(be, nil)))
	for i := range 5 {
		if resp := get(); resp.StatusCode != 200 {
			t.Fatalf("request %d without a limit: %d", i, resp.StatusCode)
		}
	}
}

// TestRateLimitRefusesOpaqueFallback: on a port with an HTTP rate limit, a connection
// that would be forwarded as opaque TCP is refused, since no request of it would be
// limited: a plaintext client whose first bytes are not HTTP, and a meshed client
// that opens weft.tcp. Without the limit, both reach the app.
func TestRateLimitRefusesOpaqueFallback(t *testing.T) {
	for _, limited := range []bool{false, true} {
		t.Run(map[bool]string{false: "no limit", true: "limit"}[limited], func(t *testing.T) {
			mp := newMeshPair(t, pairOpts{})
			be := okBackend(t)
			var rl *api.RateLimit
			if limited {
				rl = &api.RateLimit{Ref: rlRef(), Total: 1000}
			}
			mp.b.srv.SetInboundPolicy(denyAllBut("v1", limitedServer(be, rl)))
			// The app is Go's HTTP server: bytes that are not HTTP get its 400.
			reachesApp := func(addr string) bool {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte("\x16not http at all\r\n\r\n")); err != nil {
					return false
				}
				b, _ := io.ReadAll(io.LimitReader(c, 64))
				return strings.HasPrefix(string(b), "HTTP/1.1 400")
			}
			cfg := &config.Config{Destinations: []config.Destination{{Name: svcLimited, Addresses: []string{svcLimited}, Protocol: config.ProtocolOpaque,
				Endpoints: []config.Endpoint{endpoint(be, mp.b, spiffe("b", serverSA))}}}}
			meshed := startProxy(t, cfg, newStore(t, mp.ca.IssueValid(t, spiffe("a", clientSA)), mp.ca)).outbound(svcLimited)
			for name, addr := range map[string]string{"plaintext": mp.b.inboundPlain(be), "meshed weft.tcp": meshed} {
				if got := reachesApp(addr); got == limited {
					t.Errorf("%s: reached the app = %v, want %v", name, got, !limited)
				}
			}
			if limited {
				text := mp.b.metricsText()
				for _, client := range []string{`tls="no_identity"`, `client_id="` + spiffe("a", clientSA) + `"`} {
					if v := metricValue(text, "inbound_tcp_authz_deny_total", `srv_name="limited"`, client); v != 1 {
						t.Errorf("inbound_tcp_authz_deny_total{%s} = %v, want 1", client, v)
					}
				}
			}
		})
	}
}
