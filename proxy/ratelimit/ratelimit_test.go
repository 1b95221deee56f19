/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// offer sends n requests of id evenly over d and counts the admitted.
func offer(l *Limiter, c *clock, id string, n int, d time.Duration) (admitted int) {
	step := d / time.Duration(n)
	for range n {
		if s, _ := l.Allow(id); s == Admitted {
			admitted++
		}
		c.advance(step)
	}
	return admitted
}

func newLimiter(cfg Config) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := New(cfg)
	l.Now = c.now
	return l, c
}

// TestRates: the admitted rate after the first second's burst is the configured one,
// for the total, per identity, and for an override; the burst is one second's worth.
func TestRates(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		id    string
		offer int // requests per second offered
		want  int // admitted per second, steady
	}{
		{"total 100 at 3x", Config{Total: 100}, "", 300, 100},
		{"total 1000 at 2x", Config{Total: 1000}, "spiffe://td/ns/a/sa/b", 2000, 1000},
		{"identity 50, total 1000", Config{Total: 1000, Identity: 50}, "spiffe://td/ns/a/sa/b", 400, 50},
		{"override 200 over identity 10", Config{Identity: 10, Overrides: []OverrideConfig{{Rate: 200, IDs: []string{"spiffe://td/ns/a/sa/vip"}}}},
			"spiffe://td/ns/a/sa/vip", 1000, 200},
		{"unauthenticated share identity's rate", Config{Identity: 30}, "", 100, 30},
		{"under the limit: all admitted", Config{Total: 100, Identity: 100}, "x", 50, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, c := newLimiter(tc.cfg)
			burst := offer(l, c, tc.id, tc.offer, time.Second)
			if burst > 2*tc.want+1 {
				t.Errorf("first second admitted %d, want at most %d (burst + rate)", burst, 2*tc.want+1)
			}
			got := offer(l, c, tc.id, tc.offer*10, 10*time.Second)
			lo, hi := tc.want*10*99/100, tc.want*10*101/100+1
			if got < lo || got > hi {
				t.Errorf("admitted %d in 10 s, want %d..%d", got, lo, hi)
			}
		})
	}
}

// TestIdentitiesAreSeparate: one client at its limit does not slow another, and a
// refused request spends no token of the total.
func TestIdentitiesAreSeparate(t *testing.T) {
	l, c := newLimiter(Config{Total: 100, Identity: 10})
	// a floods: 10 admitted, the rest refused by its own limit.
	for range 1000 {
		l.Allow("a")
	}
	if s, _ := l.Allow("a"); s != Identity {
		t.Fatalf("a's 1001st request: %v, want refused by identity", s)
	}
	// b still has its own 10, and the total has 90 left.
	for i := range 10 {
		if s, _ := l.Allow("b"); s != Admitted {
			t.Fatalf("b's request %d refused by %v", i, s)
		}
	}
	for i := range 8 {
		id := fmt.Sprintf("c%d", i)
		for range 10 {
			if s, _ := l.Allow(id); s != Admitted {
				t.Fatalf("%s refused by %v", id, s)
			}
		}
	}
	// 100 spent: the next client is refused by the total.
	s, wait := l.Allow("z")
	if s != Total {
		t.Fatalf("101st request: %v, want refused by total", s)
	}
	if wait <= 0 || wait > 10*time.Millisecond {
		t.Errorf("retry after %v, want one token's time (10ms)", wait)
	}
	c.advance(wait)
	if s, _ := l.Allow("z"); s != Admitted {
		t.Errorf("after waiting retryAfter: %v", s)
	}
}

// TestClientsBounded: identities beyond MaxClients evict the least recently used.
func TestClientsBounded(t *testing.T) {
	l, c := newLimiter(Config{Identity: 1})
	for i := range MaxClients * 3 {
		l.Allow(fmt.Sprintf("spiffe://td/ns/x/sa/%d", i))
		c.advance(time.Microsecond)
	}
	if n := l.Clients(); n != MaxClients {
		t.Fatalf("%d client buckets, want %d", n, MaxClients)
	}
	// The most recent client's bucket is kept: it is still empty.
	if s, _ := l.Allow(fmt.Sprintf("spiffe://td/ns/x/sa/%d", MaxClients*3-1)); s != Identity {
		t.Errorf("recent client: %v, want refused (its bucket kept)", s)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {0, 1}} {
		if got := RetryAfter(tc.d); got != tc.want {
			t.Errorf("RetryAfter(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Total: 1 << 30, Identity: 1 << 30})
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("spiffe://cluster.local/ns/shop/sa/web")
	}
}
