package tracing

import (
	"net/http"
	"strings"
	"testing"
)

const (
	tid32 = "4bf92f3577b34da6a3ce929d0e0e4736"
	tid16 = "a3ce929d0e0e4736"
	sid   = "00f067aa0ba902b7"
	psid  = "1111111111111111"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       http.Header
		ok      bool
		format  Format
		trace   string // hex, 32
		span    string
		hasIDs  bool
		decided bool
		sampled bool
		debug   bool
	}{
		{name: "none", h: hdr()},
		{name: "w3c sampled", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-01"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "w3c unsampled", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-00"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true},
		{name: "w3c unknown flag bits ignored", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-ff"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "w3c future version with more fields", h: hdr("traceparent", "cc-"+tid32+"-"+sid+"-01-what-the-future-holds"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "w3c future version exact length", h: hdr("traceparent", "01-"+tid32+"-"+sid+"-00"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true},
		{name: "w3c future version, no dash after flags", h: hdr("traceparent", "01-"+tid32+"-"+sid+"-00x")},
		{name: "w3c version 00 with extra", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-01-")},
		{name: "w3c version ff", h: hdr("traceparent", "ff-"+tid32+"-"+sid+"-01")},
		{name: "w3c upper-case hex", h: hdr("traceparent", "00-"+strings.ToUpper(tid32)+"-"+sid+"-01")},
		{name: "w3c zero trace id", h: hdr("traceparent", "00-"+strings.Repeat("0", 32)+"-"+sid+"-01")},
		{name: "w3c zero parent id", h: hdr("traceparent", "00-"+tid32+"-"+strings.Repeat("0", 16)+"-01")},
		{name: "w3c short", h: hdr("traceparent", "00-"+tid32[:31]+"-"+sid+"-01")},
		{name: "w3c bad separator", h: hdr("traceparent", "00_"+tid32+"-"+sid+"-01")},
		{name: "w3c repeated header", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-01", "traceparent", "00-"+tid32+"-"+sid+"-01")},
		{name: "w3c invalid falls back to b3", h: hdr("traceparent", "garbage", "b3", tid32+"-"+sid+"-1"), ok: true, format: FormatB3Single, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "w3c wins over b3", h: hdr("traceparent", "00-"+tid32+"-"+sid+"-00", "b3", tid32+"-"+psid+"-1"), ok: true, format: FormatW3C, trace: tid32, span: sid, hasIDs: true, decided: true},
		{name: "b3 single 128-bit deferred", h: hdr("b3", tid32+"-"+sid), ok: true, format: FormatB3Single, trace: tid32, span: sid, hasIDs: true},
		{name: "b3 single 64-bit", h: hdr("b3", tid16+"-"+sid+"-0"), ok: true, format: FormatB3Single, trace: "0000000000000000" + tid16, span: sid, hasIDs: true, decided: true},
		{name: "b3 single debug with parent", h: hdr("b3", tid32+"-"+sid+"-d-"+psid), ok: true, format: FormatB3Single, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true, debug: true},
		{name: "b3 single lone decision", h: hdr("b3", "0"), ok: true, format: FormatB3Single, decided: true},
		{name: "b3 single bad sampling state", h: hdr("b3", tid32+"-"+sid+"-x")},
		{name: "b3 single zero parent", h: hdr("b3", tid32+"-"+sid+"-1-0000000000000000")},
		{name: "b3 single trailing junk", h: hdr("b3", tid32+"-"+sid+"-1-"+psid+"-")},
		{name: "b3 single 24-digit trace id", h: hdr("b3", tid32[:24]+"-"+sid)},
		{name: "b3 single lone junk", h: hdr("b3", "2")},
		{name: "b3 multi sampled", h: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-ParentSpanId", psid, "X-B3-Sampled", "1"), ok: true, format: FormatB3Multi, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "b3 multi legacy true", h: hdr("X-B3-TraceId", tid16, "X-B3-SpanId", sid, "X-B3-Sampled", "true"), ok: true, format: FormatB3Multi, trace: "0000000000000000" + tid16, span: sid, hasIDs: true, decided: true, sampled: true},
		{name: "b3 multi deferred", h: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid), ok: true, format: FormatB3Multi, trace: tid32, span: sid, hasIDs: true},
		{name: "b3 multi debug", h: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-Flags", "1", "X-B3-Sampled", "0"), ok: true, format: FormatB3Multi, trace: tid32, span: sid, hasIDs: true, decided: true, sampled: true, debug: true},
		{name: "b3 multi lone unsampled", h: hdr("X-B3-Sampled", "0"), ok: true, format: FormatB3Multi, decided: true},
		{name: "b3 multi missing span id", h: hdr("X-B3-TraceId", tid32, "X-B3-Sampled", "1")},
		{name: "b3 multi bad parent", h: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-ParentSpanId", "xyz")},
		{name: "b3 multi bad sampled", h: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-Sampled", "yes")},
		{name: "b3 multi zero trace", h: hdr("X-B3-TraceId", strings.Repeat("0", 16), "X-B3-SpanId", sid)},
		{name: "b3 multi repeated trace id", h: hdr("X-B3-TraceId", tid32, "X-B3-TraceId", tid32, "X-B3-SpanId", sid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := Extract(tc.h)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.ok, c)
			}
			if !ok {
				return
			}
			if c.Format != tc.format || c.HasIDs != tc.hasIDs || c.Decided != tc.decided || c.Sampled != tc.sampled || c.Debug != tc.debug {
				t.Fatalf("got %+v, want format %v hasIDs %v decided %v sampled %v debug %v", c, tc.format, tc.hasIDs, tc.decided, tc.sampled, tc.debug)
			}
			if tc.hasIDs && (c.TraceID.String() != tc.trace || c.SpanID.String() != tc.span) {
				t.Fatalf("ids %s %s, want %s %s", c.TraceID, c.SpanID, tc.trace, tc.span)
			}
		})
	}
}

func TestInject(t *testing.T) {
	var proxySpan SpanID
	copy(proxySpan[:], []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11})
	const ps = "aabbccddeeff0011"
	newTrace := TraceID{15: 1}
	for _, tc := range []struct {
		name    string
		in      http.Header
		sampled bool
		want    map[string]string // "" value: absent
	}{
		{name: "w3c continued keeps tracestate", in: hdr("traceparent", "00-"+tid32+"-"+sid+"-03", "tracestate", "vendor=x"), sampled: true,
			want: map[string]string{"Traceparent": "00-" + tid32 + "-" + ps + "-03", "Tracestate": "vendor=x"}},
		{name: "w3c future version goes out as 00", in: hdr("traceparent", "cc-"+tid32+"-"+sid+"-01-extra"), sampled: true,
			want: map[string]string{"Traceparent": "00-" + tid32 + "-" + ps + "-01"}},
		{name: "new trace is w3c, stale tracestate dropped", in: hdr("tracestate", "vendor=x"), sampled: true,
			want: map[string]string{"Traceparent": "00-00000000000000000000000000000001-" + ps + "-03", "Tracestate": ""}},
		{name: "new trace unsampled", in: hdr(), sampled: false,
			want: map[string]string{"Traceparent": "00-00000000000000000000000000000001-" + ps + "-02"}},
		{name: "b3 single 64-bit stays 64-bit", in: hdr("b3", tid16+"-"+sid), sampled: true,
			want: map[string]string{"B3": tid16 + "-" + ps + "-1-" + sid, "Traceparent": ""}},
		{name: "b3 single debug", in: hdr("b3", tid32+"-"+sid+"-d"), sampled: true,
			want: map[string]string{"B3": tid32 + "-" + ps + "-d-" + sid}},
		{name: "b3 single lone decision starts b3", in: hdr("b3", "1"), sampled: true,
			want: map[string]string{"B3": "00000000000000000000000000000001-" + ps + "-1"}},
		{name: "b3 multi deferred decided here", in: hdr("X-B3-TraceId", tid16, "X-B3-SpanId", sid, "X-B3-ParentSpanId", psid), sampled: false,
			want: map[string]string{"X-B3-Traceid": tid16, "X-B3-Spanid": ps, "X-B3-Parentspanid": sid, "X-B3-Sampled": "0", "Traceparent": ""}},
		{name: "b3 multi debug", in: hdr("X-B3-TraceId", tid32, "X-B3-SpanId", sid, "X-B3-Flags", "1"), sampled: true,
			want: map[string]string{"X-B3-Traceid": tid32, "X-B3-Spanid": ps, "X-B3-Flags": "1", "X-B3-Sampled": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := Extract(tc.in)
			trace := c.TraceID
			if !c.HasIDs {
				trace = newTrace
			}
			Inject(tc.in, c, trace, proxySpan, tc.sampled)
			for k, v := range tc.want {
				if got := tc.in.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			// What went out reads back as the same trace, the proxy's span its parent.
			back, ok := Extract(tc.in)
			if !ok || back.TraceID != trace || back.SpanID != proxySpan || back.Sampled != tc.sampled {
				t.Errorf("read back %+v ok=%v", back, ok)
			}
		})
	}
}

func TestParsersDoNotAllocate(t *testing.T) {
	h := hdr("traceparent", "00-"+tid32+"-"+sid+"-01", "b3", tid32+"-"+sid+"-1-"+psid,
		"X-B3-TraceId", tid32, "X-B3-SpanId", sid)
	bad := hdr("traceparent", "00-"+tid32+"-"+sid+"-0", "b3", "junk", "X-B3-TraceId", tid32, "X-B3-SpanId", "short")
	if n := testing.AllocsPerRun(100, func() {
		Extract(h)
		Extract(bad)
	}); n != 0 {
		t.Fatalf("Extract allocates %v times per run", n)
	}
}
