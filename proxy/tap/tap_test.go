package tap

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
)

// TestIdleCost: with no stream open, the request path's check allocates nothing and
// says no; a nil Tap (no tap server) is never active.
func TestIdleCost(t *testing.T) {
	tp := New(Self{})
	var nilTap *Tap
	if tp.Active() || nilTap.Active() {
		t.Fatal("active without a stream")
	}
	if n := testing.AllocsPerRun(1000, func() {
		if tp.Active() {
			t.Fatal("active")
		}
	}); n != 0 {
		t.Fatalf("Active allocates %v times", n)
	}
}

// TestAppendEvent: the dropped count appended after an event encoded once is read
// back by protobuf, and a zero count adds nothing.
func TestAppendEvent(t *testing.T) {
	ev := &api.TapEvent{Id: 7, Dropped: 0, Event: &api.TapEvent_RequestInit{RequestInit: &api.TapRequestInit{Method: "GET", Path: "/x"}}}
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, dropped := range []uint64{0, 1, 300, 1 << 40} {
		frame := appendEvent(nil, b, dropped)
		msg := frame[grpcwire.HeaderLen:]
		if n := int(frame[1])<<24 | int(frame[2])<<16 | int(frame[3])<<8 | int(frame[4]); n != len(msg) || frame[0] != 0 {
			t.Fatalf("prefix says %d bytes, message has %d", n, len(msg))
		}
		got := &api.TapEvent{}
		if err := proto.Unmarshal(msg, got); err != nil {
			t.Fatal(err)
		}
		if got.GetDropped() != dropped || got.GetId() != 7 || got.GetRequestInit().GetPath() != "/x" {
			t.Fatalf("dropped %d: got %v", dropped, got)
		}
		if dropped == 0 && len(msg) != len(b) {
			t.Fatal("a zero count changed the event")
		}
	}
}

// TestBucket: a stream admits a request while a token is left, the request spends
// its three events' tokens at once, and the bucket refills at the rate up to the
// burst.
func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newStream(match{}, 10, now)
	// Requests arriving together, none of them having sent an event yet: the
	// burst of 3 admits one, not one per token.
	admitted := 0
	for range 100 {
		if s.admit(now) {
			admitted++
		}
	}
	if admitted != 1 {
		t.Fatalf("%d requests admitted at once with a burst of 3", admitted)
	}
	// One second later: 10 tokens' worth, capped at the burst of 3.
	now = now.Add(time.Second)
	if !s.admit(now) || s.tokens != 3-eventsPerRequest {
		t.Fatalf("after a second: tokens %v", s.tokens)
	}
	if eventsPerSecond(0) != DefaultEventsPerSecond || eventsPerSecond(5000) != MaxEventsPerSecond || eventsPerSecond(7) != 7 {
		t.Fatal("max_events_per_second default or cap")
	}
}

// FuzzObserveRequest decodes fuzzed ObserveRequest messages as the server does and
// compiles their match: nothing panics, and a match that compiles never matches a
// request its fields exclude.
func FuzzObserveRequest(f *testing.F) {
	for _, m := range []*api.ObserveRequest{
		{},
		{MaxEventsPerSecond: 10, Match: &api.TapMatch{PathPrefix: "/api", Method: "GET", Namespace: "shop", Workload: "deployment/web", Direction: api.TapDirection_TAP_DIRECTION_OUTBOUND}},
		{Match: &api.TapMatch{Workload: "web"}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &api.ObserveRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		m, err := compileMatch(req.GetMatch())
		if err != nil {
			return
		}
		if r := eventsPerSecond(req.GetMaxEventsPerSecond()); r == 0 || r > MaxEventsPerSecond {
			t.Fatalf("rate %d", r)
		}
		other := &Request{Direction: api.TapDirection_TAP_DIRECTION_INBOUND, Method: "\x00never", Path: "\x00never", Authority: "\x00never"}
		mm := req.GetMatch()
		if m.matches(other, nil) && (mm.GetMethod() != "" || mm.GetPathPrefix() != "" || mm.GetAuthority() != "" || mm.GetNamespace() != "" || mm.GetWorkload() != "") {
			t.Fatalf("match %v takes a request none of its fields allow", mm)
		}
	})
}
