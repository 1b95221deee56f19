package balance

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// zoneEps returns local endpoints 10.0.1.x and remote endpoints 10.0.2.x, all
// preferring the client's zone.
func zoneEps(local, remote int) []Endpoint {
	var out []Endpoint
	for i := range local {
		out = append(out, Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), 8080),
			Zone: "zone-a", PreferZone: true, Local: true})
	}
	for i := range remote {
		out = append(out, Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 2, byte(i + 1)}), 8080),
			Zone: "zone-b", PreferZone: true})
	}
	return out
}

func newZoneTest(local, remote int) (*Balancer, *clock) {
	c := &clock{t: time.Unix(1000, 0)}
	r := rand.New(rand.NewPCG(3, 4))
	b := New(Options{Now: c.Now, Rand: r.IntN, Jitter: 0})
	b.Update(zoneEps(local, remote))
	return b, c
}

func isLocal(e *Endpoint) bool { return e.Addr.Addr().As4()[2] == 1 }

// zoneRun is the outcome of a simulated run: picks by locality, failed requests and
// the times the balancer started or stopped spilling over.
type zoneRun struct {
	local, remote, failed, flips int
}

// simulate sends n requests one after the other (in batches of conc outstanding at
// once), each taking latency(endpoint) (times the requests of the batch on that
// endpoint, when queue: an application serving one request at a time) and failing
// when fail(endpoint).
func simulate(t *testing.T, b *Balancer, c *clock, n, conc int, latency func(e *Endpoint) time.Duration, fail func(e *Endpoint) bool) zoneRun {
	return simulateQueue(t, b, c, n, conc, false, latency, fail)
}

func simulateQueue(t *testing.T, b *Balancer, c *clock, n, conc int, queue bool, latency func(e *Endpoint) time.Duration, fail func(e *Endpoint) bool) zoneRun {
	t.Helper()
	var r zoneRun
	spilling := b.Spilling()
	for k := 0; k < n; k += conc {
		hs := make([]Handle, 0, conc)
		for range conc {
			h, err := b.Pick()
			if err != nil {
				t.Fatalf("pick: %v", err)
			}
			hs = append(hs, h)
			if isLocal(h.Endpoint()) {
				r.local++
			} else {
				r.remote++
			}
			if s := b.Spilling(); s != spilling {
				r.flips++
				spilling = s
			}
		}
		queued := map[netip.AddrPort]int{}
		for _, h := range hs {
			queued[h.Endpoint().Addr]++
		}
		var longest time.Duration
		for _, h := range hs {
			d := latency(h.Endpoint())
			if queue {
				d *= time.Duration(queued[h.Endpoint().Addr])
			}
			longest = max(longest, d)
		}
		c.Advance(longest)
		for _, h := range hs {
			f := fail != nil && fail(h.Endpoint())
			if f {
				r.failed++
			}
			h.Done(f)
		}
	}
	return r
}

func fixed(local, remote time.Duration) func(e *Endpoint) time.Duration {
	return func(e *Endpoint) time.Duration {
		if isLocal(e) {
			return local
		}
		return remote
	}
}

func TestZonePrefersLocal(t *testing.T) {
	b, c := newZoneTest(2, 4)
	if !b.ZoneAware() {
		t.Fatal("ZoneAware() = false with endpoints preferring the zone")
	}
	r := simulate(t, b, c, 2000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil)
	if r.remote != 0 {
		t.Errorf("%d of 2000 requests left a healthy, idle zone", r.remote)
	}
	if l, rem := b.ZonePicks(); l != uint64(r.local) || rem != uint64(r.remote) {
		t.Errorf("ZonePicks() = %d, %d; want %d, %d", l, rem, r.local, r.remote)
	}
	// Local endpoints still share the load between them.
	st := b.Stats()
	if st[0].Cost == 0 || st[1].Cost == 0 {
		t.Errorf("a local endpoint was never used: %+v", st[:2])
	}
}

func TestZoneSpillsOverWhenSlow(t *testing.T) {
	b, c := newZoneTest(2, 4)
	// The local zone answers in 200ms, the remote one in 5ms: cost 200ms against
	// max(5ms, DefaultRTT) × ZoneSpill = 60ms.
	r := simulate(t, b, c, 4000, 1, fixed(200*time.Millisecond, 5*time.Millisecond), nil)
	// While spilling the local endpoints compete by cost with the rest, and their
	// estimate decays while unused, so they keep a small share (measured 6.6%).
	if share := float64(r.remote) / 4000; share < 0.9 {
		t.Errorf("remote share %.3f with a slow local zone, want >= 0.9", share)
	}
	t.Logf("slow local zone: local %d, remote %d, spill flips %d", r.local, r.remote, r.flips)
	if !b.Spilling() {
		t.Error("Spilling() = false with a slow local zone")
	}
	// 4000 × 5ms = 20s: the slow zone's estimate decays and it is probed again now
	// and then, but the balancer does not flap per request.
	if r.flips > 8 {
		t.Errorf("spill state changed %d times in 20s, want <= 8", r.flips)
	}
}

func TestZoneSpillsOverWhenSaturated(t *testing.T) {
	b, c := newZoneTest(2, 4)
	// 10ms per request served one at a time, 20 requests outstanding at once: two
	// local endpoints queue 10 each and answer in up to 100ms (> 2 × 30ms), so
	// part of the load spills over.
	r := simulateQueue(t, b, c, 4000, 20, true, fixed(10*time.Millisecond, 10*time.Millisecond), nil)
	if r.remote == 0 {
		t.Error("no request spilled over from a saturated zone")
	}
	// Spilled over, the balancer spreads by cost over all six endpoints: the two
	// local ones keep about their third.
	if share := float64(r.local) / 4000; share < 0.2 {
		t.Errorf("local %d, remote %d: the saturated zone lost its share", r.local, r.remote)
	}
	t.Logf("saturated local zone: local %d, remote %d, spill flips %d", r.local, r.remote, r.flips)
	// Light load stays local: 4 outstanding queue 2 deep at most (20ms).
	b2, c2 := newZoneTest(2, 4)
	if r := simulateQueue(t, b2, c2, 4000, 4, true, fixed(10*time.Millisecond, 10*time.Millisecond), nil); r.remote != 0 {
		t.Errorf("%d requests spilled over at 4 outstanding", r.remote)
	}
}

func TestZoneSpillsOverWhenFailing(t *testing.T) {
	b, c := newZoneTest(2, 4)
	failLocal := func(e *Endpoint) bool { return isLocal(e) }
	r := simulate(t, b, c, 2000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), failLocal)
	// Each local endpoint fails FailureThreshold times before its ejection, then once
	// per probe (backoff 1s, 2s, 4s, ... over 10s of simulated time).
	if max := 2 * (DefaultFailureThreshold + 5); r.failed > max {
		t.Errorf("%d requests failed, want <= %d: the failing zone kept traffic", r.failed, max)
	}
	if r.remote < 1900 {
		t.Errorf("remote %d of 2000", r.remote)
	}
	if !b.Spilling() {
		t.Error("Spilling() = false with every local endpoint ejected")
	}
}

func TestZoneEmptyLocalSet(t *testing.T) {
	b, c := newZoneTest(0, 3)
	r := simulate(t, b, c, 500, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil)
	if r.remote != 500 {
		t.Errorf("remote %d of 500 with no local endpoint", r.remote)
	}
	// Only local endpoints: nowhere to spill, the plain balancer over them.
	b, c = newZoneTest(3, 0)
	if r := simulate(t, b, c, 500, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil); r.local != 500 {
		t.Errorf("local %d of 500 with no remote endpoint", r.local)
	}
}

func TestZoneReturnsAfterRecovery(t *testing.T) {
	b, c := newZoneTest(2, 4)
	simulate(t, b, c, 2000, 1, fixed(200*time.Millisecond, 5*time.Millisecond), nil)
	if !b.Spilling() {
		t.Fatal("not spilling with a slow local zone")
	}
	// The zone recovers: its estimate decays, it is probed, found fast, and takes
	// the traffic back.
	r := simulate(t, b, c, 6000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil)
	if b.Spilling() {
		t.Error("still spilling 30s after the local zone recovered")
	}
	last := simulate(t, b, c, 1000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil)
	if last.local != 1000 {
		t.Errorf("after recovery: local %d of 1000 (recovery run: local %d, remote %d)", last.local, r.local, r.remote)
	}

	// Recovery from ejection: local endpoints fail, then heal.
	b, c = newZoneTest(2, 4)
	simulate(t, b, c, 500, 1, fixed(5*time.Millisecond, 5*time.Millisecond), func(e *Endpoint) bool { return isLocal(e) })
	simulate(t, b, c, 20000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil)
	if last := simulate(t, b, c, 1000, 1, fixed(5*time.Millisecond, 5*time.Millisecond), nil); last.local != 1000 {
		t.Errorf("after the ejected zone healed: local %d of 1000", last.local)
	}
}

// TestZoneNoPreferenceUnchanged: endpoints that carry zones but no preference are
// balanced exactly as before: the same random stream gives the same picks.
func TestZoneNoPreferenceUnchanged(t *testing.T) {
	withZones := zoneEps(2, 4)
	plain := make([]Endpoint, len(withZones))
	for i := range withZones {
		withZones[i].PreferZone = false
		withZones[i].Local = false
		plain[i] = Endpoint{Addr: withZones[i].Addr}
	}
	run := func(set []Endpoint) []netip.AddrPort {
		c := &clock{t: time.Unix(1000, 0)}
		r := rand.New(rand.NewPCG(5, 6))
		b := New(Options{Now: c.Now, Rand: r.IntN})
		b.Update(set)
		if b.ZoneAware() {
			t.Fatal("ZoneAware() = true without a preference")
		}
		var out []netip.AddrPort
		for i := range 500 {
			h, err := b.Pick()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, h.Endpoint().Addr)
			c.Advance(time.Duration(1+i%7) * time.Millisecond)
			h.Done(i%13 == 0)
		}
		if l, rem := b.ZonePicks(); l != 0 || rem != 0 {
			t.Errorf("ZonePicks() = %d, %d without a preference", l, rem)
		}
		return out
	}
	a, p := run(withZones), run(plain)
	for i := range a {
		if a[i] != p[i] {
			t.Fatalf("pick %d: %v with zones, %v without", i, a[i], p[i])
		}
	}
}

// BenchmarkPickZoned is BenchmarkPick with 4 local and 6 remote endpoints preferring
// the client's zone.
func BenchmarkPickZoned(b *testing.B) {
	bl := New(Options{})
	bl.Update(zoneEps(4, 6))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, _ := bl.Pick()
			h.Done(false)
		}
	})
}
