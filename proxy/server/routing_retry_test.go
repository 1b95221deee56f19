package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/server"
)

// The proxy's side of retry.weft.dev/* and timeout.weft.dev/*: each test sets the
// route as the compiler compiles the annotations (internal/compiler
// TestCompileRetryTimeoutAnnotations has the annotation -> route table) and drives
// real requests through a real proxy to real backends.

func allRoute(rt *api.Route, backend string) []*api.Route {
	rt.Name = "all"
	rt.Matches = []*api.RouteMatch{{Path: sm("prefix", "/")}}
	rt.Backends = []*api.WeightedBackend{wb(backend, 1)}
	return []*api.Route{rt}
}

// TestRoutedRetryAnnotations: retry.weft.dev/http "gateway-error,429" with limit 2
// retries exactly those statuses and at most twice; retry.weft.dev/timeout retries
// an attempt that takes too long, where timeout.weft.dev/response alone does not.
func TestRoutedRetryAnnotations(t *testing.T) {
	t.Run("gateway-error and 429 are retried, 500 is not", func(t *testing.T) {
		const svc = "10.96.7.1:80"
		// Each request's first attempt fails with the status it asks for.
		var pending = map[string]bool{}
		app := newApp(t, "app", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			id := r.Header.Get("X-Id")
			if pending[id] {
				return false
			}
			pending[id] = true
			code, _ := strconv.Atoi(r.Header.Get("X-Fail"))
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(code)
			return true
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, allRoute(&api.Route{Retry: &api.RetryPolicy{
			Statuses: []*api.StatusRange{{Min: 502, Max: 504}, {Min: 429, Max: 429}}, MaxAttempts: 3}}, "shop/app:80"), nil, be("shop/app:80", app)))
		c := h1Client()
		for i, tc := range []struct {
			fail, want int
			hits       int64
		}{{429, 200, 2}, {502, 200, 2}, {503, 200, 2}, {504, 200, 2}, {500, 500, 1}, {404, 404, 1}} {
			before := app.hits.Load()
			res := rp.do(c, "GET", "/", http.Header{"X-Id": {strconv.Itoa(i)}, "X-Fail": {strconv.Itoa(tc.fail)}}, nil)
			if res.status != tc.want || app.hits.Load()-before != tc.hits {
				t.Errorf("first attempt %d: answered %d after %d attempts, want %d after %d", tc.fail, res.status, app.hits.Load()-before, tc.want, tc.hits)
			}
		}
	})
	t.Run("limit 2 means at most 3 attempts", func(t *testing.T) {
		const svc = "10.96.7.2:80"
		down := newApp(t, "down", failing(503))
		rp := startRouted(t, svc, func(o *server.Options) { o.Balance.FailureThreshold = 1 << 30 })
		rp.src.set(dest(svc, allRoute(&api.Route{Retry: &api.RetryPolicy{
			Statuses: []*api.StatusRange{{Min: 500, Max: 599}}, MaxAttempts: 3}}, "shop/down:80"), nil, be("shop/down:80", down)))
		c := h1Client()
		for range 5 {
			if res := rp.do(c, "GET", "/", nil, nil); res.status != 503 {
				t.Fatalf("status %d, want the backend's 503", res.status)
			}
		}
		if got := down.hits.Load(); got != 15 {
			t.Fatalf("backend saw %d attempts for 5 requests, want 15", got)
		}
	})
	t.Run("retry timeout retries a slow attempt", func(t *testing.T) {
		const svc = "10.96.7.3:80"
		slowFirst := newApp(t, "slow-first", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
			if hit == 1 {
				return sleeping(3*time.Second)(w, r, hit)
			}
			return false
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, allRoute(&api.Route{Retry: &api.RetryPolicy{
			Statuses: []*api.StatusRange{{Min: 500, Max: 599}}, MaxAttempts: 2, Timeout: durationpb.New(150 * time.Millisecond)}}, "shop/slow:80"), nil, be("shop/slow:80", slowFirst)))
		start := time.Now()
		res := rp.do(h1Client(), "POST", "/", nil, []byte("payload"))
		took := time.Since(start)
		if res.status != 200 || slowFirst.hits.Load() != 2 || res.body == "" {
			t.Fatalf("status %d %q after %d attempts, want 200 from the second attempt", res.status, res.body, slowFirst.hits.Load())
		}
		if took > 2*time.Second {
			t.Fatalf("took %v: the slow attempt was waited for", took)
		}
	})
	t.Run("the retry timeout bounds the head, not a slow body", func(t *testing.T) {
		const svc = "10.96.7.7:80"
		slowBody := newApp(t, "slow-body", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			rc := http.NewResponseController(w)
			w.WriteHeader(200)
			for i := range 6 {
				fmt.Fprintf(w, "part %d\n", i)
				rc.Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return true
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, allRoute(&api.Route{Retry: &api.RetryPolicy{
			Statuses: []*api.StatusRange{{Min: 500, Max: 599}}, MaxAttempts: 3, Timeout: durationpb.New(150 * time.Millisecond)}}, "shop/slow:80"), nil, be("shop/slow:80", slowBody)))
		res := rp.do(h1Client(), "GET", "/", nil, nil)
		if res.status != 200 || res.body != "part 0\npart 1\npart 2\npart 3\npart 4\npart 5\n" || slowBody.hits.Load() != 1 {
			t.Fatalf("status %d body %q after %d attempts, want the whole 600ms body from one attempt", res.status, res.body, slowBody.hits.Load())
		}
	})
	t.Run("a body over 64 KiB is not replayed, even for a retry timeout", func(t *testing.T) {
		const svc = "10.96.7.6:80"
		slowFirst := newApp(t, "slow-first", func(w http.ResponseWriter, r *http.Request, hit int64) bool {
			if hit%2 == 1 {
				io.Copy(io.Discard, r.Body) // the whole body arrived, then it stalls
				return sleeping(3*time.Second)(w, r, hit)
			}
			return false
		})
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, allRoute(&api.Route{Retry: &api.RetryPolicy{
			Statuses: []*api.StatusRange{{Min: 500, Max: 599}}, MaxAttempts: 3, Timeout: durationpb.New(200 * time.Millisecond)}}, "shop/slow:80"), nil, be("shop/slow:80", slowFirst)))
		c := h1Client()
		small := rp.do(c, "POST", "/", nil, make([]byte, 64<<10))
		if small.status != 200 || !strings.Contains(small.body, fmt.Sprintf("body=%d", 64<<10)) || slowFirst.hits.Load() != 2 {
			t.Fatalf("64 KiB: %d %q after %d attempts, want 200 with the whole body from the second", small.status, small.body, slowFirst.hits.Load())
		}
		big := rp.do(c, "POST", "/", nil, make([]byte, 64<<10+1))
		if big.status != 504 || slowFirst.hits.Load() != 3 {
			t.Fatalf("64 KiB + 1: %d after %d attempts in all, want 504 after 1 more", big.status, slowFirst.hits.Load())
		}
		if v := metricValue(rp.metricsText(), "weft_route_retry_skipped_total", `rt_route="all"`, `reason="body"`); v != 1 {
			t.Fatalf("weft_route_retry_skipped_total{reason=body} = %v, want 1", v)
		}
	})
	t.Run("a response timeout alone is not retried", func(t *testing.T) {
		const svc = "10.96.7.4:80"
		slow := newApp(t, "slow", sleeping(3*time.Second))
		rp := startRouted(t, svc)
		// timeout.weft.dev/response 150ms with retry.weft.dev/http 503: the
		// timeout answers 504, which the policy does not retry.
		rp.src.set(dest(svc, allRoute(&api.Route{Timeouts: &api.Timeouts{BackendRequest: durationpb.New(150 * time.Millisecond)},
			Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 503, Max: 503}}, MaxAttempts: 3}}, "shop/slow:80"), nil, be("shop/slow:80", slow)))
		start := time.Now()
		res := rp.do(h1Client(), "GET", "/", nil, nil)
		if res.status != 504 || slow.hits.Load() != 1 || time.Since(start) > 2*time.Second {
			t.Fatalf("status %d after %d attempts in %v, want 504 after 1, quickly", res.status, slow.hits.Load(), time.Since(start))
		}
	})
	t.Run("the request timeout bounds every retry", func(t *testing.T) {
		const svc = "10.96.7.5:80"
		slow := newApp(t, "slow", sleeping(3*time.Second))
		rp := startRouted(t, svc)
		rp.src.set(dest(svc, allRoute(&api.Route{Timeouts: &api.Timeouts{Request: durationpb.New(400 * time.Millisecond)},
			Retry: &api.RetryPolicy{Statuses: []*api.StatusRange{{Min: 500, Max: 599}}, MaxAttempts: 10, Timeout: durationpb.New(150 * time.Millisecond)}}, "shop/slow:80"), nil, be("shop/slow:80", slow)))
		start := time.Now()
		res := rp.do(h1Client(), "GET", "/", nil, nil)
		took := time.Since(start)
		if res.status != 504 || took < 400*time.Millisecond || took > 2*time.Second {
			t.Fatalf("status %d in %v, want 504 at the request timeout", res.status, took)
		}
		if h := slow.hits.Load(); h < 2 || h > 3 {
			t.Fatalf("%d attempts, want the 2 or 3 that fit 150ms tries in 400ms", h)
		}
	})
}

// TestRoutedIdleTimeout: timeout.weft.dev/idle ends a request that is silent for
// that long (before the response head or in the middle of its body) but never a
// stream that keeps moving, however long it lasts.
func TestRoutedIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	stream := func(chunks int, every time.Duration, stallAfter int) func(http.ResponseWriter, *http.Request, int64) bool {
		return func(w http.ResponseWriter, r *http.Request, _ int64) bool {
			rc := http.NewResponseController(w)
			w.WriteHeader(200)
			for i := range chunks {
				if i == stallAfter {
					select {
					case <-time.After(5 * time.Second):
					case <-r.Context().Done():
						return true
					}
				}
				fmt.Fprintf(w, "chunk %d\n", i)
				rc.Flush()
				time.Sleep(every)
			}
			return true
		}
	}
	for _, tc := range []struct {
		name     string
		behave   func(http.ResponseWriter, *http.Request, int64) bool
		wantOK   bool
		wantCode int
	}{
		{"silent backend: 504 before the head", sleeping(5 * time.Second), false, 504},
		{"a stream that keeps moving outlives the idle timeout", stream(12, 60*time.Millisecond, -1), true, 200},
		{"a stream that stalls midway is cut", stream(12, 20*time.Millisecond, 3), false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := fmt.Sprintf("10.96.7.%d:80", 10+len(tc.name)%40)
			app := newApp(t, "app", tc.behave)
			rp := startRouted(t, svc)
			rp.src.set(dest(svc, allRoute(&api.Route{Timeouts: &api.Timeouts{Idle: durationpb.New(idle)}}, "shop/app:80"), nil, be("shop/app:80", app)))
			req, _ := http.NewRequest("GET", "http://"+rp.addr+"/", nil)
			req.Host = routedAuthority
			start := time.Now()
			resp, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			t.Logf("status %d, %d body bytes, read error %v, after %v", resp.StatusCode, len(body), rerr, took)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.wantOK {
				if rerr != nil || len(body) != 12*len("chunk 0\n")+2 || took < 12*60*time.Millisecond {
					t.Fatalf("the moving stream was cut: %d bytes, error %v, after %v", len(body), rerr, took)
				}
				return
			}
			if tc.wantCode == 200 && rerr == nil {
				t.Fatalf("the stalled stream ended cleanly (%d bytes): the client would take it as whole", len(body))
			}
			if took > 3*time.Second {
				t.Fatalf("took %v: the idle timeout did not fire", took)
			}
		})
	}
}

// TestRoutedGRPCRetryCodes: retry.weft.dev/grpc "unavailable" with limit 2 retries
// a real grpc-go server's UNAVAILABLE (trailers-only) twice, and never INTERNAL.
func TestRoutedGRPCRetryCodes(t *testing.T) {
	const svc = "10.96.7.60:50051"
	backend := startGRPC(t)
	rp := startRouted(t, svc)
	cfg := dest(svc, []*api.Route{{Name: "rpc", Matches: []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{}}},
		Backends: []*api.WeightedBackend{wb("shop/grpc:50051", 1)},
		Retry:    &api.RetryPolicy{GrpcCodes: []uint32{uint32(codes.Unavailable)}, MaxAttempts: 3}}},
		nil, &api.Backend{Key: "shop/grpc:50051", Endpoints: []*api.Endpoint{ep(backend)}})
	cfg.Authorities = nil
	rp.src.set(cfg)
	cc, err := grpc.NewClient("passthrough:///"+rp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	attempts := func() float64 {
		return max(metricValue(rp.metricsText(), "route_actual_request_total", `rt_route="rpc"`), 0) // -1: none yet
	}
	for _, c := range []struct {
		code codes.Code
		// headersFirst: the server sends its initial metadata first, so the
		// status comes in the trailers of a response without messages.
		headersFirst bool
		wantAttempts float64
	}{
		{codes.Unavailable, false, 3}, {codes.Internal, false, 1}, {codes.OK, false, 1},
		{codes.Unavailable, true, 3}, {codes.Internal, true, 1}, {codes.OK, true, 1},
	} {
		before := attempts()
		req := &testgrpc.SimpleRequest{ResponseSize: 8}
		if c.code != codes.OK {
			req.ResponseStatus = &testgrpc.EchoStatus{Code: int32(c.code), Message: "from the server"}
		}
		cctx := ctx
		if c.headersFirst {
			// grpc-go's interop server sends this back with grpc.SendHeader.
			cctx = metadata.AppendToOutgoingContext(ctx, "x-grpc-test-echo-initial", "early")
		}
		var header metadata.MD
		resp, err := tc.UnaryCall(cctx, req, grpc.Header(&header))
		if status.Code(err) != c.code {
			t.Fatalf("UnaryCall (headers first %v): %v, want %v", c.headersFirst, err, c.code)
		}
		if c.code == codes.OK && len(resp.GetPayload().GetBody()) != 8 {
			t.Fatalf("payload %d bytes, want 8", len(resp.GetPayload().GetBody()))
		}
		if c.headersFirst && (len(header["x-grpc-test-echo-initial"]) != 1 || header["x-grpc-test-echo-initial"][0] != "early") {
			t.Errorf("initial metadata %v lost", header)
		}
		if got := attempts() - before; got != c.wantAttempts {
			t.Errorf("%v (headers first %v): %v attempts, want %v", c.code, c.headersFirst, got, c.wantAttempts)
		}
	}
}

// TestRoutedIdleTimeoutUpgrade: an upgraded connection is a tunnel the idle watchdog
// cannot see into, so the watchdog leaves it alone: an echo keeps working across
// pauses longer than the idle timeout.
func TestRoutedIdleTimeoutUpgrade(t *testing.T) {
	const svc = "10.96.7.70:80"
	echo := newApp(t, "echo", func(w http.ResponseWriter, r *http.Request, _ int64) bool {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return true
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 64)
		for {
			n, err := brw.Read(buf)
			if err != nil {
				return true
			}
			conn.Write(buf[:n])
		}
	})
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, allRoute(&api.Route{Timeouts: &api.Timeouts{Idle: durationpb.New(150 * time.Millisecond)}}, "shop/echo:80"), nil, be("shop/echo:80", echo)))
	conn, err := net.Dial("tcp", rp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", routedAuthority)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for i := range 3 {
		time.Sleep(250 * time.Millisecond) // longer than the idle timeout
		msg := fmt.Sprintf("ping %d", i)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q, %v: the tunnel was cut", i, got, err)
		}
	}
}
