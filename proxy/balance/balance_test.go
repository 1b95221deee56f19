package balance

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// clock is a manual clock for the balancer.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func eps(n int) []Endpoint {
	out := make([]Endpoint, n)
	for i := range out {
		out[i] = Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8080)}
	}
	return out
}

func newTest(t *testing.T, n int, jitter float64) (*Balancer, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1000, 0)}
	r := rand.New(rand.NewPCG(1, 2))
	b := New(Options{Now: c.Now, Rand: r.IntN, Jitter: jitter})
	b.Update(eps(n))
	return b, c
}

// fail sends n requests that fail to the endpoint with address ip.
func failOn(t *testing.T, b *Balancer, addr netip.AddrPort, n int) {
	t.Helper()
	for k := 0; k < n; {
		h, err := b.Pick()
		if err != nil {
			t.Fatalf("pick: %v", err)
		}
		if h.Endpoint().Addr == addr {
			h.Done(true)
			k++
		} else {
			h.Done(false)
		}
	}
}

func stats(b *Balancer, addr netip.AddrPort) Stats {
	for _, s := range b.Stats() {
		if s.Endpoint.Addr == addr {
			return s
		}
	}
	return Stats{}
}

func TestPeakEWMA(t *testing.T) {
	for _, tc := range []struct {
		name      string
		latencies []time.Duration // per endpoint
		requests  int
		check     func(t *testing.T, share []float64)
	}{
		{
			name:      "two endpoints, the faster takes nearly everything",
			latencies: []time.Duration{5 * time.Millisecond, 50 * time.Millisecond},
			requests:  2000,
			check: func(t *testing.T, share []float64) {
				if share[1] > 0.05 {
					t.Errorf("slow endpoint got %.1f%%, want < 5%%", 100*share[1])
				}
			},
		},
		{
			name:      "one endpoint 10x slower than three others gets under 10%",
			latencies: []time.Duration{5 * time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond, 5 * time.Millisecond},
			requests:  4000,
			check: func(t *testing.T, share []float64) {
				if share[2] >= 0.10 {
					t.Errorf("slow endpoint got %.1f%%, want < 10%%", 100*share[2])
				}
				for _, i := range []int{0, 1, 3} {
					if share[i] < 0.2 {
						t.Errorf("fast endpoint %d got only %.1f%%", i, 100*share[i])
					}
				}
			},
		},
		{
			name:      "equal endpoints share evenly",
			latencies: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
			requests:  3000,
			check: func(t *testing.T, share []float64) {
				for i, s := range share {
					if s < 0.25 || s > 0.42 {
						t.Errorf("endpoint %d got %.1f%%, want about a third", i, 100*s)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newTest(t, len(tc.latencies), 0)
			count := make([]int, len(tc.latencies))
			index := map[netip.AddrPort]int{}
			for i, e := range eps(len(tc.latencies)) {
				index[e.Addr] = i
			}
			// Four requests in flight at a time, each finishing after its endpoint's
			// latency: a small discrete-event simulation on the manual clock.
			type flight struct {
				h   Handle
				end time.Time
			}
			var inflight []flight
			for sent := 0; sent < tc.requests; {
				for len(inflight) < 4 && sent < tc.requests {
					h, err := b.Pick()
					if err != nil {
						t.Fatal(err)
					}
					i := index[h.Endpoint().Addr]
					count[i]++
					sent++
					inflight = append(inflight, flight{h, c.Now().Add(tc.latencies[i])})
				}
				// Finish the earliest.
				k := 0
				for j := range inflight {
					if inflight[j].end.Before(inflight[k].end) {
						k = j
					}
				}
				if d := inflight[k].end.Sub(c.Now()); d > 0 {
					c.Advance(d)
				}
				inflight[k].h.Done(false)
				inflight = append(inflight[:k], inflight[k+1:]...)
			}
			share := make([]float64, len(count))
			for i, n := range count {
				share[i] = float64(n) / float64(tc.requests)
			}
			t.Logf("shares: %v", share)
			tc.check(t, share)
		})
	}
}

func TestPendingCountsInCost(t *testing.T) {
	b, _ := newTest(t, 2, 0)
	// Both at the default RTT: with one request outstanding on the first, the
	// second is cheaper.
	h, _ := b.Pick()
	for range 20 {
		h2, _ := b.Pick()
		if h2.Endpoint().Addr == h.Endpoint().Addr {
			t.Fatalf("picked the endpoint with an outstanding request over an idle equal one")
		}
		h2.Cancel()
	}
	h.Cancel()
}

func TestDecayTowardsZeroWhileUnused(t *testing.T) {
	b, c := newTest(t, 2, 0)
	e := eps(2)
	// Make endpoint 1 look slow.
	for {
		h, _ := b.Pick()
		c.Advance(100 * time.Millisecond)
		h.Done(false)
		if h.Endpoint().Addr == e[1].Addr {
			break
		}
	}
	before := stats(b, e[1].Addr).Cost
	c.Advance(DefaultDecay)
	after := stats(b, e[1].Addr).Cost
	if !(after < before/2) {
		t.Fatalf("cost after one decay period = %v, before %v: want it to decay towards zero", after, before)
	}
}

func TestFailureAccrual(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, b *Balancer, c *clock, e []Endpoint)
	}{
		{"six failures keep the endpoint", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold-1)
			if stats(b, e[0].Addr).Ejected {
				t.Fatal("ejected before the threshold")
			}
		}},
		{"a success resets the count", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold-1)
			for {
				h, _ := b.Pick()
				h.Done(false)
				if h.Endpoint().Addr == e[0].Addr {
					break
				}
			}
			failOn(t, b, e[0].Addr, DefaultFailureThreshold-1)
			if stats(b, e[0].Addr).Ejected {
				t.Fatal("ejected although a success came between the failures")
			}
		}},
		{"seven failures eject and traffic moves", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold)
			if st := stats(b, e[0].Addr); !st.Ejected || st.EjectedFor != DefaultBackoffMin {
				t.Fatalf("after 7 failures: %+v, want ejected for %v", st, DefaultBackoffMin)
			}
			for range 200 {
				h, _ := b.Pick()
				if h.Endpoint().Addr == e[0].Addr {
					t.Fatal("ejected endpoint picked")
				}
				h.Done(false)
			}
		}},
		{"one probe after the backoff; success restores", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold)
			c.Advance(DefaultBackoffMin)
			var probe Handle
			for range 100 {
				h, _ := b.Pick()
				if h.Endpoint().Addr == e[0].Addr {
					probe = h
					break
				}
				h.Done(false)
			}
			if probe.ep == nil {
				t.Fatal("no probe after the backoff")
			}
			// While the probe is in flight, nobody else gets the endpoint.
			for range 100 {
				h, _ := b.Pick()
				if h.Endpoint().Addr == e[0].Addr {
					t.Fatal("second request to an endpoint whose probe is in flight")
				}
				h.Done(false)
			}
			probe.Done(false)
			if stats(b, e[0].Addr).Ejected {
				t.Fatal("still ejected after a successful probe")
			}
		}},
		{"a failed probe doubles the backoff, capped", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold)
			want := DefaultBackoffMin
			for range 8 {
				c.Advance(want)
				failOn(t, b, e[0].Addr, 1)
				want = min(2*want, DefaultBackoffMax)
				if st := stats(b, e[0].Addr); !st.Ejected || st.EjectedFor != want {
					t.Fatalf("after a failed probe: %+v, want ejected for %v", st, want)
				}
			}
			if want != DefaultBackoffMax {
				t.Fatalf("backoff %v never reached the cap", want)
			}
		}},
		{"every endpoint ejected: the least bad, as a probe", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold)
			c.Advance(100 * time.Millisecond)
			failOn(t, b, e[1].Addr, DefaultFailureThreshold)
			// e[0]'s ejection ends first.
			h, err := b.Pick()
			if err != nil || h.Endpoint().Addr != e[0].Addr {
				t.Fatalf("Pick = %v, %v; want the endpoint whose ejection ends first", h.Endpoint(), err)
			}
			h.Done(false)
			if stats(b, e[0].Addr).Ejected || !stats(b, e[1].Addr).Ejected {
				t.Fatalf("a success of the least bad must restore it alone: %+v", b.Stats())
			}
		}},
		{"every endpoint ejected, a failing least bad stays ejected longer", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			for _, ep := range e {
				failOn(t, b, ep.Addr, DefaultFailureThreshold)
			}
			h, _ := b.Pick()
			h.Done(true)
			if st := stats(b, h.Endpoint().Addr); !st.Ejected || st.EjectedFor != 2*DefaultBackoffMin {
				t.Fatalf("after a failed least-bad pick: %+v, want ejected for %v", st, 2*DefaultBackoffMin)
			}
		}},
		{"an update keeps the state of endpoints that stay", func(t *testing.T, b *Balancer, c *clock, e []Endpoint) {
			failOn(t, b, e[0].Addr, DefaultFailureThreshold)
			b.Update(append(eps(3)[2:], e[0])) // drop e[1], add a third
			if b.Len() != 2 || !stats(b, e[0].Addr).Ejected {
				t.Fatalf("after update: %+v", b.Stats())
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newTest(t, 2, 0)
			tc.run(t, b, c, eps(2))
		})
	}
}

func TestJitterBounds(t *testing.T) {
	b, _ := newTest(t, 2, 0.2)
	e := eps(2)
	failOn(t, b, e[0].Addr, DefaultFailureThreshold)
	st := stats(b, e[0].Addr)
	if st.EjectedFor < 800*time.Millisecond || st.EjectedFor > 1200*time.Millisecond {
		t.Fatalf("ejected for %v, want 1s ± 20%%", st.EjectedFor)
	}
}

func TestNoEndpoints(t *testing.T) {
	b := New(Options{})
	if _, err := b.Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("Pick = %v, want ErrNoEndpoints", err)
	}
	b.Update(eps(1))
	h, err := b.Pick()
	if err != nil {
		t.Fatal(err)
	}
	h.Done(false)
}

func BenchmarkPick(b *testing.B) {
	bl := New(Options{})
	bl.Update(eps(10))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, _ := bl.Pick()
			h.Done(false)
		}
	})
}

func TestNewEndpointIsTriedAtOnce(t *testing.T) {
	b, c := newTest(t, 2, 0)
	e := eps(3)
	// Measure both incumbents as fast (1ms, well under the default RTT).
	for range 50 {
		h, _ := b.Pick()
		c.Advance(time.Millisecond)
		h.Done(false)
	}
	b.Update(e)
	// The newcomer has nothing outstanding: it is cheaper than anything measured.
	seen := false
	for range 10 {
		h, _ := b.Pick()
		if h.Endpoint().Addr == e[2].Addr {
			seen = true
			// While its first request is outstanding it costs the default RTT × 2:
			// the next picks go to the incumbents.
			for range 20 {
				h2, _ := b.Pick()
				if h2.Endpoint().Addr == e[2].Addr {
					t.Fatal("new endpoint flooded before its first answer")
				}
				h2.Cancel()
			}
			c.Advance(time.Millisecond)
			h.Done(false)
			break
		}
		c.Advance(time.Millisecond)
		h.Done(false)
	}
	if !seen {
		t.Fatal("new endpoint not tried within 10 requests")
	}
	// After its first (fast) answer the newcomer's estimate starts from the default
	// RTT and is worn down by observations: not below what it observed, not above
	// the default.
	if st := stats(b, e[2].Addr); st.Cost < time.Millisecond || st.Cost > DefaultRTT {
		t.Fatalf("cost after the first answer = %v, want between 1ms and the default RTT", st.Cost)
	}
}

func TestObserveDoesNotEject(t *testing.T) {
	b, c := newTest(t, 1, 0)
	for range 3 * DefaultFailureThreshold {
		h, err := b.Pick()
		if err != nil {
			t.Fatalf("pick: %v", err)
		}
		c.Advance(time.Second)
		h.Observe()
	}
	st := b.Stats()[0]
	if st.Ejected || st.Cost < 500*time.Millisecond {
		t.Fatalf("after observed deadlines: %+v, want slow but in rotation", st)
	}
}

func TestFailFast(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Now: c.Now, Jitter: 0, FailFast: true})
	b.Update(eps(2))
	for _, ep := range eps(2) {
		failOn(t, b, ep.Addr, DefaultFailureThreshold)
	}
	if _, err := b.Pick(); !errors.Is(err, ErrNoHealthy) {
		t.Fatalf("Pick = %v, want ErrNoHealthy", err)
	}
	c.Advance(DefaultBackoffMin)
	if _, err := b.Pick(); err != nil {
		t.Fatalf("no probe after the backoff: %v", err)
	}
}

// TestUnreachableEjectsAtOnce: an endpoint that could not be reached leaves rotation
// at its first refusal (not after FailureThreshold), for failure accrual's backoff,
// and its probe restores it.
func TestUnreachableEjectsAtOnce(t *testing.T) {
	b, c := newTest(t, 3, 0)
	bad := eps(3)[1].Addr
	for {
		h, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if h.Endpoint().Addr == bad {
			h.Unreachable()
			break
		}
		h.Done(false)
	}
	if st := stats(b, bad); !st.Ejected || st.EjectedFor != DefaultBackoffMin || st.Pending != 0 {
		t.Fatalf("after one refusal: %+v, want ejected for %v with nothing pending", st, DefaultBackoffMin)
	}
	for range 200 {
		h, _ := b.Pick()
		if h.Endpoint().Addr == bad {
			t.Fatal("the unreachable endpoint was picked while ejected")
		}
		h.Done(false)
	}
	c.Advance(DefaultBackoffMin)
	for probed := false; !probed; {
		h, _ := b.Pick()
		probed = h.Endpoint().Addr == bad
		h.Done(false)
	}
	if st := stats(b, bad); st.Ejected {
		t.Fatalf("after a successful probe: %+v, want back in rotation", st)
	}
}

// TestPickExcept: the endpoints to avoid are never picked, even when the others are
// ejected; with nothing else left, ErrNoOther.
func TestPickExcept(t *testing.T) {
	b, _ := newTest(t, 3, 0)
	all := eps(3)
	avoid := []netip.AddrPort{all[0].Addr, all[2].Addr}
	for range 100 {
		h, err := b.PickExcept(avoid)
		if err != nil || h.Endpoint().Addr != all[1].Addr {
			t.Fatalf("PickExcept = %v, %v; want %v", h.Endpoint(), err, all[1].Addr)
		}
		h.Unreachable() // ejected: still the only one left, as a probe
	}
	if _, err := b.PickExcept([]netip.AddrPort{all[0].Addr, all[1].Addr, all[2].Addr}); !errors.Is(err, ErrNoOther) {
		t.Fatalf("every endpoint avoided: %v, want ErrNoOther", err)
	}
	if _, err := New(Options{}).PickExcept(nil); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("no endpoints: %v, want ErrNoEndpoints", err)
	}
}
