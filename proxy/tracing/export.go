package tracing

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
)

// The OTLP/gRPC call, opentelemetry.proto.collector.trace.v1.TraceService/Export, made
// over x/net's HTTP/2 client in cleartext (h2c with prior knowledge, OTLP's default on
// port 4317) as the gRPC over HTTP/2 protocol specifies it, as proxy/discovery makes
// its calls: the proxy does not link grpc-go (internal/grpcwire says why).
//
// The request message, ExportTraceServiceRequest, is field 1 "repeated ResourceSpans
// resource_spans", the same wire shape as TracesData: the exporter marshals a
// TracesData (go.opentelemetry.io/proto/otlp/trace/v1, messages only) rather than
// import the collector package, whose generated service stubs link grpc-go.
const exportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// maxExportResponse bounds the collector's answer (an ExportTraceServiceResponse: a
// count and a message).
const maxExportResponse = 64 << 10

// scopeName is the instrumentation scope of every span.
const scopeName = "weft-proxy"

// exporter sends one configuration's spans to its collector from its own goroutine.
type exporter struct {
	t        *Tracer
	addr     string
	resource *resourcepb.Resource
	queue    chan *Span
	client   *http2.Transport
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	// buf is the encoding buffer, reused batch to batch (run's goroutine only).
	buf []byte
}

func newExporter(t *Tracer, cfg *api.Tracing) *exporter {
	e := &exporter{
		t:        t,
		addr:     cfg.GetCollector(),
		resource: resource(cfg),
		queue:    make(chan *Span, t.opts.QueueSize),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	e.client = &http2.Transport{
		AllowHTTP: true,
		// Prior knowledge: the collector speaks HTTP/2 in cleartext.
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		// A span batch is small; so is the answer's header.
		MaxHeaderListSize: 64 << 10,
		// A collector that stops answering (the connection open, nothing read)
		// is found by a ping and the connection replaced.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     5 * time.Second,
		IdleConnTimeout: 5 * time.Minute,
	}
	go e.run()
	return e
}

// resource is the spans' resource: service.name and the configured attributes.
func resource(cfg *api.Tracing) *resourcepb.Resource {
	attrs := make([]*commonpb.KeyValue, 0, 1+len(cfg.GetAttributes()))
	if cfg.GetServiceName() != "" {
		attrs = append(attrs, strAttr("service.name", cfg.GetServiceName()))
	}
	for _, a := range cfg.GetAttributes() {
		if a.GetKey() == "service.name" && cfg.GetServiceName() != "" {
			continue
		}
		attrs = append(attrs, strAttr(a.GetKey(), a.GetValue()))
	}
	return &resourcepb.Resource{Attributes: attrs}
}

// stop asks the goroutine to export what it holds and end.
func (e *exporter) stop() { e.stopOnce.Do(func() { close(e.quit) }) }

// wait waits for the goroutine to end, at most for one export's timeout more.
func (e *exporter) wait() {
	t := time.NewTimer(e.t.opts.ExportTimeout + time.Second)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
	}
}

// run batches the queue: a batch goes when it holds BatchSize spans or its first span
// waited BatchInterval. After a failed call the exporter waits (backoff) without
// reading the queue, so a collector that is gone costs at most the queue's spans, and
// those beyond it are dropped by Finish.
func (e *exporter) run() {
	defer close(e.done)
	defer e.client.CloseIdleConnections()
	o := e.t.opts
	batch := make([]*Span, 0, o.BatchSize)
	timer := time.NewTimer(o.BatchInterval)
	timer.Stop()
	backoff := time.Duration(0)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := e.export(batch)
		clear(batch)
		batch = batch[:0]
		if err == nil {
			backoff = 0
			return
		}
		backoff = min(max(2*backoff, o.Backoff), o.MaxBackoff)
		o.Log.V(1).Info("Span export failed, dropping the batch and backing off", "collector", e.addr, "error", err.Error(), "backoff", backoff)
		wait := time.NewTimer(backoff)
		select {
		case <-wait.C:
		case <-e.quit:
			wait.Stop()
		}
	}
	for {
		select {
		case s := <-e.queue:
			if len(batch) == 0 {
				timer.Reset(o.BatchInterval)
			}
			batch = append(batch, s)
			if len(batch) >= o.BatchSize {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		case <-e.quit:
			timer.Stop()
			e.drain(batch)
			return
		}
	}
}

// drain exports what the queue holds, once, when the exporter stops.
func (e *exporter) drain(batch []*Span) {
	for {
		select {
		case s := <-e.queue:
			batch = append(batch, s)
			if len(batch) < e.t.opts.BatchSize {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			return
		}
		if err := e.export(batch); err != nil {
			// Already counted; the rest would wait for the same collector.
			for {
				select {
				case <-e.queue:
					e.t.dropped[dropExportFailed].Add(1)
				default:
					return
				}
			}
		}
		batch = batch[:0]
	}
}

// export sends one batch and counts its spans as exported or dropped.
func (e *exporter) export(batch []*Span) error {
	rejected, err := e.call(batch)
	n := uint64(len(batch))
	if err != nil {
		e.t.dropped[dropExportFailed].Add(n)
		return err
	}
	rejected = min(rejected, n)
	e.t.dropped[dropRejected].Add(rejected)
	e.t.exported.Add(n - rejected)
	return nil
}

// call makes one Export call with the batch; it returns how many spans the collector
// said it rejected (partial success).
func (e *exporter) call(batch []*Span) (uint64, error) {
	msg, err := e.encode(batch)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.t.opts.ExportTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.addr+exportPath, bytes.NewReader(grpcwire.AppendFrame(nil, msg)))
	if err != nil {
		return 0, err
	}
	hr.Header.Set("Content-Type", "application/grpc")
	hr.Header.Set("Te", "trailers")
	hr.Header.Set("User-Agent", "weft-proxy")
	hr.Header.Set(grpcwire.HeaderTimeout, grpcwire.FormatTimeout(e.t.opts.ExportTimeout))
	resp, err := e.client.RoundTrip(hr)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("collector answered HTTP status %d", resp.StatusCode)
	}
	if st, ok := grpcwire.StatusFromHeader(resp.Header); ok {
		// Trailers-only: no answer message.
		return 0, st.Err()
	}
	r := grpcwire.NewReader(bufio.NewReaderSize(resp.Body, 512), maxExportResponse)
	var answer []byte
	b, err := r.Next()
	switch {
	case err == nil:
		answer = b
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			return 0, errors.New("collector answered more than one message")
		}
	case errors.Is(err, io.EOF):
	default:
		return 0, fmt.Errorf("read answer: %w", err)
	}
	st, ok := grpcwire.StatusFromHeader(resp.Trailer)
	if !ok {
		return 0, errors.New("collector ended the call without grpc-status")
	}
	if err := st.Err(); err != nil {
		return 0, err
	}
	return rejectedSpans(answer), nil
}

// encode is the batch as an ExportTraceServiceRequest, marshalled into e.buf (valid
// until the next encode). The batch's messages come from a few arrays (slab) rather
// than a few dozen allocations per span.
func (e *exporter) encode(batch []*Span) ([]byte, error) {
	sl := newSlab(len(batch))
	msgs := make([]tracepb.Span, len(batch))
	spans := make([]*tracepb.Span, len(batch))
	for i, s := range batch {
		s.proto(&msgs[i], sl)
		spans[i] = &msgs[i]
	}
	req := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   e.resource,
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: scopeName}, Spans: spans}},
	}}}
	msg, err := proto.MarshalOptions{}.MarshalAppend(e.buf[:0], req)
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	if cap(msg) <= maxKeptBuffer {
		e.buf = msg
	}
	return msg, nil
}

// maxKeptBuffer bounds the encoding buffer an exporter keeps between batches (a batch
// of 512 spans at the attributes' bounds is about 1 MiB; a typical one ~150 KiB).
const maxKeptBuffer = 1 << 20

// rejectedSpans reads ExportTraceServiceResponse.partial_success (field 1, message)
// .rejected_spans (field 1, int64); 0 when absent or malformed.
func rejectedSpans(b []byte) uint64 {
	var rejected uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			ps, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0
			}
			b = b[n:]
			for len(ps) > 0 {
				pnum, ptyp, m := protowire.ConsumeTag(ps)
				if m < 0 {
					return 0
				}
				ps = ps[m:]
				if pnum == 1 && ptyp == protowire.VarintType {
					v, m := protowire.ConsumeVarint(ps)
					if m < 0 {
						return 0
					}
					ps = ps[m:]
					if int64(v) > 0 {
						rejected = v
					}
					continue
				}
				m = protowire.ConsumeFieldValue(pnum, ptyp, ps)
				if m < 0 {
					return 0
				}
				ps = ps[m:]
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0
		}
		b = b[n:]
	}
	return rejected
}
