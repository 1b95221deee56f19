// Package tap is the proxy's tap: a live stream of the metadata of the requests the
// proxy handles, served on the tap port (4190) to the control plane's tap identity
// only (server.go), and the hooks the HTTP pipeline calls for each request.
//
// Cost is the point of the hooks' shape. With no tap stream open, the pipeline pays
// one atomic load per request (Tap.Active) and allocates nothing; only while a
// stream is open does it describe each request (Start) and, for requests a stream
// matches, keep an Exchange that emits request_init, response_init and response_end.
// An event is encoded once and shared by every stream that takes it; each stream has
// a bounded queue and a token bucket, and an event that does not fit either is
// dropped and counted (TapEvent.dropped, weft_tap_events_dropped_total): the request
// path never waits for a tap reader.
//
// What a stream reveals is metadata only (api/tap.proto): method, authority, path
// without its query, route, status codes, timings, byte counts and the identities and
// labels of both sides. Never a header value other than those, a query string or a
// body.
package tap

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
)

// Limits (docs/proxy.md, "Tap").
const (
	// MaxStreams is how many Observe calls a proxy serves at once; the next is
	// refused with RESOURCE_EXHAUSTED. The control plane opens one per tapped pod
	// and user, so 8 is several users tapping the same workload; the bound keeps the
	// per-request cost of an open tap (one match per stream) small.
	MaxStreams = 8
	// DefaultEventsPerSecond and MaxEventsPerSecond bound a stream's rate
	// (ObserveRequest.max_events_per_second: 0 is the default, more is capped).
	DefaultEventsPerSecond = 100
	MaxEventsPerSecond     = 1000
	// queueLen is each stream's queue of encoded events between the request path and
	// the stream's writer. An event is a few hundred bytes, so 8 full queues hold
	// under 1 MiB; a reader slower than the rate bound loses events, not memory.
	queueLen = 128
)

// Label is one name/value the proxy knows of a request's side, named as the
// Prometheus labels name it without their dst_ prefix (namespace, pod,
// serviceaccount, deployment, ...).
type Label struct{ Name, Value string }

// Peer is one side of a request as the pipeline knows it.
type Peer struct {
	Addr netip.AddrPort
	// Identity is the side's verified SPIFFE ID ("" when not meshed).
	Identity string
	// Pod is the side's pod, when known (an endpoint's pod from discovery).
	Pod string
	// Labels are further labels (an endpoint's metric labels from discovery). The
	// namespace and serviceaccount of Identity, and Pod, are added by the tap.
	Labels []Label
}

// Request is what the pipeline tells the tap of a request whose head it has read.
type Request struct {
	Direction api.TapDirection
	Method    string
	Scheme    string
	Authority string
	// Path has no query string.
	Path string
	// Route is kind/namespace/name of the route matched, "" for none.
	Route string
	// TLS says the request crossed the mesh with mTLS.
	TLS bool
	// Protocol is "HTTP/1.1", "HTTP/2" or "gRPC".
	Protocol            string
	Source, Destination Peer
}

// Protocol names of TapRequestInit.protocol.
const (
	ProtoHTTP1 = "HTTP/1.1"
	ProtoHTTP2 = "HTTP/2"
	ProtoGRPC  = "gRPC"
)

// Tap holds the open streams. The zero value is not usable; New makes one. A nil
// *Tap is a tap that is never active.
type Tap struct {
	// active is the number of open streams: the request path's one load.
	active atomic.Int32
	// streams is the current set, replaced whole under mu when a stream opens or
	// closes; an Exchange keeps the set it began with.
	streams atomic.Pointer[streamSet]
	mu      sync.Mutex
	// closing is closed by Close: every stream ends.
	closing   chan struct{}
	closeOnce sync.Once
	nextID    atomic.Uint64
	now       func() time.Time
	stats     stats
	self      Self
}

// Self is what the tap knows of its own pod: the source of outbound requests and
// the destination of inbound ones.
type Self struct {
	Pod, Namespace string
	// Identity returns the proxy's current SPIFFE ID ("" without one).
	Identity func() string
}

// streamSet is the open streams at one moment, at most MaxStreams.
type streamSet struct{ s []*stream }

// New returns a tap with no stream open, for the pod self describes.
func New(self Self) *Tap {
	t := &Tap{closing: make(chan struct{}), now: time.Now, self: self}
	t.streams.Store(&streamSet{})
	return t
}

// Active reports whether any stream is open. It is the only cost of the tap on the
// request path while nobody taps: one atomic load, inlined.
func (t *Tap) Active() bool { return t != nil && t.active.Load() != 0 }

// Close ends every stream (shutdown) and refuses new ones.
func (t *Tap) Close() { t.closeOnce.Do(func() { close(t.closing) }) }

// add registers s, or reports false when MaxStreams are open or the tap is closed.
func (t *Tap) add(s *stream) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.closing:
		return false
	default:
	}
	cur := t.streams.Load().s
	if len(cur) >= MaxStreams {
		return false
	}
	t.streams.Store(&streamSet{s: append(slices.Clip(cur), s)})
	t.active.Add(1)
	return true
}

func (t *Tap) remove(s *stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.streams.Load().s
	i := slices.Index(cur, s)
	if i < 0 {
		return
	}
	t.streams.Store(&streamSet{s: slices.Delete(slices.Clone(cur), i, i+1)})
	t.active.Add(-1)
}

// Exchange is one tapped request: the streams that took it and what its later events
// need. Its methods are called from the request's handler goroutine, except
// CountRequestBytes (the transport may read the body on its own goroutine).
type Exchange struct {
	set *streamSet
	// taking are the streams (bits by index in set) that admitted the request and
	// have not dropped one of its events; dropping, those whose rate bound refused
	// it, or whose queue was full: their later events of this request are dropped
	// (and counted) too, so a stream never gets a request's end without its start.
	taking, dropping uint8
	// slow are the dropping streams whose queue was full (the rest: rate bound).
	slow      uint8
	id        uint64
	dir       api.TapDirection
	src, dst  *api.TapPeer
	start     time.Time
	respAt    time.Time
	reqBytes  atomic.Uint64
	respBytes uint64
	now       func() time.Time
	stats     *stats
}

// Start describes a request to the open streams. It returns nil when no stream
// matches it; otherwise the Exchange its later events go through. Call only when
// Active (the caller's check keeps the idle cost at one load).
func (t *Tap) Start(req *Request) *Exchange {
	set := t.streams.Load()
	if len(set.s) == 0 {
		return nil
	}
	own := &req.Source
	if req.Direction == api.TapDirection_TAP_DIRECTION_INBOUND {
		own = &req.Destination
	}
	t.describeSelf(own)
	// The other side's labels are described only when a filter needs them, and
	// both sides only when a stream takes the request: most requests under an
	// open tap are not taken (the rate bound), and describing them was most of
	// the tap's cost per request.
	other := &req.Destination
	if req.Direction == api.TapDirection_TAP_DIRECTION_INBOUND {
		other = &req.Source
	}
	var otherProto *api.TapPeer
	now := t.now()
	var taking, dropping uint8
	for i, s := range set.s {
		if !s.match.matchesRequest(req) {
			continue
		}
		if s.match.needsLabels() {
			if otherProto == nil {
				otherProto = peerProto(*other)
			}
			if !s.match.matchesLabels(otherProto.Labels) {
				continue
			}
		}
		if s.admit(now) {
			taking |= 1 << i
		} else {
			dropping |= 1 << i
		}
	}
	if taking|dropping == 0 {
		return nil
	}
	x := &Exchange{set: set, taking: taking, dropping: dropping, id: t.nextID.Add(1),
		dir: req.Direction, start: now, now: t.now, stats: &t.stats}
	if taking != 0 {
		if otherProto == nil {
			otherProto = peerProto(*other)
		}
		if req.Direction == api.TapDirection_TAP_DIRECTION_INBOUND {
			x.src, x.dst = otherProto, peerProto(req.Destination)
		} else {
			x.src, x.dst = peerProto(req.Source), otherProto
		}
	}
	x.emit(&api.TapEvent{Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{
		Method: req.Method, Scheme: req.Scheme, Authority: req.Authority, Path: req.Path,
		Route: req.Route, Tls: req.TLS, Protocol: req.Protocol,
	}}}, now)
	return x
}

// describeSelf completes the proxy's own side of a request.
func (t *Tap) describeSelf(p *Peer) {
	if p.Identity == "" && t.self.Identity != nil {
		p.Identity = t.self.Identity()
	}
	if p.Pod == "" {
		p.Pod = t.self.Pod
	}
	if p.Identity == "" && t.self.Namespace != "" {
		p.Labels = append(slices.Clip(p.Labels), Label{Name: "namespace", Value: t.self.Namespace})
	}
}

// CountRequestBytes adds n bytes of request body read from the client.
func (x *Exchange) CountRequestBytes(n int) { x.reqBytes.Add(uint64(n)) }

// CountResponseBytes adds n bytes of response body written to the client.
func (x *Exchange) CountResponseBytes(n int) { x.respBytes += uint64(n) }

// ResponseInit records the response head (a final status, or the 101 of a
// protocol switch), once.
func (x *Exchange) ResponseInit(status int) {
	if !x.respAt.IsZero() {
		return
	}
	now := x.now()
	x.respAt = now
	if x.taking == 0 {
		x.countDrops()
		return
	}
	x.emit(&api.TapEvent{Event: &api.TapEvent_ResponseInit{ResponseInit: &api.TapResponseInit{
		HttpStatus: uint32(status), SinceRequestInit: durationpb.New(now.Sub(x.start)),
	}}}, now)
}

// ResponseEnd records the end of the exchange: grpcStatus when the response carried
// one (ok), and why it failed ("" when it ended normally).
func (x *Exchange) ResponseEnd(grpcStatus uint32, ok bool, failure string) {
	if x.taking == 0 {
		x.countDrops()
		return
	}
	now := x.now()
	end := &api.TapResponseEnd{
		SinceRequestInit: durationpb.New(now.Sub(x.start)),
		RequestBytes:     x.reqBytes.Load(),
		ResponseBytes:    x.respBytes,
		Error:            failure,
	}
	if !x.respAt.IsZero() {
		end.SinceResponseInit = durationpb.New(now.Sub(x.respAt))
	}
	if ok {
		end.GrpcStatus = proto.Uint32(grpcStatus)
	}
	x.emit(&api.TapEvent{Event: &api.TapEvent_ResponseEnd{ResponseEnd: end}}, now)
}

// emit completes ev, encodes it once and offers it to every stream taking the
// request; streams dropping it count it.
func (x *Exchange) emit(ev *api.TapEvent, now time.Time) {
	x.countDrops()
	if x.taking == 0 {
		return
	}
	ev.Id = x.id
	ev.Direction = x.dir
	ev.Source = x.src
	ev.Destination = x.dst
	ev.Time = timestamppb.New(now)
	b, err := proto.Marshal(ev)
	if err != nil {
		return // cannot happen for these messages; nothing to send
	}
	for i, s := range x.set.s {
		bit := uint8(1) << i
		if x.taking&bit == 0 {
			continue
		}
		if !s.offer(b, x.stats) {
			x.taking &^= bit
			x.dropping |= bit
			x.slow |= bit
		}
	}
}

// countDrops counts one event dropped for every stream dropping the request.
func (x *Exchange) countDrops() {
	for i := range x.set.s {
		if bit := uint8(1) << i; x.dropping&bit != 0 {
			why := dropRate
			if x.slow&bit != 0 {
				why = dropSlow
			}
			x.set.s[i].drop(x.stats, why)
		}
	}
}

// peerProto is p as a TapPeer: its address, identity, and its labels with the
// namespace and serviceaccount of its identity and its pod, sorted by name.
func peerProto(p Peer) *api.TapPeer {
	out := &api.TapPeer{Identity: p.Identity}
	if p.Addr.IsValid() {
		out.Address = p.Addr.String()
	}
	labels := make([]*api.TapLabel, 0, len(p.Labels)+3)
	seen := func(name string) bool {
		for _, l := range labels {
			if l.Name == name {
				return true
			}
		}
		return false
	}
	for _, l := range p.Labels {
		name := strings.TrimPrefix(l.Name, "dst_")
		if name == "" || l.Value == "" || seen(name) {
			continue
		}
		labels = append(labels, &api.TapLabel{Name: name, Value: l.Value})
	}
	if _, ns, sa, ok := peertls.ParseWorkloadID(p.Identity); ok {
		if !seen("namespace") {
			labels = append(labels, &api.TapLabel{Name: "namespace", Value: ns})
		}
		if !seen("serviceaccount") {
			labels = append(labels, &api.TapLabel{Name: "serviceaccount", Value: sa})
		}
	}
	if p.Pod != "" && !seen("pod") {
		labels = append(labels, &api.TapLabel{Name: "pod", Value: p.Pod})
	}
	slices.SortFunc(labels, func(a, b *api.TapLabel) int { return strings.Compare(a.Name, b.Name) })
	out.Labels = labels
	return out
}
