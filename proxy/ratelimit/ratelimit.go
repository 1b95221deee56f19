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

// Package ratelimit is the inbound proxy's local rate limiter (an
// HTTPLocalRateLimitPolicy compiled into proxy/api RateLimit): token buckets for every
// request of a port together, and for each client identity on its own.
//
// A bucket refills continuously at its rate and holds at most one second of it, so a
// client that was quiet for a second may send a second's worth at once, and the rate
// over any window of T seconds is at most rate*(T+1). A request takes one token from
// the port's bucket and one from its client's; when either has none, the request is
// refused and neither is spent, so a client over its own limit does not use up the
// budget of the others.
//
// Who reaches it: every client of the port, before the application. Clients choose
// their identity within what the mesh's CA signs, and an unauthenticated client none
// (every such client shares one bucket, keyed ""): the per-client buckets are a
// bounded LRU (MaxClients), so a client that mints identities costs bounded memory and
// can at worst push other clients' buckets out (a pushed-out client comes back with a
// full bucket: at most one extra second's burst).
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// MaxClients bounds the per-client buckets of one Limiter. 4,096 entries of ~150
// bytes are ~600 KiB at worst; a pod with more distinct clients than that in the
// window that matters (one second: an older bucket is full anyway) is rare.
const MaxClients = 4096

// Scope says which limit refused a request.
type Scope uint8

const (
	// Admitted: no limit refused the request.
	Admitted Scope = iota
	// Total: the port's overall limit.
	Total
	// Identity: the client's own limit (identity's rate).
	Identity
	// Override: the client's own limit, from an override.
	Override
)

func (s Scope) String() string {
	switch s {
	case Total:
		return "total"
	case Identity:
		return "identity"
	case Override:
		return "override"
	}
	return "admitted"
}

// Config is one port's limits; a rate of 0 is no such limit.
type Config struct {
	// Total is the rate of every request together.
	Total uint32
	// Identity is the rate of each client identity ("" for all unauthenticated
	// clients together).
	Identity uint32
	// Overrides replace Identity for the clients they list; the first wins.
	Overrides []OverrideConfig
}

// OverrideConfig is the rate of the clients with the listed SPIFFE IDs.
type OverrideConfig struct {
	Rate uint32
	IDs  []string
}

// Limiter enforces one port's Config. It is safe for concurrent use.
type Limiter struct {
	identity  float64
	overrides map[string]float64
	// Now is the clock; nil is time.Now. Set before first use.
	Now func() time.Time

	mu      sync.Mutex // guards the rest
	total   *bucket    // nil: no total limit
	clients map[string]*list.Element
	lru     list.List // of *client, most recently used first
	epoch   time.Time // the zero of the buckets' clocks
}

type client struct {
	id string
	b  bucket
}

// New returns the Limiter of c.
func New(c Config) *Limiter {
	l := &Limiter{identity: float64(c.Identity), clients: map[string]*list.Element{}}
	if c.Total > 0 {
		l.total = &bucket{rate: float64(c.Total), tokens: float64(c.Total)}
	}
	for _, o := range c.Overrides {
		for _, id := range o.IDs {
			if l.overrides == nil {
				l.overrides = map[string]float64{}
			}
			if _, dup := l.overrides[id]; !dup && o.Rate > 0 {
				l.overrides[id] = float64(o.Rate)
			}
		}
	}
	return l
}

// Allow decides about one request of the client with verified SPIFFE ID id ("" for
// none). When it refuses, retryAfter is how long until the limit that refused would
// admit it.
func (l *Limiter) Allow(id string) (refused Scope, retryAfter time.Duration) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	rate, scope := l.identity, Identity
	if r, ok := l.overrides[id]; ok {
		rate, scope = r, Override
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now()
	if l.epoch.IsZero() {
		l.epoch = t
	}
	secs := t.Sub(l.epoch).Seconds()
	var cb *bucket
	if rate > 0 {
		cb = l.client(id, rate, secs)
		if wait := cb.take(secs, false); wait > 0 {
			return scope, wait
		}
	}
	if l.total != nil {
		if wait := l.total.take(secs, true); wait > 0 {
			return Total, wait
		}
	}
	if cb != nil {
		cb.take(secs, true)
	}
	return Admitted, 0
}

// client returns the bucket of id, creating it full, most recently used first.
func (l *Limiter) client(id string, rate, secs float64) *bucket {
	if e, ok := l.clients[id]; ok {
		l.lru.MoveToFront(e)
		return &e.Value.(*client).b
	}
	if len(l.clients) >= MaxClients {
		// The least recently used: if it was idle for a second its bucket is full
		// and nothing is lost; otherwise that client gets one extra second's burst.
		e := l.lru.Back()
		delete(l.clients, e.Value.(*client).id)
		l.lru.Remove(e)
	}
	c := &client{id: id, b: bucket{rate: rate, tokens: rate, last: secs}}
	l.clients[id] = l.lru.PushFront(c)
	return &c.b
}

// Clients is the number of per-client buckets held, for tests and metrics.
func (l *Limiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// bucket is a token bucket that holds at most one second of its rate. Its clock is
// seconds since the Limiter's epoch.
type bucket struct {
	rate, tokens, last float64
}

// take refills the bucket to secs and, when it has a token, spends it if spend is
// set; otherwise it returns how long until it will have one.
func (b *bucket) take(secs float64, spend bool) time.Duration {
	if secs > b.last {
		b.tokens = math.Min(b.rate, b.tokens+(secs-b.last)*b.rate)
		b.last = secs
	}
	if b.tokens >= 1 {
		if spend {
			b.tokens--
		}
		return 0
	}
	wait := (1 - b.tokens) / b.rate
	return time.Duration(math.Ceil(wait * float64(time.Second)))
}

// RetryAfter is the value of a Retry-After header (RFC 9110 section 10.2.3: whole
// seconds) for a wait: rounded up, at least 1.
func RetryAfter(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	return max(s, 1)
}
