package server_test

import (
	"context"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
)

// Fault injection (issue 20) through a real client proxy to real backends: the proxy
// is fed routes whose filters carry an HTTPFault, as the control plane compiles them.

func faultRoute(name string, abort *api.FaultAbort, delay *api.FaultDelay) *api.Route {
	return &api.Route{Name: "faulty", Backends: []*api.WeightedBackend{wb("shop/a:80", 1)},
		Matches: []*api.RouteMatch{{Path: sm("prefix", "/")}},
		Filters: []*api.Filter{{Kind: &api.Filter_Fault{Fault: &api.Fault{Namespace: "shop", Name: name, Abort: abort, Delay: delay}}}}}
}

// TestFaultShares: an abort of 10% and a delay of 25% hit within 3 points of their
// share over 2,000 requests; aborted requests never reach the backend; each is counted.
func TestFaultShares(t *testing.T) {
	const svc = "10.96.1.10:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, []*api.Route{faultRoute("chaos",
		&api.FaultAbort{HttpStatus: 503, PerMillion: 100_000},
		&api.FaultDelay{FixedDelay: durationpb.New(time.Millisecond), PerMillion: 250_000})}, nil, be("shop/a:80", a)))
	c := h1Client()
	const n = 2000
	aborted := 0
	for range n {
		res := rp.do(c, "GET", "/", nil, nil)
		switch {
		case res.err != nil:
			t.Fatal(res.err)
		case res.status == http.StatusServiceUnavailable:
			aborted++
			if res.backend != "" || !strings.Contains(res.header.Get("Weft-Proxy-Error"), "HTTPFault shop/chaos") {
				t.Fatalf("abort answered by %q, header %v", res.backend, res.header)
			}
		case res.status != 200:
			t.Fatalf("unexpected %d", res.status)
		}
	}
	text := rp.metricsText()
	delayed := metricValue(text, "weft_fault_injected_total", `fault_name="chaos"`, `kind="delay"`)
	abortCount := metricValue(text, "weft_fault_injected_total", `fault_name="chaos"`, `kind="abort"`)
	t.Logf("aborted %d (%.1f%%), delayed %v (%.1f%%) of %d", aborted, 100*float64(aborted)/n, delayed, 100*delayed/n, n)
	if share := float64(aborted) / n; share < 0.07 || share > 0.13 {
		t.Errorf("aborted %.1f%%, want 10±3%%", 100*share)
	}
	if share := delayed / n; share < 0.22 || share > 0.28 {
		t.Errorf("delayed %.1f%%, want 25±3%%", 100*share)
	}
	if abortCount != float64(aborted) {
		t.Errorf("weft_fault_injected_total{kind=abort} = %v, want %d", abortCount, aborted)
	}
	if hits := a.hits.Load(); hits != int64(n-aborted) {
		t.Errorf("backend got %d requests, want the %d not aborted", hits, n-aborted)
	}
}

// TestFaultDelay: every request of a route with a 100% delay of 200ms takes at least
// that long, and a client that gives up during the delay frees the proxy.
func TestFaultDelay(t *testing.T) {
	const svc = "10.96.1.11:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, []*api.Route{faultRoute("slow", nil,
		&api.FaultDelay{FixedDelay: durationpb.New(200 * time.Millisecond), PerMillion: 1_000_000})}, nil, be("shop/a:80", a)))
	c := h1Client()
	for i := range 5 {
		start := time.Now()
		res := rp.do(c, "GET", "/", nil, nil)
		took := time.Since(start)
		if res.err != nil || res.status != 200 {
			t.Fatalf("request %d: %+v", i, res)
		}
		if took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("request %d took %v, want 200ms and a little", i, took)
		}
	}
	// A client that gives up at 50ms: its request never reaches the backend.
	before := a.hits.Load()
	short := &http.Client{Timeout: 50 * time.Millisecond}
	if res := rp.do(short, "GET", "/", nil, nil); res.err == nil {
		t.Fatalf("expected the client's timeout, got %d", res.status)
	}
	time.Sleep(300 * time.Millisecond)
	if a.hits.Load() != before {
		t.Errorf("a request whose client left during the delay reached the backend")
	}
}

// TestFaultAbortCodes: the HTTP status of an abort, a gRPC status to a real grpc-go
// client, and the 500 (gRPC INTERNAL) of a reference to a missing HTTPFault.
func TestFaultAbortCodes(t *testing.T) {
	const svc = "10.96.1.12:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	rp.src.set(dest(svc, []*api.Route{faultRoute("teapot", &api.FaultAbort{HttpStatus: 418, PerMillion: 1_000_000}, nil)}, nil, be("shop/a:80", a)))
	c := h1Client()
	if res := rp.do(c, "GET", "/", nil, nil); res.status != 418 {
		t.Fatalf("abort: %+v, want 418", res)
	}

	// gRPC: grpc-go's interop server behind a client proxy whose route aborts.
	grpcAddr := startGRPC(t)
	const gsvc = "10.96.1.13:50051"
	grp := startRouted(t, gsvc)
	gdest := func(abort *api.FaultAbort) *api.DestinationConfig {
		d := dest(gsvc, []*api.Route{faultRoute("grpc-chaos", abort, nil)}, nil, &api.Backend{Key: "shop/a:80", Endpoints: []*api.Endpoint{ep(grpcAddr)}})
		d.Authorities = nil
		return d
	}
	call := func() error {
		cc, err := grpc.NewClient("passthrough:///"+grp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testgrpc.Empty{})
		return err
	}
	for _, tc := range []struct {
		name  string
		abort *api.FaultAbort
		want  codes.Code
	}{
		{"grpc status", &api.FaultAbort{GrpcStatus: uint32(codes.Unavailable), PerMillion: 1_000_000}, codes.Unavailable},
		{"http status mapped", &api.FaultAbort{HttpStatus: 429, PerMillion: 1_000_000}, codes.Unavailable},
		{"missing HTTPFault", &api.FaultAbort{HttpStatus: 500, GrpcStatus: 13, PerMillion: 1_000_000}, codes.Internal},
		{"no abort", &api.FaultAbort{GrpcStatus: 14, PerMillion: 0}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			grp.src.set(gdest(tc.abort))
			err := call()
			if status.Code(err) != tc.want {
				t.Fatalf("call: %v, want %v", err, tc.want)
			}
			if tc.want != codes.OK && !strings.Contains(status.Convert(err).Message(), "HTTPFault shop/grpc-chaos") {
				t.Errorf("message %q does not name the HTTPFault", status.Convert(err).Message())
			}
		})
	}
}

// TestFaultInactiveCostsNothing: an HTTPFault whose abort and delay are both at 0% adds
// no allocation to a request (issue 20: configured but inactive features cost nothing
// measurable), compared with the same route without the filter.
func TestFaultInactiveCostsNothing(t *testing.T) {
	const svc = "10.96.1.13:80"
	a := newApp(t, "a", nil)
	rp := startRouted(t, svc)
	c := h1Client()
	perRequest := func(routes []*api.Route) float64 {
		rp.src.set(dest(svc, routes, nil, be("shop/a:80", a)))
		get := func() {
			if res := rp.do(c, "GET", "/", nil, nil); res.err != nil || res.status != 200 {
				t.Fatalf("GET: %v %d", res.err, res.status)
			}
		}
		for range 300 {
			get()
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 2000
		for range n {
			get()
		}
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / n
	}
	plain := faultRoute("idle", nil, nil)
	plain.Filters = nil
	without := perRequest([]*api.Route{plain})
	with := perRequest([]*api.Route{faultRoute("idle", &api.FaultAbort{HttpStatus: 503}, &api.FaultDelay{FixedDelay: durationpb.New(time.Second)})})
	t.Logf("allocations per request (client, proxy and app in one process): %.2f without the filter, %.2f with a 0%% fault", without, with)
	if with-without > 0.5 {
		t.Errorf("a 0%% fault adds %.2f allocations per request, want none", with-without)
	}
}
