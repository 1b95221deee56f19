package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/server"
)

// TestRoutedOpaqueTCP balances opaque connections per connection over the
// fallback's backends.
func TestRoutedOpaqueTCP(t *testing.T) {
	const svc = "10.96.1.10:5432"
	var hitsA, hitsB atomic.Int64
	echo := func(name string, hits *atomic.Int64) string {
		return serveTCP(t, func(c net.Conn) {
			hits.Add(1)
			io.WriteString(c, name)
			c.Close()
		})
	}
	addrA, addrB := echo("A", &hitsA), echo("B", &hitsB)
	rp := startRouted(t, svc)
	cfg := dest(svc, nil, fallbackTo(wb("shop/a:5432", 1), wb("shop/b:5432", 3)),
		&api.Backend{Key: "shop/a:5432", Endpoints: []*api.Endpoint{ep(addrA)}},
		&api.Backend{Key: "shop/b:5432", Endpoints: []*api.Endpoint{ep(addrB)}})
	cfg.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	rp.src.set(cfg)
	const n = 200
	for range n {
		c, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if s := string(b); s != "A" && s != "B" {
			t.Fatalf("read %q, want a backend's name", s)
		}
	}
	share := float64(hitsB.Load()) / n
	t.Logf("A %d, B %d", hitsA.Load(), hitsB.Load())
	if share < 0.65 || share > 0.85 {
		t.Fatalf("B got %.1f%% of connections, want about 75%%", 100*share)
	}
}

// TestRoutedThroughMesh routes and retries over mTLS to a peer proxy: a 50/50 split
// of two meshed backends, with a POST body replayed on retry across the mesh.
func TestRoutedThroughMesh(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	const svc = "10.96.1.11:80"
	odd := newApp(t, "odd", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
		if hit%2 == 1 {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
			return true
		}
		return false
	})
	even := newApp(t, "even", nil)
	meshed := func(a *app) *api.Endpoint {
		e := ep(a.addr)
		e.Identity, e.ProxyPort = spiffe("b", serverSA), uint32(mp.b.inboundPort())
		return e
	}
	src := newTestSource()
	a := startProxy(t, &config.Config{}, newStore(t, mp.ca.IssueValid(t, spiffe("a", clientSA)), mp.ca), func(o *server.Options) { o.Source = src })
	addr := a.outbound(svc)
	rp := &routedProxy{proxy: a, src: src, addr: addr}
	src.set(dest(svc, []*api.Route{{Name: "split", Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
		Backends: []*api.WeightedBackend{wb("shop/odd:80", 1), wb("shop/even:80", 1)}, Retry: &api.RetryPolicy{}}}, nil,
		&api.Backend{Key: "shop/even:80", Endpoints: []*api.Endpoint{meshed(even)}},
		&api.Backend{Key: "shop/odd:80", Endpoints: []*api.Endpoint{meshed(odd)}}))
	for _, c := range []*http.Client{h1Client(), h2cClient()} {
		for range 40 {
			res := rp.do(c, "POST", "/", nil, []byte("hello"))
			if res.err != nil || res.status != 200 || !strings.Contains(res.body, "body=5") {
				t.Fatalf("request: %+v", res)
			}
		}
	}
	t.Logf("odd %d, even %d", odd.hits.Load(), even.hits.Load())
	if odd.hits.Load() < 10 || even.hits.Load() < 10 {
		t.Fatalf("split did not reach both backends: odd %d, even %d", odd.hits.Load(), even.hits.Load())
	}
	text := a.metricsText()
	if v := metricValue(text, "weft_route_retry_total", `rt_route="split"`); v < 5 {
		t.Fatalf("weft_route_retry_total = %v, want the odd backend's failures retried", v)
	}
	if v := metricValue(text, "request_total", `server_id="`+spiffe("b", serverSA)+`"`); v != 80 {
		t.Fatalf("request_total over mTLS = %v, want 80", v)
	}
}

// TestRoutedGRPC drives grpc-go's interop client and server through GRPCRoute-style
// routes: a matched method works, an unmatched one is UNIMPLEMENTED, a request
// timeout is DEADLINE_EXCEEDED (trailers-only answers the real client understands),
// and a non-OK status in a trailers-only response is retried.
func TestRoutedGRPC(t *testing.T) {
	const svc = "10.96.1.12:50051"
	backend := startGRPC(t)
	method := func(m string) *api.RouteMatch {
		return &api.RouteMatch{Grpc: &api.GRPCMethodMatch{Service: sm("exact", "grpc.testing.TestService"), Method: sm("exact", m)}}
	}
	routes := []*api.Route{
		{Name: "unary", Matches: []*api.RouteMatch{method("UnaryCall")}, Backends: []*api.WeightedBackend{wb("shop/grpc:50051", 1)},
			Retry: &api.RetryPolicy{MaxAttempts: 3}},
		{Name: "streaming", Matches: []*api.RouteMatch{method("StreamingOutputCall")}, Backends: []*api.WeightedBackend{wb("shop/grpc:50051", 1)},
			Timeouts: &api.Timeouts{Request: durationpb.New(200 * time.Millisecond)}},
	}
	rp := startRouted(t, svc)
	cfg := dest(svc, routes, nil, &api.Backend{Key: "shop/grpc:50051", Endpoints: []*api.Endpoint{ep(backend)}})
	cfg.Authorities = nil // the gRPC client's authority is the listener's address
	rp.src.set(cfg)
	cc, err := grpc.NewClient("passthrough:///"+rp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("matched method", func(t *testing.T) {
		if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unmatched method is UNIMPLEMENTED", func(t *testing.T) {
		_, err := tc.EmptyCall(ctx, &testgrpc.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("EmptyCall: %v, want Unimplemented", err)
		}
	})
	t.Run("request timeout is DEADLINE_EXCEEDED", func(t *testing.T) {
		start := time.Now()
		stream, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 2_000_000}},
		})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("StreamingOutputCall: %v, want DeadlineExceeded", err)
		}
		// The upper bound is below the server's 2s interval (the call only fails
		// before it if the route's timeout did it), not near 200ms: a loaded machine
		// delays the answer by hundreds of milliseconds.
		if took := time.Since(start); took < 200*time.Millisecond || took > 1900*time.Millisecond {
			t.Fatalf("took %v, want the route's 200ms, well before the server's 2s", took)
		}
	})
	t.Run("a trailers-only failure is retried", func(t *testing.T) {
		_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Unavailable), Message: "try again"}})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("UnaryCall: %v, want the server's Unavailable", err)
		}
		text := rp.metricsText()
		if v := metricValue(text, "route_actual_request_total", `rt_route="unary"`); v != 4 {
			t.Fatalf("route_actual_request_total{unary} = %v, want 4: the first subtest's call + max_attempts 3", v)
		}
		if v := metricValue(text, "route_response_total", `rt_route="unary"`, `status_code="200"`, `classification="failure"`); v != 1 {
			t.Fatalf("route_response_total{unary,failure} = %v, want 1", v)
		}
	})
}

// TestStaticDestinationsRouted: a static file's destination takes the same path as a
// discovered one: balanced over its endpoints with failure accrual, measured per
// route under the fallback's name, and a new file takes effect on the next request.
func TestStaticDestinationsRouted(t *testing.T) {
	const svc = "10.96.1.13:80"
	g1, g2 := newApp(t, "g1", nil), newApp(t, "g2", nil)
	ln := listen(t)
	refused := ln.Addr().String()
	ln.Close()
	static := func(apps ...string) *config.Config {
		d := config.Destination{Name: "web", Addresses: []string{svc}}
		for _, a := range apps {
			d.Endpoints = append(d.Endpoints, config.Endpoint{Address: "127.0.0.1", Port: mustPort(a)})
		}
		return &config.Config{Destinations: []config.Destination{d}}
	}
	p := startProxy(t, static(g1.addr, refused, g2.addr), nil)
	addr := p.outbound(svc)
	c := h1Client()
	get := func() (int, string) {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return 0, ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Backend")
	}
	failures := 0
	for range 200 {
		if st, _ := get(); st != 200 {
			failures++
		}
	}
	if failures > 7 {
		t.Fatalf("%d failures: the refusing endpoint was not ejected after 7", failures)
	}
	if g1.hits.Load() < 40 || g2.hits.Load() < 40 {
		t.Fatalf("healthy endpoints got %d and %d of 200", g1.hits.Load(), g2.hits.Load())
	}
	if v := metricValue(p.metricsText(), "route_request_total", `authority="`+svc+`"`, `rt_route="default"`); v != 200 {
		t.Fatalf("route_request_total{default} = %v, want 200", v)
	}
	cfg := static(g2.addr)
	cfg.ApplyDefaults()
	p.srv.SetConfig(cfg)
	for range 20 {
		if _, b := get(); b != "g2" {
			t.Fatalf("after SetConfig: backend %q, want g2", b)
		}
	}
}

// TestRoutedEndpointAdded: an endpoint added to a backend gets a request at once,
// and takes most traffic from an incumbent slower than the default RTT (a newcomer is
// presumed to answer in the default 30ms until measured).
func TestRoutedEndpointAdded(t *testing.T) {
	const svc = "10.96.1.14:80"
	var slowA atomic.Bool
	a := newApp(t, "a", func(http.ResponseWriter, *http.Request, int64) bool {
		if slowA.Load() {
			time.Sleep(100 * time.Millisecond)
		}
		return false
	})
	b := newApp(t, "b", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", a)))
	c := h1Client()
	for range 20 {
		rp.do(c, "GET", "/", nil, nil)
	}
	slowA.Store(true)
	for range 3 {
		rp.do(c, "GET", "/", nil, nil)
	}
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", a, b)))
	if res := rp.do(c, "GET", "/", nil, nil); res.backend != "b" {
		t.Fatalf("first request after the endpoint was added went to %q, want the new b", res.backend)
	}
	for range 50 {
		rp.do(c, "GET", "/", nil, nil)
	}
	// Most, not all: on a loaded machine a fast answer can take tens of ms, and
	// peak-EWMA believes a slow sample at once.
	if b.hits.Load() < 35 {
		t.Fatalf("new fast endpoint got %d of 51 requests next to a 100ms one", b.hits.Load())
	}
}

// TestRoutedNoIdentityDoesNotEject: a proxy without a certificate cannot reach meshed
// endpoints; that is its own problem, so every request says so (502 "no identity")
// instead of the endpoints being ejected and answered 503.
func TestRoutedNoIdentityDoesNotEject(t *testing.T) {
	const svc = "10.96.1.16:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	e := ep(a.addr)
	e.Identity, e.ProxyPort = spiffe("b", serverSA), 4143
	rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), &api.Backend{Key: "shop/web:80", Endpoints: []*api.Endpoint{e}}))
	c := h1Client()
	for i := range 20 {
		res := rp.do(c, "GET", "/", nil, nil)
		if res.status != 502 || res.header.Get("Weft-Proxy-Error") != "no identity" {
			t.Fatalf("request %d: %d %q, want 502 no identity", i, res.status, res.header.Get("Weft-Proxy-Error"))
		}
	}
}

// TestRoutedAllEjected: when a backend's only endpoint is ejected, requests still
// reach it (the least bad endpoint) and the client sees the application's answers;
// with FailFast the proxy answers 503 itself.
func TestRoutedAllEjected(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failFast  bool
		want500   int
		want503   int
		wantError string
	}{
		{"least bad", false, 50, 0, ""},
		{"fail fast", true, 7, 43, "no healthy endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.17:80"
			down := newApp(t, "down", failing(500))
			rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailFast = tc.failFast })
			rp.src.set(dest(svc, nil, fallbackTo(wb("shop/web:80", 1)), be("shop/web:80", down)))
			c := h1Client()
			got := map[int]int{}
			reason := ""
			for range 50 {
				res := rp.do(c, "GET", "/", nil, nil)
				got[res.status]++
				if res.status == 503 {
					reason = res.header.Get("Weft-Proxy-Error")
				}
			}
			if got[500] != tc.want500 || got[503] != tc.want503 || reason != tc.wantError {
				t.Fatalf("statuses %v (%q), want %d×500 and %d×503 (%q)", got, reason, tc.want500, tc.want503, tc.wantError)
			}
		})
	}
}

// TestSilentClientOfDeclaredHTTP checks that a connection whose client says nothing for
// longer than the detection timeout is still served as HTTP (routed and measured by
// route) when the Service declares the port HTTP, and becomes opaque TCP when it does
// not: the short timeout is only for ports that may be server-speaks-first.
func TestSilentClientOfDeclaredHTTP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		protocol   api.ProtocolHint
		wantRouted float64
	}{
		{"declared http", api.ProtocolHint_PROTOCOL_HINT_HTTP1, 1},
		{"undeclared", api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const svc = "10.96.1.40:80"
			a := newApp(t, "a", nil)
			rp := startRouted(t, svc)
			d := dest(svc, nil, fallbackTo(wb("shop/a:80", 1)), be("shop/a:80", a))
			d.Protocol = tc.protocol
			rp.src.set(d)
			conn, err := net.Dial("tcp", rp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			time.Sleep(2 * detectTimeout) // a pooled connection, used later
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", routedAuthority)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || a.hits.Load() != 1 {
				t.Fatalf("status %d, app hits %d; want 200 and 1", resp.StatusCode, a.hits.Load())
			}
			text := rp.metricsText()
			if v := metricValue(text, "route_request_total", `rt_route="default"`); v != tc.wantRouted {
				t.Fatalf("route_request_total = %v, want %v", v, tc.wantRouted)
			}
			if v := metricValue(text, "weft_detect_timeout_total", `direction="outbound"`); v != 1-tc.wantRouted {
				t.Fatalf("weft_detect_timeout_total = %v, want %v", v, 1-tc.wantRouted)
			}
		})
	}
}
