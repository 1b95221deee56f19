package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/proxy/api"
)

// TestMirrorGRPC: a GRPCRoute mirror copies grpc-go calls to a second grpc-go server;
// the client's calls (grpc-go's interop cases) all succeed, every call is copied once,
// and a call whose message is over 64 KiB is not copied.
func TestMirrorGRPC(t *testing.T) {
	const svc = "10.96.7.7:50051"
	primary := startGRPC(t)
	var mu sync.Mutex
	var mirrored []string
	ln := listen(t)
	ms := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		mirrored = append(mirrored, info.FullMethod)
		mu.Unlock()
		return h(ctx, req)
	}), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		mu.Lock()
		mirrored = append(mirrored, info.FullMethod)
		mu.Unlock()
		return h(srv, ss)
	}))
	testgrpc.RegisterTestServiceServer(ms, interop.NewTestServer())
	go ms.Serve(ln)
	t.Cleanup(ms.Stop)
	grpcBackend := func(key, addr string) *api.Backend {
		e := ep(addr)
		e.Protocol = api.ProtocolHint_PROTOCOL_HINT_GRPC
		return &api.Backend{Key: key, Protocol: api.ProtocolHint_PROTOCOL_HINT_GRPC, Endpoints: []*api.Endpoint{e}}
	}
	routes := []*api.Route{{Name: "rpc", Matches: []*api.RouteMatch{{Grpc: &api.GRPCMethodMatch{Service: sm("exact", "grpc.testing.TestService")}}},
		Filters: []*api.Filter{mirrorFilter("shop/shadow:50051", 0, 0)}, Backends: []*api.WeightedBackend{wb("shop/rpc:50051", 1)}}}
	rp := startRouted(t, svc)
	cfg := dest(svc, routes, nil, grpcBackend("shop/rpc:50051", primary), grpcBackend("shop/shadow:50051", ln.Addr().String()))
	cfg.Protocol = api.ProtocolHint_PROTOCOL_HINT_GRPC
	rp.src.set(cfg)
	cc, err := grpc.NewClient("passthrough:///"+rp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each interop case aborts the test binary on failure.
	interop.DoEmptyUnaryCall(ctx, tc)
	interop.DoCustomMetadata(ctx, tc)
	interop.DoStatusCodeAndMessage(ctx, tc)
	interop.DoServerStreaming(ctx, tc)
	interop.DoLargeUnaryCall(ctx, tc) // 271,828 bytes: over the bound, not copied

	waitMetric(t, rp.proxy, "body_too_large", 1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if mirrorOutcomes(rp.metricsText(), "sent") >= 6 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	text := rp.metricsText()
	t.Logf("outcomes:\n%s", grepLines(text, "weft_mirror_requests_total{"))
	mu.Lock()
	defer mu.Unlock()
	// Streams are copied too, once the client has closed its side: the copy carries
	// the messages sent, as long as they fit the bound.
	want := map[string]int{"/grpc.testing.TestService/EmptyCall": 1, "/grpc.testing.TestService/UnaryCall": 2,
		"/grpc.testing.TestService/FullDuplexCall": 2, "/grpc.testing.TestService/StreamingOutputCall": 1}
	got := map[string]int{}
	for _, m := range mirrored {
		got[m]++
	}
	for m, n := range want {
		if got[m] != n {
			t.Errorf("mirror got %d %s calls, want %d (all: %v)", got[m], m, n, mirrored)
		}
	}
	if got := mirrorOutcomes(text, "body_too_large"); got != 1 {
		t.Errorf("body_too_large = %v, want 1", got)
	}
}
