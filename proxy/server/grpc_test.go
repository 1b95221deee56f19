package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startGRPC runs grpc-go's own interop TestService (a real third-party server) on
// loopback in plaintext, as a meshed app would.
func startGRPC(t *testing.T) string {
	ln := listen(t)
	s := grpc.NewServer(grpc.MaxRecvMsgSize(8<<20), grpc.MaxSendMsgSize(8<<20))
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// TestGRPCThroughPair runs grpc-go's interop client cases through the proxy pair:
// unary, client-, server- and bidi-streaming, custom metadata and trailers, status
// codes, cancellation and deadlines, plus a 4 MiB message each way. The interop
// cases abort the test binary on failure.
func TestGRPCThroughPair(t *testing.T) {
	mp := newMeshPair(t, pairOpts{})
	cc, err := grpc.NewClient("passthrough:///"+mp.addr[svcGRPC],
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cases := []struct {
		name string
		run  func()
	}{
		{"empty unary", func() { interop.DoEmptyUnaryCall(ctx, tc) }},
		{"large unary", func() { interop.DoLargeUnaryCall(ctx, tc) }},
		{"client streaming", func() { interop.DoClientStreaming(ctx, tc) }},
		{"server streaming", func() { interop.DoServerStreaming(ctx, tc) }},
		{"bidi ping pong", func() { interop.DoPingPong(ctx, tc) }},
		{"empty stream", func() { interop.DoEmptyStream(ctx, tc) }},
		{"custom metadata and trailers", func() { interop.DoCustomMetadata(ctx, tc) }},
		{"status code and message", func() { interop.DoStatusCodeAndMessage(ctx, tc) }},
		{"special status message", func() { interop.DoSpecialStatusMessage(ctx, tc) }},
		{"cancel after begin", func() { interop.DoCancelAfterBegin(ctx, tc) }},
		{"cancel after first response", func() { interop.DoCancelAfterFirstResponse(ctx, tc) }},
		{"deadline on sleeping server", func() { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
		{"unimplemented method", func() { interop.DoUnimplementedMethod(ctx, cc) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run() })
	}

	t.Run("4 MiB each way", func(t *testing.T) {
		const size = 4 << 20
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i * 7)
		}
		resp, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{
			ResponseType: testgrpc.PayloadType_COMPRESSABLE,
			ResponseSize: size,
			Payload:      &testgrpc.Payload{Body: body},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPayload().GetBody()) != size {
			t.Fatalf("response payload %d bytes", len(resp.GetPayload().GetBody()))
		}
	})

	t.Run("deadline propagates to server", func(t *testing.T) {
		// The server sleeps per response; a 200ms deadline must end the call with
		// DeadlineExceeded well before the 2s the stream would take.
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer dcancel()
		start := time.Now()
		stream, err := tc.StreamingOutputCall(dctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 2_000_000}},
		})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > time.Second {
			t.Fatalf("err %v after %s, want DeadlineExceeded quickly", err, time.Since(start))
		}
	})

	t.Run("bidi with echoed metadata", func(t *testing.T) {
		mctx := metadata.AppendToOutgoingContext(ctx, "x-user-id", "u-42")
		stream, err := tc.FullDuplexCall(mctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 50; i++ {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i * 100)}},
			}); err != nil {
				t.Fatal(err)
			}
			r, err := stream.Recv()
			if err != nil || len(r.GetPayload().GetBody()) != i*100 {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})

	// Metrics: gRPC requests counted as successes on both sides with identities.
	m := mp.a.metricsText()
	if v := metricValue(m, "response_total", `direction="outbound"`, `tls="true"`, `server_id="`+spiffe("b", serverSA)+`"`, `classification="failure"`); v < 1 {
		t.Errorf("no gRPC failures counted (status code cases return errors):\n%s", m)
	}
	mb := mp.b.metricsText()
	if v := metricValue(mb, "request_total", `direction="inbound"`, `client_id="`+spiffe("a", clientSA)+`"`); v < 10 {
		t.Errorf("proxy B counted %v inbound requests with client_id", v)
	}
	_ = net.IPv4len
}
