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

package identity

import (
	"context"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// Limits bound what callers of the identity service can make it (and the API server)
// do. Every pod can reach the service and nothing about a caller is known before its
// token is reviewed, so the limits are per source IP address (a pod's IP) and global.
type Limits struct {
	// PeerRate is how many Certify calls per second one source IP may make, on
	// average. A proxy makes one at start and one per renewal (every ~17h with 24h
	// leaves); retries back off from 1s. Default 1.
	PeerRate rate.Limit
	// PeerBurst is how many calls one source IP may make at once. Default 10.
	PeerBurst int
	// MaxPeers bounds the per-IP limiter table. When it is full, a new IP evicts an
	// idle entry (one whose bucket has refilled), else the least recently seen one.
	// Default 4096.
	MaxPeers int
	// ReviewRate bounds the TokenReviews the service sends per second across all
	// callers, so that many pods together cannot flood the API server either; calls
	// beyond it get Unavailable and retry. Default 50.
	ReviewRate rate.Limit
	// ReviewBurst is how many TokenReviews may go at once. Default 100 (a node of
	// pods starting together).
	ReviewBurst int
	// CacheSize bounds the cache of successful TokenReviews. Default 10000; negative
	// disables the cache.
	CacheSize int
	// CacheMaxAge caps how long a successful review is reused (never past the
	// token's exp). Default 5m.
	CacheMaxAge time.Duration
	// MaxConcurrentStreams bounds the calls in flight on one connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113 section 6.5.2). Default 4: a proxy
	// makes one call at a time.
	MaxConcurrentStreams uint32
}

func (l *Limits) defaults() {
	if l.PeerRate <= 0 {
		l.PeerRate = 1
	}
	if l.PeerBurst <= 0 {
		l.PeerBurst = 10
	}
	if l.MaxPeers <= 0 {
		l.MaxPeers = 4096
	}
	if l.ReviewRate <= 0 {
		l.ReviewRate = 50
	}
	if l.ReviewBurst <= 0 {
		l.ReviewBurst = 100
	}
	if l.CacheSize == 0 {
		l.CacheSize = 10000
	}
	if l.CacheMaxAge <= 0 {
		l.CacheMaxAge = 5 * time.Minute
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = 4
	}
}

// peerLimiter is a token bucket per source IP in a bounded table.
type peerLimiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu    sync.Mutex
	peers map[string]*peerBucket
}

type peerBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newPeerLimiter(r rate.Limit, burst, maxPeers int) *peerLimiter {
	return &peerLimiter{rate: r, burst: burst, max: maxPeers, peers: map[string]*peerBucket{}}
}

// allow takes a token from ip's bucket at now.
func (p *peerLimiter) allow(ip string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.peers[ip]
	if b == nil {
		if len(p.peers) >= p.max {
			p.evict(now)
		}
		b = &peerBucket{lim: rate.NewLimiter(p.rate, p.burst)}
		p.peers[ip] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// evict removes the buckets that have refilled (forgetting them loses nothing: a new
// bucket starts full), or else the least recently seen one. O(peers), and only when
// the table is full.
func (p *peerLimiter) evict(now time.Time) {
	refill := time.Duration(float64(p.burst) / float64(p.rate) * float64(time.Second))
	var oldest string
	var oldestSeen time.Time
	for ip, b := range p.peers {
		if now.Sub(b.seen) >= refill {
			delete(p.peers, ip)
			continue
		}
		if oldest == "" || b.seen.Before(oldestSeen) {
			oldest, oldestSeen = ip, b.seen
		}
	}
	if len(p.peers) >= p.max && oldest != "" {
		delete(p.peers, oldest)
	}
}

func (p *peerLimiter) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.peers)
}

// peerIP is the source IP of a call ("" when unknown, e.g. a call made in-process).
func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}
