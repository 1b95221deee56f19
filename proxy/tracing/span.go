package tracing

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Kind is the side of the proxy a span is on.
type Kind uint8

const (
	// Server is the inbound proxy's span: a request that arrived for the pod's app
	// (SPAN_KIND_SERVER).
	Server Kind = iota + 1
	// Client is the outbound proxy's span: a request the pod's app sent
	// (SPAN_KIND_CLIENT).
	Client
)

// direction is the Linkerd proxy's "direction" span label.
func (k Kind) direction() string {
	if k == Server {
		return "inbound"
	}
	return "outbound"
}

// Bounds on what a span keeps of a request: a span waits in the export queue, so
// its size times the queue's bounds the tracer's memory. A longer value is cut (and
// copied, so the request's header block is not kept alive by a substring).
const (
	maxPathLen  = 512
	maxQueryLen = 512
	maxValueLen = 256
)

// Span is one request through one side of the proxy. Start fills the context and the
// request's attributes; the pipeline adds what it learns on the way (SetRoute,
// SetPeer) and the response (SetStatus), then hands it to Finish. A Span belongs to
// one request's goroutine until Finish, and to the exporter after it.
type Span struct {
	TraceID  TraceID
	SpanID   SpanID
	ParentID SpanID // zero for a trace's root
	Kind     Kind
	start    time.Time
	end      time.Time

	method, scheme, path, query, host string
	// route is the route's name (rt_route); peerID the other side's verified
	// identity (inbound: the client's; outbound: the endpoint's); peerAddr the
	// other side's address.
	route, peerID, peerAddr string

	status     int
	grpcStatus int // -1: none
	aborted    bool
}

func newSpan(kind Kind, trace TraceID, parent SpanID, method, scheme, path, query, host string) *Span {
	return &Span{
		TraceID: trace, SpanID: randomSpanID(), ParentID: parent, Kind: kind,
		start:  time.Now(),
		method: bounded(method, maxValueLen), scheme: scheme,
		path: bounded(path, maxPathLen), query: bounded(query, maxQueryLen),
		host:       bounded(host, maxValueLen),
		grpcStatus: -1,
	}
}

// bounded is s cut to n bytes, copied when cut.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.Clone(s[:n])
}

// SetRoute records the route the request matched (its rt_route name).
func (s *Span) SetRoute(name string) { s.route = bounded(name, maxValueLen) }

// SetPeer records the other side: its verified identity (empty: none) and address.
func (s *Span) SetPeer(id, addr string) {
	s.peerID, s.peerAddr = bounded(id, maxValueLen), addr
}

// SetStatus records the response: its HTTP status and gRPC status (-1: none).
func (s *Span) SetStatus(status, grpcStatus int) { s.status, s.grpcStatus = status, grpcStatus }

// Abort records that the exchange ended abnormally (the response broke midway).
func (s *Span) Abort() { s.aborted = true }

// randomSpanID is a random, non-zero span id. math/rand/v2's top-level source is
// the runtime's per-thread ChaCha8: fast, lock-free, and not predictable by a peer.
func randomSpanID() SpanID {
	var id SpanID
	for id.IsZero() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

// randomTraceID is a random, non-zero trace id (W3C Level 2's "random" flag holds).
func randomTraceID() TraceID {
	var id TraceID
	for id.IsZero() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// failed says whether the span's status is an error: a 5xx, a gRPC status other than
// OK, or an exchange that broke.
func (s *Span) failed() (bool, string) {
	switch {
	case s.aborted:
		return true, "response aborted"
	case s.grpcStatus > 0:
		return true, "grpc-status " + strconv.Itoa(s.grpcStatus)
	case s.status >= 500:
		return true, "HTTP status " + strconv.Itoa(s.status)
	}
	return false, ""
}

// maxAttrs is the most attributes a span has (proto).
const maxAttrs = 14

// proto fills p with the span as OTLP, taking its attributes from sl. Attribute
// names: the Linkerd proxy's (direction, and OpenTelemetry's HTTP semantic
// conventions: http.request.method, url.scheme, url.path, url.query, server.address,
// server.port, http.response.status_code), then the conventions' http.route and
// rpc.grpc.status_code, and weft.peer.identity / network.peer.address for the other
// side.
func (s *Span) proto(p *tracepb.Span, sl *slab) {
	p.TraceId = s.TraceID[:]
	p.SpanId = s.SpanID[:]
	p.Name = s.name()
	p.StartTimeUnixNano = uint64(s.start.UnixNano())
	p.EndTimeUnixNano = uint64(s.end.UnixNano())
	if !s.ParentID.IsZero() {
		p.ParentSpanId = s.ParentID[:]
	}
	if s.Kind == Server {
		p.Kind = tracepb.Span_SPAN_KIND_SERVER
	} else {
		p.Kind = tracepb.Span_SPAN_KIND_CLIENT
	}
	attrs := sl.attrs()
	attrs = append(attrs, sl.str("direction", s.Kind.direction()), sl.str("http.request.method", s.method))
	if s.scheme != "" {
		attrs = append(attrs, sl.str("url.scheme", s.scheme))
	}
	attrs = append(attrs, sl.str("url.path", s.path))
	if s.query != "" {
		attrs = append(attrs, sl.str("url.query", s.query))
	}
	if s.host != "" {
		host, port, err := net.SplitHostPort(s.host)
		if err != nil {
			host, port = s.host, ""
		}
		attrs = append(attrs, sl.str("server.address", host))
		if n, err := strconv.ParseInt(port, 10, 32); err == nil {
			attrs = append(attrs, sl.num("server.port", n))
		}
	}
	if s.status != 0 {
		attrs = append(attrs, sl.num("http.response.status_code", int64(s.status)))
	}
	if s.grpcStatus >= 0 {
		attrs = append(attrs, sl.num("rpc.grpc.status_code", int64(s.grpcStatus)))
	}
	if s.route != "" {
		attrs = append(attrs, sl.str("http.route", s.route))
	}
	if s.peerID != "" {
		attrs = append(attrs, sl.str("weft.peer.identity", s.peerID))
	}
	if s.peerAddr != "" {
		attrs = append(attrs, sl.str("network.peer.address", s.peerAddr))
	}
	p.Attributes = attrs
	if bad, msg := s.failed(); bad {
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: msg}
	}
}

// slab holds the attribute messages of one batch in a few arrays, rather than four
// allocations per attribute (key/value, value, and the value's oneof wrapper): the
// exporter's cost per span was 35 allocations, most of them these.
type slab struct {
	ptrs []*commonpb.KeyValue
	kvs  []commonpb.KeyValue
	vals []commonpb.AnyValue
	strs []commonpb.AnyValue_StringValue
	ints []commonpb.AnyValue_IntValue
	used int // of kvs and vals
}

// newSlab holds the attributes of n spans. Its arrays never grow (a pointer into them
// must stay valid), so each is sized for the most a span can take.
func newSlab(n int) *slab {
	return &slab{
		ptrs: make([]*commonpb.KeyValue, 0, n*maxAttrs),
		kvs:  make([]commonpb.KeyValue, n*maxAttrs),
		vals: make([]commonpb.AnyValue, n*maxAttrs),
		strs: make([]commonpb.AnyValue_StringValue, 0, n*maxAttrs),
		ints: make([]commonpb.AnyValue_IntValue, 0, n*maxAttrs),
	}
}

// attrs is an empty list with room for one span's attributes.
func (sl *slab) attrs() []*commonpb.KeyValue {
	n := len(sl.ptrs)
	sl.ptrs = sl.ptrs[:n+maxAttrs]
	return sl.ptrs[n : n : n+maxAttrs]
}

// next is the slab's next key/value and value.
func (sl *slab) next() (*commonpb.KeyValue, *commonpb.AnyValue) {
	i := sl.used
	sl.used++
	return &sl.kvs[i], &sl.vals[i]
}

func (sl *slab) str(k, v string) *commonpb.KeyValue {
	kv, val := sl.next()
	sl.strs = append(sl.strs, commonpb.AnyValue_StringValue{StringValue: v})
	val.Value = &sl.strs[len(sl.strs)-1]
	kv.Key, kv.Value = k, val
	return kv
}

func (sl *slab) num(k string, v int64) *commonpb.KeyValue {
	kv, val := sl.next()
	sl.ints = append(sl.ints, commonpb.AnyValue_IntValue{IntValue: v})
	val.Value = &sl.ints[len(sl.ints)-1]
	kv.Key, kv.Value = k, val
	return kv
}

// strAttr is one string attribute, allocated on its own (the resource's).
func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// name is the span's name: the request's path, as the Linkerd proxy names its spans.
func (s *Span) name() string {
	if s.path == "" {
		return "/"
	}
	return s.path
}
