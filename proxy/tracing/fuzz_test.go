package tracing

import (
	"net/http"
	"testing"
)

// FuzzExtract feeds every propagation header a peer controls. Whatever it sends, the
// parsers must not panic, a context they accept must have non-zero ids, and the
// context the proxy writes in its place must read back as the same trace with the
// proxy's span as the parent.
func FuzzExtract(f *testing.F) {
	f.Add("00-"+tid32+"-"+sid+"-01", "", "", "", "", "")
	f.Add("cc-"+tid32+"-"+sid+"-01-future", "", "", "", "", "")
	f.Add("", tid32+"-"+sid+"-d-"+psid, "", "", "", "")
	f.Add("", "1", "", "", "", "")
	f.Add("", "", tid16, sid, psid, "true")
	f.Add("", "", tid32, sid, "", "")
	f.Add("00-"+tid32+"-"+sid+"-0", "junk", tid32, "short", "", "2")
	f.Fuzz(func(t *testing.T, tp, b3, tid, spid, parent, sampled string) {
		h := http.Header{}
		for k, v := range map[string]string{hdrTraceparent: tp, hdrB3: b3, hdrB3TraceID: tid, hdrB3SpanID: spid, hdrB3ParentSpan: parent, hdrB3Sampled: sampled} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		c, ok := Extract(h)
		if !ok {
			return
		}
		if c.HasIDs && (c.TraceID.IsZero() || c.SpanID.IsZero()) {
			t.Fatalf("accepted zero ids: %+v", c)
		}
		trace := c.TraceID
		if !c.HasIDs {
			trace = randomTraceID()
		}
		span := randomSpanID()
		sampledOut := !c.Decided || c.Sampled
		Inject(h, c, trace, span, sampledOut)
		back, ok := Extract(h)
		if !ok || back.TraceID != trace || back.SpanID != span || !back.Decided || back.Sampled != sampledOut {
			t.Fatalf("wrote %v, read back %+v ok=%v (in %+v)", h, back, ok, c)
		}
	})
}
