package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/metrics"
)

// transports are the plaintext HTTP clients of one direction: outbound to unmeshed
// endpoints, inbound to the local application.
type transports struct {
	h1  *http.Transport // HTTP/1.1, keep-alive pooled per ip:port
	h2c *http.Transport // HTTP/2 with prior knowledge (gRPC and h2c apps)
	// fast carries bodiless repeatable HTTP/1.1 requests without http.Transport's
	// goroutine handoffs; h1rt routes between fast and h1.
	fast *h1Client
	h1rt http.RoundTripper
	h2rt http.RoundTripper // h2c
}

func newTransports(s *Server, dir metrics.Direction) *transports {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: s.opts.ConnectTimeout}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := newCountedConn(c)
		cc.writeTimeout = s.opts.WriteTimeout
		cc.attach(s.opts.Metrics.TCP(metrics.TCPKey{Dir: dir, Peer: metrics.Dst}))
		return cc, nil
	}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	base := func(p *http.Protocols) *http.Transport {
		return &http.Transport{
			Protocols:             p,
			DialContext:           dial,
			MaxIdleConns:          1000,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       s.opts.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			// The proxy is transparent: it never asks for compression the app did not.
			DisableCompression: true,
			HTTP2:              &http.HTTP2Config{SendPingTimeout: 30 * time.Second},
		}
	}
	t := &transports{h1: base(&p1), h2c: base(&p2)}
	t.fast = &h1Client{dial: dial, idleTimeout: t.h1.IdleConnTimeout, maxIdle: t.h1.MaxIdleConnsPerHost}
	t.h1rt = h1Router{fast: t.fast, slow: interimTrace{t.h1}}
	t.h2rt = interimTrace{t.h2c}
	return t
}

// closeIdle closes idle connections; after Shutdown (final) none are pooled again.
func (t *transports) closeIdle(final bool) {
	t.h1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
	t.fast.closeIdle(final)
}

// meshKey identifies a peer proxy: its inbound address and the identity it must
// prove. Connections are pooled per key.
type meshKey struct {
	addr netip.AddrPort
	id   string
}

// meshPool holds the HTTP clients that talk to peer proxies over mTLS.
type meshPool struct {
	s  *Server
	mu sync.RWMutex
	h2 map[meshKey]*meshClient     // ALPN weft.h2: multiplexed, one connection per peer
	h1 map[meshKey]*http.Transport // ALPN weft.h1: HTTP/1.1 for Upgrade requests
	// used notes, per peer, that a request took its weft.h2 ([0]) or weft.h1 ([1])
	// client since the last sweep; a client unused for a whole sweep period is
	// closed and forgotten, so peers that went away (pod churn) do not stay.
	used map[meshKey]*[2]atomic.Bool
}

func newMeshPool(s *Server) *meshPool {
	return &meshPool{s: s, h2: map[meshKey]*meshClient{}, h1: map[meshKey]*http.Transport{}, used: map[meshKey]*[2]atomic.Bool{}}
}

// markUsed notes a use of k's client (under p.mu, read or write). It writes only
// when the flag changes, so a busy peer's flag stays in every core's cache.
func (p *meshPool) markUsed(k meshKey, upgrade bool) {
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

// sweep closes and forgets the clients of peers that no request took since the last
// sweep: the weft.h1 transports at once (their idle connections closed; upgraded
// connections in use belong to their requests), the weft.h2 clients when closing
// their idle connections left them none (a connection with streams keeps its client
// until a later sweep). It returns how many clients are left.
func (p *meshPool) sweep() int {
	p.mu.Lock()
	var h2 []meshKey
	for k, u := range p.used {
		if _, ok := p.h2[k]; ok && !u[0].Swap(false) {
			h2 = append(h2, k)
		}
		if t, ok := p.h1[k]; ok && !u[1].Swap(false) {
			t.CloseIdleConnections()
			delete(p.h1, k)
		}
	}
	clients := make([]*meshClient, len(h2))
	for i, k := range h2 {
		clients[i] = p.h2[k]
	}
	p.mu.Unlock()
	// Closing may write (GOAWAY) and so wait: not under the pool's lock.
	for _, c := range clients {
		c.closeIdle()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range h2 {
		c := clients[i]
		c.mu.Lock()
		empty := len(c.conns) == 0 && c.dialing == nil
		c.mu.Unlock()
		if empty && p.h2[k] == c && !p.used[k][0].Load() {
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

// errNoIdentity is returned when a meshed endpoint is dialled without a certificate.
var errNoIdentity = errors.New("no identity certificate: cannot reach meshed endpoint")

// dial opens an mTLS connection to a peer proxy, verifying its identity, and hides
// the *tls.Conn type from net/http (see infoConn).
func (p *meshPool) dial(ctx context.Context, k meshKey, alpn string) (*tls.Conn, error) {
	s := p.s
	if s.opts.Identity == nil || s.opts.Identity.Current() == nil {
		return nil, errNoIdentity
	}
	d := net.Dialer{Timeout: s.opts.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", k.addr.String())
	if err != nil {
		return nil, fmt.Errorf("dial peer proxy %s: %w", k.addr, err)
	}
	cc := newCountedConn(raw)
	cc.writeTimeout = s.opts.WriteTimeout
	cc.attach(s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Outbound, Peer: metrics.Dst, PeerID: k.id}))
	tc := tls.Client(cc, s.opts.Identity.ClientConfig(k.id, alpn))
	hctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("mTLS handshake with %s (%s): %w", k.addr, k.id, err)
	}
	return tc, nil
}

// transport returns the pooled client for a peer proxy: the multiplexed HTTP/2
// connection (weft.h2), or HTTP/1.1 connections (weft.h1) for Upgrade requests.
func (p *meshPool) transport(k meshKey, upgrade bool) http.RoundTripper {
	p.mu.RLock()
	var rt http.RoundTripper
	if upgrade {
		if t := p.h1[k]; t != nil {
			rt = t
		}
	} else if t := p.h2[k]; t != nil {
		rt = t
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
				tc, err := p.dial(ctx, k, identity.ALPNHTTP1)
				if err != nil {
					return nil, err
				}
				// Hide *tls.Conn so net/http speaks HTTP/1.1 on it as is.
				return &infoConn{Conn: tc}, nil
			},
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       p.s.opts.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		}
		p.h1[k] = t
		return t
	}
	if t := p.h2[k]; t != nil {
		return t
	}
	t := newMeshClient(func(ctx context.Context) (net.Conn, error) {
		return p.dial(ctx, k, identity.ALPNHTTP2)
	})
	p.h2[k] = t
	return t
}

func (p *meshPool) closeIdle() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, t := range p.h2 {
		t.closeIdle()
	}
	for _, t := range p.h1 {
		t.CloseIdleConnections()
	}
}

// Opaque TCP between proxies (ALPN weft.tcp) starts with one header line naming the
// backend: "weft-dst: <ip:port>\n".
const tcpHeaderPrefix = "weft-dst: "

func tcpHeader(dst netip.AddrPort) []byte {
	return fmt.Appendf(nil, "%s%s\n", tcpHeaderPrefix, dst)
}

// readTCPHeader reads the header line byte by byte so that no stream byte after it is
// consumed.
func readTCPHeader(r io.Reader) (netip.AddrPort, error) {
	var buf [80]byte
	n := 0
	for {
		if n == len(buf) {
			return netip.AddrPort{}, errors.New("weft.tcp header too long")
		}
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			return netip.AddrPort{}, fmt.Errorf("read weft.tcp header: %w", err)
		}
		n++
		if buf[n-1] == '\n' {
			break
		}
	}
	v, ok := cutPrefixBytes(buf[:n], tcpHeaderPrefix)
	if !ok {
		return netip.AddrPort{}, errors.New("malformed weft.tcp header")
	}
	return config.ParseAddrPort(string(v[:len(v)-1]))
}

func cutPrefixBytes(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return nil, false
	}
	return b[len(prefix):], true
}
