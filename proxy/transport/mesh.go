package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/internal/netconn"
	"github.com/weftmesh/weft/proxy/internal/replay"
	"github.com/weftmesh/weft/proxy/metrics"
)

// Peer identifies a peer proxy: its inbound address and the identity it must
// prove. Connections are pooled per key.
type Peer struct {
	Addr netip.AddrPort
	ID   string
}

// Mesh holds the HTTP clients that talk to peer proxies over mTLS.
type Mesh struct {
	o  Options
	mu sync.RWMutex             // taken before an h2.Client's own locks (see proxy/internal/h2)
	h2 map[Peer]*h2.Client      // ALPN weft.h2: multiplexed, one connection per peer
	h1 map[Peer]*http.Transport // ALPN weft.h1: HTTP/1.1 for Upgrade requests
	// used notes, per peer, that a request took its weft.h2 ([0]) or weft.h1 ([1])
	// client since the last sweep; a client unused for a whole sweep period is
	// closed and forgotten, so peers that went away (pod churn) do not stay.
	used map[Peer]*[2]atomic.Bool
}

// NewMesh returns an empty pool.
func NewMesh(o Options) *Mesh {
	return &Mesh{o: o, h2: map[Peer]*h2.Client{}, h1: map[Peer]*http.Transport{}, used: map[Peer]*[2]atomic.Bool{}}
}

// markUsed notes a use of k's client (under p.mu, read or write). It writes only
// when the flag changes, so a busy peer's flag stays in every core's cache.
func (p *Mesh) markUsed(k Peer, upgrade bool) {
	i := 0
	if upgrade {
		i = 1
	}
	u := p.used[k]
	if u == nil {
		return // created under the write lock, which marks it
	}
	if !u[i].Load() {
		u[i].Store(true)
	}
}

// Sweep closes and forgets the clients of peers that no request took since the last
// sweep: the weft.h1 transports at once (their idle connections closed; upgraded
// connections in use belong to their requests), the weft.h2 clients when closing
// their idle connections left them none (a connection with streams keeps its client
// until a later sweep). It returns how many clients are left.
func (p *Mesh) Sweep() int {
	p.mu.Lock()
	var stale []Peer
	for k, u := range p.used {
		if _, ok := p.h2[k]; ok && !u[0].Swap(false) {
			stale = append(stale, k)
		}
		if t, ok := p.h1[k]; ok && !u[1].Swap(false) {
			t.CloseIdleConnections()
			delete(p.h1, k)
		}
	}
	clients := make([]*h2.Client, len(stale))
	for i, k := range stale {
		clients[i] = p.h2[k]
	}
	p.mu.Unlock()
	// Closing may write (GOAWAY) and so wait: not under the pool's lock.
	for _, c := range clients {
		c.CloseIdle()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range stale {
		c := clients[i]
		if c.Unused() && p.h2[k] == c && !p.used[k][0].Load() {
			delete(p.h2, k)
		}
	}
	for k := range p.used {
		_, ok2 := p.h2[k]
		_, ok1 := p.h1[k]
		if !ok1 && !ok2 {
			delete(p.used, k)
		}
	}
	return len(p.h2) + len(p.h1)
}

// ErrNoIdentity is returned when a meshed endpoint is dialled without a certificate.
var ErrNoIdentity = errors.New("no identity certificate: cannot reach meshed endpoint")

// Dial opens an mTLS connection to a peer proxy with ALPN alpn, verifying its
// identity.
func (p *Mesh) Dial(ctx context.Context, k Peer, alpn string) (*tls.Conn, error) {
	return p.DialLabeled(ctx, k, alpn, "")
}

// DialLabeled is Dial for a connection that serves one endpoint only (opaque TCP):
// its tcp_* series carry the endpoint's labels dst (metrics.DstLabels). The pooled
// HTTP connections are shared by the Services a peer backs, so they carry none.
func (p *Mesh) DialLabeled(ctx context.Context, k Peer, alpn string, dst promtext.Labels) (*tls.Conn, error) {
	o := p.o
	if o.Identity == nil || o.Identity.Current() == nil {
		return nil, ErrNoIdentity
	}
	d := net.Dialer{Timeout: o.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", k.Addr.String())
	if err != nil {
		return nil, dialFailed(fmt.Errorf("dial peer proxy %s: %w", k.Addr, err))
	}
	cc := netconn.NewCounted(raw)
	cc.WriteTimeout = o.WriteTimeout
	cc.Attach(o.Metrics.TCP(metrics.TCPKey{Dir: metrics.Outbound, Peer: metrics.Dst, PeerID: k.ID, Dst: dst}))
	tc := tls.Client(cc, o.Identity.ClientConfig(k.ID, alpn))
	hctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		tc.Close()
		return nil, handshakeFailed(fmt.Errorf("mTLS handshake with %s (%s): %w", k.Addr, k.ID, err))
	}
	return tc, nil
}

// For returns the pooled client for a peer proxy: the multiplexed HTTP/2
// connection (weft.h2), or HTTP/1.1 connections (weft.h1) for Upgrade requests.
func (p *Mesh) For(k Peer, upgrade bool) http.RoundTripper {
	p.mu.RLock()
	var rt http.RoundTripper
	if upgrade {
		if t := p.h1[k]; t != nil {
			rt = t
		}
	} else if t := p.h2[k]; t != nil {
		rt = replayable{t}
	}
	if rt != nil {
		p.markUsed(k, upgrade)
	}
	p.mu.RUnlock()
	if rt != nil {
		return rt
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[k] == nil {
		p.used[k] = new([2]atomic.Bool)
	}
	p.markUsed(k, upgrade)
	if upgrade {
		if t := p.h1[k]; t != nil {
			return t
		}
		var protos http.Protocols
		protos.SetHTTP1(true)
		t := &http.Transport{
			Protocols: &protos,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				tc, err := p.Dial(ctx, k, identity.ALPNHTTP1)
				if err != nil {
					return nil, err
				}
				return hiddenTLS{tc}, nil
			},
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       p.o.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		}
		p.h1[k] = t
		return t
	}
	if t := p.h2[k]; t != nil {
		return t
	}
	t := h2.NewClient(func(ctx context.Context) (net.Conn, error) {
		return p.Dial(ctx, k, identity.ALPNHTTP2)
	})
	p.h2[k] = t
	return t
}

// CloseIdle closes the idle connections to every peer.
func (p *Mesh) CloseIdle() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, t := range p.h2 {
		t.CloseIdle()
	}
	for _, t := range p.h1 {
		t.CloseIdleConnections()
	}
}

// Peers is how many peer proxies the pool holds clients for.
func (p *Mesh) Peers() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.h2) + len(p.h1)
}

// hiddenTLS hides the *tls.Conn type of a weft.h1 connection from net/http, which
// would otherwise insist on "h2" ALPN instead of speaking HTTP/1.1 on it as is.
type hiddenTLS struct{ net.Conn }

// replayable keeps a small request body (an app's POST, read from its connection
// once) so that the weft.h2 client can send the request again through GetBody when
// the peer refuses it unprocessed, as a peer proxy that is shutting down does. A body
// that is an attempt of the pipeline's retries is left alone: those retries replay
// it.
type replayable struct{ c *h2.Client }

func (t replayable) RoundTrip(req *http.Request) (*http.Response, error) {
	if b := req.Body; b != nil && b != http.NoBody && req.GetBody == nil && req.ContentLength > 0 && req.ContentLength <= replay.MaxBody && !replay.IsAttempt(b) {
		body := replay.New(b, req.ContentLength)
		first, _ := body.Next()
		r := *req
		r.Body = first
		r.GetBody = body.GetBody
		req = &r
	}
	return t.c.RoundTrip(req)
}
