// Package tracing is the proxy's distributed tracing: a request's trace context (W3C
// Trace Context and B3, propagation.go), the sampling decision, one span per request
// on each side of the proxy (a client span outbound, a server span inbound; span.go),
// and their export to an OTLP/gRPC collector (export.go).
//
// The configuration is the Mesh's spec.tracing, which the control plane sends in the
// pod's inbound policy (api.Tracing); Tracer.Update applies each one live. Without it
// the Tracer is off and Start is one atomic load and a nil check: no header is read,
// nothing is allocated.
//
// With it, the proxy continues the trace a request carries (its span becomes the
// parent of the proxy's, and the caller's sampling decision holds) or, when the
// request carries no decision, starts one sampled at the configured rate. The request
// goes on with the proxy's span id in the format it came in (W3C for a trace the
// proxy started), so the next hop (the peer proxy, then the app) continues the same
// trace as a child of the proxy's span.
//
// Who reaches it: any client of either side sends the headers the parsers read
// (propagation.go: strict, allocation-free, fuzzed). A caller can choose its trace id
// and ask for every request to be sampled; what that costs is bounded by the export
// queue (spans beyond it are dropped and counted), never by the request path: Finish
// never blocks, and the exporter's calls to the collector run on its own goroutine,
// each with a deadline.
package tracing

import (
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/api"
)

// Options bound the tracer. Zero fields take the defaults.
type Options struct {
	Log logr.Logger
	// QueueSize bounds the spans waiting for export (default 2048, about 1 MiB at
	// the attributes' bounds); a span that finds it full is dropped.
	QueueSize int
	// BatchSize is the most spans one Export call carries (default 512), and
	// BatchInterval how long a span waits for a batch to fill (default 1s).
	BatchSize     int
	BatchInterval time.Duration
	// ExportTimeout bounds one Export call, dial included (default 5s). Backoff is
	// how long the exporter waits after a failed call, doubled per failure up to
	// MaxBackoff (defaults 500ms and 30s).
	ExportTimeout       time.Duration
	Backoff, MaxBackoff time.Duration
}

func (o *Options) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 2048
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.BatchInterval <= 0 {
		o.BatchInterval = time.Second
	}
	if o.ExportTimeout <= 0 {
		o.ExportTimeout = 5 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
}

// Why a span was not exported (weft_tracing_spans_dropped_total's reason label).
const (
	dropQueueFull    = iota // the export queue was full (collector slow or gone)
	dropExportFailed        // its Export call failed (unreachable, timed out, refused)
	dropRejected            // the collector answered but rejected it (partial success)
	dropDisabled            // tracing was switched off before the request ended
	dropReasons
)

var dropReasonNames = [dropReasons]string{"queue_full", "export_failed", "rejected", "disabled"}

// Tracer is the proxy's tracing, shared by both sides. The zero value is not usable;
// a nil *Tracer is off.
type Tracer struct {
	opts Options
	cur  atomic.Pointer[state]
	// mu serialises Update and Close.
	mu     sync.Mutex
	closed bool

	exported atomic.Uint64
	dropped  [dropReasons]atomic.Uint64
}

// state is one configuration in force: requests read it with one atomic load.
type state struct {
	cfg *api.Tracing
	// threshold: a request without a decision is sampled when a random number
	// in [0, 1e6) is below it.
	threshold uint32
	exp       *exporter
}

// New returns a Tracer that is off until Update gives it a configuration.
func New(o Options) *Tracer {
	o.defaults()
	return &Tracer{opts: o}
}

// Enabled reports whether a configuration is in force.
func (t *Tracer) Enabled() bool { return t != nil && t.cur.Load() != nil }

// Update applies the Mesh's tracing configuration; nil (or no collector) switches
// tracing off. Requests started before keep their spans; a change of sampling rate
// keeps the exporter (and its queue), a change of collector or resource replaces it
// (the old one exports what it holds, then stops).
func (t *Tracer) Update(cfg *api.Tracing) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	old := t.cur.Load()
	if cfg.GetCollector() == "" {
		t.cur.Store(nil)
		if old != nil {
			old.exp.stop()
			t.opts.Log.Info("Distributed tracing off")
		}
		return
	}
	st := &state{cfg: cfg, threshold: min(cfg.GetSamplingPerMillion(), 1_000_000)}
	if old != nil && sameExport(old.cfg, cfg) {
		st.exp = old.exp
		t.cur.Store(st)
		return
	}
	st.exp = newExporter(t, cfg)
	t.cur.Store(st)
	if old != nil {
		old.exp.stop()
	}
	t.opts.Log.Info("Distributed tracing on", "collector", cfg.GetCollector(), "samplingPerMillion", st.threshold)
}

// sameExport: the exporter of a can serve b (same collector and resource).
func sameExport(a, b *api.Tracing) bool {
	if a.GetCollector() != b.GetCollector() || a.GetServiceName() != b.GetServiceName() {
		return false
	}
	return slices.EqualFunc(a.GetAttributes(), b.GetAttributes(), func(x, y *api.Attribute) bool {
		return x.GetKey() == y.GetKey() && x.GetValue() == y.GetValue()
	})
}

// Close switches tracing off for good and waits (up to the export timeout) for the
// exporter to send what it holds.
func (t *Tracer) Close() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.closed = true
	old := t.cur.Swap(nil)
	t.mu.Unlock()
	if old != nil {
		old.exp.stop()
		old.exp.wait()
	}
}

// Start begins the span of a request on one side of the proxy, and rewrites the
// request's trace context for the next hop. It returns nil when tracing is off (after
// one atomic load: nothing read, nothing allocated) and when the request is not
// sampled; then nothing more is to be done for it.
func (t *Tracer) Start(kind Kind, r *http.Request) *Span {
	if t == nil {
		return nil
	}
	st := t.cur.Load()
	if st == nil {
		return nil
	}
	return st.start(kind, r)
}

func (st *state) start(kind Kind, r *http.Request) *Span {
	in, ok := Extract(r.Header)
	var sampled bool
	if ok && in.Decided {
		if !in.Sampled {
			// The caller decided not to record this trace: it goes on as it came,
			// and the hops after keep the decision.
			return nil
		}
		sampled = true
	} else {
		sampled = st.sample()
	}
	trace, parent := in.TraceID, in.SpanID
	if !in.HasIDs {
		trace, parent = randomTraceID(), SpanID{}
	}
	if !sampled {
		// Say so to the next hops, so that they do not start a trace of their own
		// for a request this one chose not to record.
		Inject(r.Header, in, trace, randomSpanID(), false)
		return nil
	}
	scheme := r.URL.Scheme
	if scheme == "" {
		scheme = "http" // the app speaks plaintext to its proxy, and the proxies mTLS
	}
	s := newSpan(kind, trace, parent, r.Method, scheme, r.URL.Path, r.URL.RawQuery, r.Host)
	Inject(r.Header, in, trace, s.SpanID, true)
	return s
}

// sample decides for a request that carries no decision.
func (st *state) sample() bool {
	switch st.threshold {
	case 0:
		return false
	case 1_000_000:
		return true
	}
	return rand.Uint32N(1_000_000) < st.threshold
}

// Finish ends a span and queues it for export. It never blocks: a full queue drops
// the span (counted).
func (t *Tracer) Finish(s *Span) {
	s.end = time.Now()
	st := t.cur.Load()
	if st == nil {
		t.dropped[dropDisabled].Add(1)
		return
	}
	select {
	case st.exp.queue <- s:
	default:
		t.dropped[dropQueueFull].Add(1)
	}
}

// WriteMetrics writes the tracer's counters (a metrics.Registry collector).
func (t *Tracer) WriteMetrics(w io.Writer) {
	pw := promtext.NewWriter(w)
	pw.Family("weft_tracing_spans_exported_total", promtext.Counter, "Spans the proxy sent to the tracing collector and the collector accepted.")
	pw.Uint("weft_tracing_spans_exported_total", "", t.exported.Load())
	pw.Family("weft_tracing_spans_dropped_total", promtext.Counter, "Spans the proxy did not export, by reason: queue_full (the collector is slow or gone and the export queue was full), export_failed (the Export call failed or timed out), rejected (the collector refused them), disabled (tracing was switched off before the request ended).")
	for i, name := range dropReasonNames {
		pw.Uint("weft_tracing_spans_dropped_total", promtext.L("reason", name), t.dropped[i].Load())
	}
	var on int64
	if t.Enabled() {
		on = 1
	}
	pw.Family("weft_tracing_enabled", promtext.Gauge, "1 while the proxy reports spans to a collector (the Mesh's spec.tracing).")
	pw.Int("weft_tracing_enabled", "", on)
	_ = pw.Flush()
}

// Exported and Dropped are the counters, for tests.
func (t *Tracer) Exported() uint64 { return t.exported.Load() }

// Dropped is the number of spans dropped for every reason.
func (t *Tracer) Dropped() uint64 {
	var n uint64
	for i := range t.dropped {
		n += t.dropped[i].Load()
	}
	return n
}
