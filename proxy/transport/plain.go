// Package transport is how the proxy reaches an endpoint: the plaintext HTTP clients
// of each direction (Weft's HTTP/1.1 client for the common case, http.Transport for
// the rest, HTTP/2 with prior knowledge), the mTLS clients to peer proxies (weft.h2
// multiplexed, weft.h1 for Upgrade, weft.tcp for opaque streams) pooled per peer and
// swept when idle, and the weft.tcp header.
package transport

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"github.com/weftmesh/weft/proxy/internal/netconn"
	"github.com/weftmesh/weft/proxy/metrics"
)

// Options are what every transport shares: server.Options' fields of the same names.
type Options struct {
	ConnectTimeout  time.Duration
	WriteTimeout    time.Duration
	IdleConnTimeout time.Duration
	Metrics         *metrics.Registry
	// Identity proves this proxy to peer proxies; nil: meshed endpoints cannot be
	// reached (ErrNoIdentity).
	Identity *identity.Store
}

// Plain holds the plaintext HTTP clients of one direction: outbound to unmeshed
// endpoints, inbound to the local application.
type Plain struct {
	h1  *http.Transport // HTTP/1.1, keep-alive pooled per ip:port
	h2c *http.Transport // HTTP/2 with prior knowledge (gRPC and h2c apps)
	// fast carries bodiless repeatable HTTP/1.1 requests without http.Transport's
	// goroutine handoffs; H1 routes between fast and h1.
	fast *h1.Client
	// H1 speaks HTTP/1.1 (Weft's client or http.Transport), H2 HTTP/2 with prior
	// knowledge.
	H1 http.RoundTripper
	H2 http.RoundTripper
}

// NewPlain returns the plaintext clients of direction dir, whose connections count
// into dir's TCP series.
func NewPlain(o Options, dir metrics.Direction) *Plain {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: o.ConnectTimeout}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, dialFailed(err)
		}
		cc := netconn.NewCounted(c)
		cc.WriteTimeout = o.WriteTimeout
		k := metrics.TCPKey{Dir: dir, Peer: metrics.Dst}
		if dir == metrics.Outbound {
			k.NoTLSReason = noTLSReason(ctx)
		}
		cc.Attach(o.Metrics.TCP(k))
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
			IdleConnTimeout:       o.IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			// The proxy is transparent: it never asks for compression the app did not.
			DisableCompression: true,
			HTTP2:              &http.HTTP2Config{SendPingTimeout: 30 * time.Second},
		}
	}
	t := &Plain{h1: base(&p1), h2c: base(&p2)}
	t.fast = &h1.Client{Dial: dial, IdleTimeout: t.h1.IdleConnTimeout, MaxIdle: t.h1.MaxIdleConnsPerHost}
	t.H1 = fastOrSlow{fast: t.fast, slow: httpmsg.InterimTrace{Transport: t.h1}}
	t.H2 = httpmsg.InterimTrace{Transport: t.h2c}
	return t
}

// For speaks to a plaintext backend in the protocol the client used: HTTP/2 (gRPC,
// h2c) stays HTTP/2, HTTP/1.x stays HTTP/1.1 (including Upgrade).
func (t *Plain) For(r *http.Request) http.RoundTripper {
	if r.ProtoMajor == 2 {
		return t.H2
	}
	return t.H1
}

// CloseIdle closes idle connections; after Shutdown (final) none are pooled again.
func (t *Plain) CloseIdle(final bool) {
	t.h1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
	t.fast.CloseIdle(final)
}

// Sweep closes the connections of Weft's HTTP/1.1 client idle for longer than
// IdleConnTimeout and returns how many stay pooled (http.Transport closes its own on
// timers).
func (t *Plain) Sweep(now time.Time) int { return t.fast.Sweep(now) }

// Pooled is the number of connections Weft's HTTP/1.1 client keeps pooled.
func (t *Plain) Pooled() int { return t.fast.Pooled() }

// fastOrSlow sends what Weft's HTTP/1.1 client may carry to it and the rest to
// http.Transport.
type fastOrSlow struct {
	fast *h1.Client
	slow http.RoundTripper // http.Transport
}

func (h fastOrSlow) RoundTrip(r *http.Request) (*http.Response, error) {
	if h1.CanCarry(r) {
		return h.fast.RoundTrip(r)
	}
	return h.slow.RoundTrip(r)
}

type noTLSReasonKey struct{}

// WithNoTLSReason returns ctx carrying why a plaintext connection dialled for it has no
// TLS (the no_tls_reason label); without it, NoTLSNotProvided.
func WithNoTLSReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, noTLSReasonKey{}, reason)
}

func noTLSReason(ctx context.Context) string {
	if r, ok := ctx.Value(noTLSReasonKey{}).(string); ok && r != "" {
		return r
	}
	return NoTLSNotProvided
}
