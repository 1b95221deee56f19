package tracing

import (
	"io"
	"testing"

	"github.com/weftmesh/weft/proxy/api"
)

// BenchmarkStartFinish is a sampled request's tracing work on the request path:
// extract, ids, span, inject, enqueue.
func BenchmarkStartFinish(b *testing.B) {
	tr := New(Options{QueueSize: 1 << 20})
	tr.cur.Store(&state{threshold: 1_000_000, exp: &exporter{queue: make(chan *Span, 1<<20)}})
	r := request("traceparent", "00-"+tid32+"-"+sid+"-01")
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Traceparent"] = []string{"00-" + tid32 + "-" + sid + "-01"}
		s := tr.Start(Client, r)
		s.SetStatus(200, -1)
		tr.Finish(s)
		select {
		case <-tr.cur.Load().exp.queue:
		default:
		}
	}
}

// BenchmarkEncodeBatch is the exporter's work per span: a batch of 512 as OTLP bytes.
func BenchmarkEncodeBatch(b *testing.B) {
	tr := New(Options{})
	e := &exporter{t: tr, resource: resource(&api.Tracing{ServiceName: "web", Attributes: []*api.Attribute{{Key: "k8s.pod.name", Value: "web-1"}}})}
	batch := make([]*Span, 512)
	for i := range batch {
		s := newSpan(Client, randomTraceID(), randomSpanID(), "GET", "http", "/api/items", "id=7", "web.shop:8080")
		s.SetRoute("shop/web/0")
		s.SetPeer("spiffe://cluster.local/ns/shop/sa/api", "10.0.0.7:8080")
		s.SetStatus(200, -1)
		batch[i] = s
	}
	b.ReportAllocs()
	for b.Loop() {
		msg, err := e.encode(batch)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Discard.Write(msg)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/span")
}
