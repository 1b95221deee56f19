package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// The tracing setups (weft-trace1, weft-trace100): the Weft pair with the proxies'
// distributed tracing on, sending spans to an OTLP/gRPC receiver in this process that
// counts and discards them. The receiver's CPU is the benchmark's, not the proxies':
// the figures are what tracing costs a proxy (sampling, propagation, spans, export).

// traceCollectorAddr is the receiver's address (below the ephemeral range, see the
// port constants).
const traceCollectorAddr = "127.0.0.1:16417"

var (
	traceOnce     sync.Once
	traceErr      error
	spansReceived atomic.Int64
)

// discardReceiver is the OTLP TraceService that only counts.
type discardReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
}

func (discardReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			spansReceived.Add(int64(len(ss.GetSpans())))
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// traceReceiver starts the receiver once and returns its address; it stops with ctx.
func traceReceiver(ctx context.Context) (string, error) {
	traceOnce.Do(func() {
		ln, err := net.Listen("tcp", traceCollectorAddr)
		if err != nil {
			traceErr = fmt.Errorf("OTLP receiver: %w", err)
			return
		}
		s := grpc.NewServer()
		collectorpb.RegisterTraceServiceServer(s, discardReceiver{})
		go func() { _ = s.Serve(ln) }()
		go func() {
			<-ctx.Done()
			s.Stop()
		}()
	})
	return traceCollectorAddr, traceErr
}

// tracingConfig is the proxies' configuration-file tracing block.
func tracingConfig(collector string, perMillion int) string {
	return fmt.Sprintf("tracing:\n  collector: %q\n  samplingPerMillion: %d\n  serviceName: bench\n", collector, perMillion)
}
