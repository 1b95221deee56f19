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

// proto is the span as OTLP. Attribute names: the Linkerd proxy's (direction, and
// OpenTelemetry's HTTP semantic conventions: http.request.method, url.scheme,
// url.path, url.query, server.address, server.port, http.response.status_code), then
// the conventions' http.route and rpc.grpc.status_code, and weft.peer.identity /
// network.peer.address for the other side.
func (s *Span) proto() *tracepb.Span {
	p := &tracepb.Span{
		TraceId:           s.TraceID[:],
		SpanId:            s.SpanID[:],
		Name:              s.name(),
		StartTimeUnixNano: uint64(s.start.UnixNano()),
		EndTimeUnixNano:   uint64(s.end.UnixNano()),
	}
	if !s.ParentID.IsZero() {
		p.ParentSpanId = s.ParentID[:]
	}
	if s.Kind == Server {
		p.Kind = tracepb.Span_SPAN_KIND_SERVER
	} else {
		p.Kind = tracepb.Span_SPAN_KIND_CLIENT
	}
	attrs := make([]*commonpb.KeyValue, 0, 12)
	attrs = append(attrs, str("direction", s.Kind.direction()), str("http.request.method", s.method))
	if s.scheme != "" {
		attrs = append(attrs, str("url.scheme", s.scheme))
	}
	attrs = append(attrs, str("url.path", s.path))
	if s.query != "" {
		attrs = append(attrs, str("url.query", s.query))
	}
	if s.host != "" {
		host, port, err := net.SplitHostPort(s.host)
		if err != nil {
			host, port = s.host, ""
		}
		attrs = append(attrs, str("server.address", host))
		if n, err := strconv.ParseInt(port, 10, 32); err == nil {
			attrs = append(attrs, num("server.port", n))
		}
	}
	if s.status != 0 {
		attrs = append(attrs, num("http.response.status_code", int64(s.status)))
	}
	if s.grpcStatus >= 0 {
		attrs = append(attrs, num("rpc.grpc.status_code", int64(s.grpcStatus)))
	}
	if s.route != "" {
		attrs = append(attrs, str("http.route", s.route))
	}
	if s.peerID != "" {
		attrs = append(attrs, str("weft.peer.identity", s.peerID))
	}
	if s.peerAddr != "" {
		attrs = append(attrs, str("network.peer.address", s.peerAddr))
	}
	p.Attributes = attrs
	if bad, msg := s.failed(); bad {
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: msg}
	}
	return p
}

// name is the span's name: the request's path, as the Linkerd proxy names its spans.
func (s *Span) name() string {
	if s.path == "" {
		return "/"
	}
	return s.path
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}
