package tracing

import (
	"net/http"
)

// The propagation formats: how a request says which trace it belongs to, which span
// sent it, and whether the trace is recorded. The proxy reads the first valid one of
// W3C Trace Context, B3 single-header and B3 multi-header, in that order, and writes
// back the format it read (W3C for a trace it starts). Each parser is strict: a field
// of the wrong length, an upper-case or non-hex digit, an all-zero id or a repeated
// header makes the whole header absent, as the specifications ask ("if the header is
// invalid, the vendor MUST ignore it and MAY restart the trace"). None allocates: it
// reads the header's first value in place and decodes into fixed-size arrays.

// Canonical header keys, used as map keys directly (the servers canonicalise the
// names they read, and a lookup by the canonical key costs no allocation).
const (
	hdrTraceparent  = "Traceparent"
	hdrTracestate   = "Tracestate"
	hdrB3           = "B3"
	hdrB3TraceID    = "X-B3-Traceid"
	hdrB3SpanID     = "X-B3-Spanid"
	hdrB3ParentSpan = "X-B3-Parentspanid"
	hdrB3Sampled    = "X-B3-Sampled"
	hdrB3Flags      = "X-B3-Flags"
)

// Format is the propagation format a request's context came in.
type Format uint8

const (
	// FormatNone: the request carried no valid context.
	FormatNone Format = iota
	// FormatW3C: traceparent (and tracestate, carried through untouched).
	// https://www.w3.org/TR/trace-context/
	FormatW3C
	// FormatB3Single: the one b3 header. https://github.com/openzipkin/b3-propagation
	FormatB3Single
	// FormatB3Multi: the X-B3-* headers.
	FormatB3Multi
)

func (f Format) String() string {
	switch f {
	case FormatW3C:
		return "w3c"
	case FormatB3Single:
		return "b3single"
	case FormatB3Multi:
		return "b3multi"
	}
	return "none"
}

// TraceID is a 128-bit trace id. A 64-bit B3 id is held in the low 8 bytes (the upper
// 8 zero), as OpenTelemetry and Zipkin left-pad it.
type TraceID [16]byte

// SpanID is a 64-bit span id.
type SpanID [8]byte

// IsZero reports whether the id is all zero (invalid in both formats).
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the id is all zero (invalid in both formats).
func (s SpanID) IsZero() bool { return s == SpanID{} }

func (t TraceID) String() string { return string(appendHex(nil, t[:])) }
func (s SpanID) String() string  { return string(appendHex(nil, s[:])) }

// Context is a request's incoming trace context.
type Context struct {
	Format  Format
	TraceID TraceID
	// SpanID is the caller's span: the parent of the proxy's span. Zero with HasIDs
	// false (a B3 header that carries only a sampling decision).
	SpanID SpanID
	// HasIDs: the context names a trace and a span. B3 allows a lone sampling
	// decision ("b3: 0", "X-B3-Sampled: 0" without ids).
	HasIDs bool
	// Decided: the context carries a sampling decision, Sampled. A W3C context always
	// does (its sampled flag); B3 may defer it to the receiver.
	Decided, Sampled bool
	// Debug is B3's debug flag (X-B3-Flags: 1, or "d"): sampled, and said again on
	// the way out.
	Debug bool
	// trace64: the B3 trace id came in 64-bit form and goes out in it.
	trace64 bool
	// flags are the W3C trace-flags as received.
	flags byte
}

// Extract reads the request's trace context: the first valid of traceparent, b3 and
// X-B3-*. ok is false when none is valid (a malformed header counts as absent).
func Extract(h http.Header) (c Context, ok bool) {
	if v, one := single(h, hdrTraceparent); one {
		if c, ok = ParseTraceparent(v); ok {
			return c, true
		}
	}
	if v, one := single(h, hdrB3); one {
		if c, ok = ParseB3Single(v); ok {
			return c, true
		}
	}
	if _, any := h[hdrB3TraceID]; any {
		return parseB3Multi(h)
	}
	if v, one := single(h, hdrB3Sampled); one {
		// A lone decision, without ids.
		if s, valid := parseB3Sampled(v); valid {
			return Context{Format: FormatB3Multi, Decided: true, Sampled: s}, true
		}
	}
	if v, one := single(h, hdrB3Flags); one && v == "1" {
		return Context{Format: FormatB3Multi, Decided: true, Sampled: true, Debug: true}, true
	}
	return Context{}, false
}

// single is the header's value when it occurs exactly once. A repeated propagation
// header is ambiguous (two parents) and treated as absent.
func single(h http.Header, key string) (string, bool) {
	vs := h[key]
	if len(vs) != 1 {
		return "", false
	}
	return vs[0], true
}

// traceparentLen is the length of a version-00 traceparent:
// 2 (version) + 1 + 32 (trace-id) + 1 + 16 (parent-id) + 1 + 2 (flags).
const traceparentLen = 55

// ParseTraceparent parses a traceparent value (W3C Trace Context §3.2). Version 00
// must be exactly 55 characters. A higher version is parsed by its first 55
// characters, which must be followed by nothing or by "-" (§3.2.4, forward
// compatibility); version ff is invalid. Hex digits are lower-case only, and an
// all-zero trace-id or parent-id is invalid.
func ParseTraceparent(v string) (Context, bool) {
	var c Context
	if len(v) < traceparentLen {
		return c, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff {
		return c, false
	}
	if ver == 0 && len(v) != traceparentLen {
		return c, false
	}
	if len(v) > traceparentLen && v[traceparentLen] != '-' {
		return c, false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return c, false
	}
	if !decodeHex(c.TraceID[:], v[3:35]) || !decodeHex(c.SpanID[:], v[36:52]) {
		return c, false
	}
	flags, ok := hexByte(v[53], v[54])
	if !ok || c.TraceID.IsZero() || c.SpanID.IsZero() {
		return c, false
	}
	c.Format, c.HasIDs, c.Decided = FormatW3C, true, true
	c.Sampled = flags&flagSampled != 0
	c.flags = flags
	return c, true
}

// W3C trace-flags: sampled (Level 1) and random (Level 2: the trace-id's right 7
// bytes are random). Other bits are not defined by version 00 and are not sent on.
const (
	flagSampled = 0x01
	flagRandom  = 0x02
)

// ParseB3Single parses the b3 header: "{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]"
// or a lone "{SamplingState}", where SamplingState is 1, 0 or d (debug). TraceId is 16
// or 32 lower-case hex digits, the span ids 16.
func ParseB3Single(v string) (Context, bool) {
	var c Context
	c.Format = FormatB3Single
	if len(v) == 1 {
		if !parseSamplingState(&c, v) {
			return Context{}, false
		}
		return c, true
	}
	traceLen := 32
	if len(v) > 16 && v[16] == '-' {
		traceLen = 16
	}
	if len(v) < traceLen+1+16 || v[traceLen] != '-' {
		return Context{}, false
	}
	if !decodeTraceID(&c, v[:traceLen]) || !decodeHex(c.SpanID[:], v[traceLen+1:traceLen+17]) || c.SpanID.IsZero() {
		return Context{}, false
	}
	c.HasIDs = true
	rest := v[traceLen+17:]
	if rest == "" {
		return c, true
	}
	if len(rest) < 2 || rest[0] != '-' {
		return Context{}, false
	}
	rest = rest[1:]
	// The sampling state is one character; what may follow is the parent span id.
	if !parseSamplingState(&c, rest[:1]) {
		return Context{}, false
	}
	rest = rest[1:]
	if rest == "" {
		return c, true
	}
	var parent SpanID
	if len(rest) != 17 || rest[0] != '-' || !decodeHex(parent[:], rest[1:]) || parent.IsZero() {
		return Context{}, false
	}
	return c, true
}

func parseSamplingState(c *Context, s string) bool {
	switch s {
	case "0":
		c.Decided, c.Sampled = true, false
	case "1":
		c.Decided, c.Sampled = true, true
	case "d":
		c.Decided, c.Sampled, c.Debug = true, true, true
	default:
		return false
	}
	return true
}

// parseB3Multi parses the X-B3-* headers: X-B3-TraceId (16 or 32 hex) and X-B3-SpanId
// (16 hex) both required, X-B3-ParentSpanId optional (16 hex), X-B3-Sampled 1 or 0
// (true/false, which older tracers sent, accepted), X-B3-Flags 1 for debug. Any
// present field that is malformed makes the whole context absent.
func parseB3Multi(h http.Header) (Context, bool) {
	c := Context{Format: FormatB3Multi}
	tid, ok := single(h, hdrB3TraceID)
	if !ok || !decodeTraceID(&c, tid) {
		return Context{}, false
	}
	sid, ok := single(h, hdrB3SpanID)
	if !ok || len(sid) != 16 || !decodeHex(c.SpanID[:], sid) || c.SpanID.IsZero() {
		return Context{}, false
	}
	c.HasIDs = true
	if vs, present := h[hdrB3ParentSpan]; present {
		var parent SpanID
		if len(vs) != 1 || len(vs[0]) != 16 || !decodeHex(parent[:], vs[0]) || parent.IsZero() {
			return Context{}, false
		}
	}
	if vs, present := h[hdrB3Flags]; present {
		if len(vs) != 1 {
			return Context{}, false
		}
		if vs[0] == "1" {
			c.Decided, c.Sampled, c.Debug = true, true, true
			return c, true // debug implies sampled; X-B3-Sampled is not read
		}
	}
	if vs, present := h[hdrB3Sampled]; present {
		if len(vs) != 1 {
			return Context{}, false
		}
		s, valid := parseB3Sampled(vs[0])
		if !valid {
			return Context{}, false
		}
		c.Decided, c.Sampled = true, s
	}
	return c, true
}

func parseB3Sampled(v string) (sampled, ok bool) {
	switch v {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

// decodeTraceID reads a B3 trace id of 16 or 32 hex digits.
func decodeTraceID(c *Context, s string) bool {
	switch len(s) {
	case 32:
		if !decodeHex(c.TraceID[:], s) {
			return false
		}
	case 16:
		if !decodeHex(c.TraceID[8:], s) {
			return false
		}
		c.trace64 = true
	default:
		return false
	}
	return !c.TraceID.IsZero()
}

// decodeHex decodes lower-case hex s into dst, which must be exactly half its length.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		b, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexNibble(hi)
	l, ok2 := hexNibble(lo)
	return h<<4 | l, ok1 && ok2
}

// hexNibble accepts lower-case digits only: both specifications write ids in
// lower-case hex (W3C: HEXDIGLC), and an upper-case id is a malformed header.
func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

func appendHex(b []byte, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// Inject writes the outgoing context of a request whose proxy span is span (a child
// of in's span, or the root of a new trace when in has no ids), in in's format: W3C
// for a trace the proxy starts. sampled is the decision the proxy applied.
func Inject(h http.Header, in Context, trace TraceID, span SpanID, sampled bool) {
	switch {
	case in.Format == FormatB3Single && in.HasIDs:
		injectB3Single(h, in, trace, span, sampled)
	case in.Format == FormatB3Multi && in.HasIDs:
		injectB3Multi(h, in, span, sampled)
	case in.Format == FormatB3Single || in.Format == FormatB3Multi:
		// A lone B3 decision: the new trace goes on in the same family of headers.
		delete(h, hdrB3)
		delete(h, hdrB3Sampled)
		delete(h, hdrB3Flags)
		in.HasIDs = true
		if in.Format == FormatB3Single {
			injectB3Single(h, in, trace, span, sampled)
		} else {
			h[hdrB3TraceID] = []string{trace.String()}
			injectB3Multi(h, in, span, sampled)
		}
	default:
		injectW3C(h, in, trace, span, sampled)
	}
}

func injectW3C(h http.Header, in Context, trace TraceID, span SpanID, sampled bool) {
	var buf [traceparentLen]byte
	b := append(buf[:0], "00-"...)
	b = appendHex(b, trace[:])
	b = append(b, '-')
	b = appendHex(b, span[:])
	b = append(b, '-')
	var flags byte
	if in.Format == FormatW3C {
		flags = in.flags & flagRandom // the trace id is the caller's, as it said
	} else {
		flags = flagRandom // the proxy's trace ids are random (randomID)
		// tracestate belongs to the trace it came with (§3.3: it must not be
		// read when traceparent was not): a new trace starts without it.
		delete(h, hdrTracestate)
	}
	if sampled {
		flags |= flagSampled
	}
	b = appendHex(b, []byte{flags})
	h[hdrTraceparent] = []string{string(b)}
}

func injectB3Single(h http.Header, in Context, trace TraceID, span SpanID, sampled bool) {
	var buf [32 + 1 + 16 + 2 + 17]byte
	b := buf[:0]
	if in.trace64 {
		b = appendHex(b, trace[8:])
	} else {
		b = appendHex(b, trace[:])
	}
	b = append(b, '-')
	b = appendHex(b, span[:])
	switch {
	case in.Debug:
		b = append(b, "-d"...)
	case sampled:
		b = append(b, "-1"...)
	default:
		b = append(b, "-0"...)
	}
	if !in.SpanID.IsZero() {
		b = append(b, '-')
		b = appendHex(b, in.SpanID[:])
	}
	h[hdrB3] = []string{string(b)}
}

// injectB3Multi rewrites the span and parent ids; X-B3-TraceId stays as it came (its
// 64- or 128-bit form included).
func injectB3Multi(h http.Header, in Context, span SpanID, sampled bool) {
	h[hdrB3SpanID] = []string{span.String()}
	if in.SpanID.IsZero() {
		delete(h, hdrB3ParentSpan)
	} else {
		h[hdrB3ParentSpan] = []string{in.SpanID.String()}
	}
	if in.Debug {
		// Debug implies sampled; B3 says not to send X-B3-Sampled with it.
		h[hdrB3Flags] = []string{"1"}
		delete(h, hdrB3Sampled)
		return
	}
	if sampled {
		h[hdrB3Sampled] = sampledOne
	} else {
		h[hdrB3Sampled] = sampledZero
	}
}

// Shared, never written to.
var (
	sampledOne  = []string{"1"}
	sampledZero = []string{"0"}
)
