package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/transport"
)

// RequestMirror (Gateway API): a share of a route's requests is copied to another
// backend, fire and forget. Anyone who can call the Service triggers copies, so a copy
// must never cost the request it copies anything but a header clone and a bounded
// body tee, and never cost the proxy more than a fixed amount of memory and
// goroutines:
//
//   - the primary request is never delayed: copies go out on their own goroutine,
//     after the primary's body has been read to its end (a body is teed, never read
//     ahead of the primary);
//   - a body over MirrorBodyLimit is not copied (outcome body_too_large), nor one
//     that did not arrive whole (body_incomplete);
//   - each mirror backend of a destination has at most MirrorOptions.InFlight
//     copies in flight (teeing or sending), so a hanging mirror does not starve the
//     destination's other mirrors, and the proxy has at most
//     MirrorOptions.InFlightTotal; past either, the copy is dropped (overloaded).
//     The memory held is at most InFlightTotal × MirrorBodyLimit;
//   - every copy has a deadline (MirrorOptions.Timeout), is never retried, and its
//     response is read (up to MirrorBodyLimit, so its connection can be reused) and
//     discarded.
//
// Each outcome is counted in weft_mirror_requests_total (proxy/metrics/mirror.go).

// MirrorBodyLimit is the largest request body copied to mirrors: the size the proxy
// already keeps for retries (proxy/internal/replay), and well above a typical API
// request.
const MirrorBodyLimit = 64 << 10

// MirrorOptions bound the copies RequestMirror filters make. Zero fields take the
// defaults below.
type MirrorOptions struct {
	// Timeout bounds each copy, from its send to its response body read. Default 5s.
	Timeout time.Duration
	// InFlight bounds the copies in flight to one mirror backend of one destination.
	// Default 32.
	InFlight int
	// InFlightTotal bounds the copies of the whole proxy in flight. Default 128.
	InFlightTotal int
}

const (
	// A copy's backend is a test or shadow deployment: 5 s is long enough for any
	// API answer and short enough that a hanging mirror frees its slots quickly.
	defaultMirrorTimeout = 5 * time.Second
	// 32 in flight per destination carries 3,200 copies/s at 10 ms each.
	defaultMirrorInFlight = 32
	// 128 × 64 KiB = 8 MiB at most held in copied bodies.
	defaultMirrorInFlightTotal = 128
)

func (o *MirrorOptions) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = defaultMirrorTimeout
	}
	if o.InFlight <= 0 {
		o.InFlight = defaultMirrorInFlight
	}
	if o.InFlightTotal <= 0 {
		o.InFlightTotal = defaultMirrorInFlightTotal
	}
}

// mirrorCopy is one copy to make: its target, the request head it copies, and the
// slots it holds.
type mirrorCopy struct {
	m      *router.Mirror
	bal    *balance.Balancer
	series *metrics.MirrorSeries
	dest   *atomic.Int64 // the mirror backend's slots
	head   *mirrorHead
}

// mirrorHead is a request head as the filters of one list left it, for its copies.
type mirrorHead struct {
	method string
	url    url.URL
	host   string
	header http.Header
	proto  int // 1 or 2: the protocol the copy speaks (as the client's)
}

// mirrorRequest is the copies of one request, and its body as it passes.
type mirrorRequest struct {
	p      *Pipeline
	copies []mirrorCopy

	// mu guards the tee's state, which the transport's body reader and the
	// handler's end (finish) both move on.
	mu   sync.Mutex
	buf  []byte
	done bool // sent, or dropped with an outcome
}

// routeMirrorHead takes the head the route's mirrors copy, before the chosen
// backend's own filters change the request; nil when the backend has no filters (the
// request stays as the route's filters left it) or the route no mirrors.
func routeMirrorHead(route *router.Route, b *router.Backend, r *http.Request) *mirrorHead {
	if len(route.Mirrors) == 0 || len(b.Filters) == 0 {
		return nil
	}
	return newMirrorHead(r)
}

// startMirrors decides which of the mirrors of the route and of the chosen backend
// copy r, and returns what the body tee needs, or nil when nothing is left to copy
// (no mirror sampled r, or the copies were dropped or already sent because r has no
// body). r is the request as every filter left it, before forward strips its
// hop-by-hop fields; routeHead, when set, is the one the route's mirrors copy
// (routeMirrorHead).
func (p *Pipeline) startMirrors(d *destination.Runtime, route *router.Route, b *router.Backend, r *http.Request, routeHead *mirrorHead) *mirrorRequest {
	if len(route.Mirrors) == 0 && len(b.Mirrors) == 0 {
		return nil
	}
	var mr *mirrorRequest
	var head *mirrorHead // of r, taken once the first copy needs it
	for level, ms := range [2][]*router.Mirror{route.Mirrors, b.Mirrors} {
		for _, m := range ms {
			if !m.Sample() {
				continue
			}
			backend := ""
			if m.Config != nil {
				backend = cmp.Or(m.Config.GetAuthority(), m.Key)
			}
			series := p.o.Metrics.Mirror(metrics.MirrorKey{Authority: d.Authority, Backend: backend})
			switch {
			case m.Invalid != "":
				series.Count(metrics.MirrorInvalidBackend)
				continue
			case h1.IsUpgrade(r):
				series.Count(metrics.MirrorUpgrade)
				continue
			case r.ContentLength > MirrorBodyLimit:
				series.Count(metrics.MirrorBodyTooLarge)
				continue
			}
			bal := d.Balancers[m.Key]
			if bal == nil {
				series.Count(metrics.MirrorNoEndpoint)
				continue
			}
			slots := d.MirrorsInFlight[m.Key]
			if !p.acquireMirror(slots) {
				series.Count(metrics.MirrorOverloaded)
				continue
			}
			if mr == nil {
				mr = &mirrorRequest{p: p}
			}
			h := routeHead
			if level == 1 || h == nil {
				if head == nil {
					head = newMirrorHead(r)
				}
				h = head
			}
			mr.copies = append(mr.copies, mirrorCopy{m: m, bal: bal, series: series, dest: slots, head: h})
		}
	}
	if mr == nil {
		return nil
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		mr.mu.Lock()
		mr.send()
		mr.mu.Unlock()
		return nil
	}
	return mr
}

// acquireMirror takes a slot of the mirror backend's bound (in this destination) and
// of the proxy's.
func (p *Pipeline) acquireMirror(dest *atomic.Int64) bool {
	if dest == nil {
		return false
	}
	if dest.Add(1) > int64(p.mirrorOpts.InFlight) {
		dest.Add(-1)
		return false
	}
	if p.mirrorsInFlight.Add(1) > int64(p.mirrorOpts.InFlightTotal) {
		p.mirrorsInFlight.Add(-1)
		dest.Add(-1)
		return false
	}
	return true
}

func (p *Pipeline) releaseMirror(c mirrorCopy) {
	c.dest.Add(-1)
	p.mirrorsInFlight.Add(-1)
}

func newMirrorHead(r *http.Request) *mirrorHead {
	h := r.Header.Clone()
	removeHopByHop(h)
	// The copy has its body in hand: nothing to wait for.
	delete(h, "Expect")
	delete(h, hdrDst)
	delete(h, hdrProto)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noUserAgent
	}
	u := *r.URL
	u.User = nil
	proto := 1
	if r.ProtoMajor == 2 {
		proto = 2
	}
	return &mirrorHead{method: r.Method, url: u, host: r.Host, header: h, proto: proto}
}

// tee wraps the body the primary request sends: it copies what passes through, up
// to MirrorBodyLimit, and sends the copies when the body ends.
// length is the body's announced length (-1: unknown): a body of known length is
// whole when that many bytes passed, since a transport may stop reading there
// without asking for the EOF.
func (mr *mirrorRequest) tee(body io.ReadCloser, length int64) io.ReadCloser {
	if length > 0 && length <= MirrorBodyLimit {
		// One allocation of the announced size rather than append's doublings.
		mr.mu.Lock()
		mr.buf = make([]byte, 0, length)
		mr.mu.Unlock()
	}
	return &mirrorTee{ReadCloser: body, mr: mr, length: length}
}

type mirrorTee struct {
	io.ReadCloser
	mr     *mirrorRequest
	length int64
}

func (t *mirrorTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	mr := t.mr
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if mr.done {
		return n, err
	}
	if len(mr.buf)+n > MirrorBodyLimit {
		mr.drop(metrics.MirrorBodyTooLarge)
		return n, err
	}
	mr.buf = append(mr.buf, p[:n]...)
	switch {
	case errors.Is(err, io.EOF) || (t.length >= 0 && int64(len(mr.buf)) == t.length):
		mr.send()
	case err != nil:
		mr.drop(metrics.MirrorBodyIncomplete)
	}
	return n, err
}

// finish ends the copies of a request whose handler is done: a body that never
// reached its end is not copied.
func (mr *mirrorRequest) finish() {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if !mr.done {
		mr.drop(metrics.MirrorBodyIncomplete)
	}
}

// drop gives up every copy with outcome o. Called with mu held.
func (mr *mirrorRequest) drop(o metrics.MirrorOutcome) {
	mr.done = true
	mr.buf = nil
	for _, c := range mr.copies {
		c.series.Count(o)
		mr.p.releaseMirror(c)
	}
}

// send starts every copy on its own goroutine; they share the body, which nothing
// writes any more. Called with mu held.
func (mr *mirrorRequest) send() {
	mr.done = true
	for _, c := range mr.copies {
		// The copies share the body and maybe a head; each needs its own header
		// (Weft-Dst is set per endpoint).
		go mr.p.sendMirror(c, c.head.header.Clone(), mr.buf)
	}
}

// sendMirror sends one copy to one endpoint of the mirror backend and discards the
// response. It holds its slots until it is done.
func (p *Pipeline) sendMirror(c mirrorCopy, h http.Header, body []byte) {
	defer p.releaseMirror(c)
	ctx, cancel := context.WithTimeout(context.Background(), p.mirrorOpts.Timeout)
	defer cancel()
	handle, err := c.bal.Pick()
	if err != nil {
		c.series.Count(metrics.MirrorNoEndpoint)
		return
	}
	hd := c.head
	u := hd.url
	req := &http.Request{
		Method: hd.method, URL: &u, Host: hd.host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		ContentLength: int64(len(body)),
	}
	if hd.proto == 2 {
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	ep := handle.Endpoint()
	hop := transport.Endpoint(p.o.Mesh, p.o.Out, ep, req)
	if hop.Dst != "" {
		h[hdrDst] = []string{hop.Dst}
		h[hdrProto] = []string{hop.Proto}
	}
	u.Scheme, u.Host = "http", hop.Host
	res, err := hop.Transport.RoundTrip(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			// The mirror's own deadline, not the endpoint's failure.
			handle.Observe()
			c.series.Count(metrics.MirrorTimeout)
		} else {
			handle.Done(true)
			c.series.Count(metrics.MirrorFailed)
		}
		p.o.Log.V(1).Info("Mirrored request failed", "backend", c.m.Key, "error", err.Error())
		return
	}
	handle.Done(res.StatusCode >= 500)
	c.series.Count(metrics.MirrorSent)
	// Read a bounded amount so a small response leaves its connection reusable,
	// then close: a large or endless one is cut (the deadline bounds the read).
	_, _ = io.CopyN(io.Discard, res.Body, MirrorBodyLimit)
	res.Body.Close()
}
