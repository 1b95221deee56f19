// Package inboundpolicy decides what the inbound side lets a client reach: the
// relay targets (only the pod's own application addresses, never loopback, never the
// proxy's own ports) and the port policy (config.Index.InboundPolicy: who may connect
// to a port with or without a verified identity). Both the opaque TCP relay and the
// HTTP pipeline ask it, so the rule has one home.
package inboundpolicy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/metrics"
)

// The inbound side forwards to a target a client names: the weft-dst of a peer
// proxy (weft.h2, weft.h1, weft.tcp), or the original destination of a redirected
// plaintext connection. Under the default policy that client may be anyone who
// reaches port 4143, even without a certificate, so the target is the one thing
// between them and everything the pod keeps to itself: its localhost-only services
// (debug ports, sidecar admin APIs, secret agents), the proxy's own admin server,
// and other hosts. Targets decides, once for every relay path, whether a target
// is where the pod's application may be listening.

// Targets answers "may the inbound side forward to this address?".
type Targets struct {
	// allowLoopback is Options.UnsafeLoopbackApps: tests and local demos run apps on
	// 127.0.0.1.
	allowLoopback bool
	// own marks the proxy's own ports (a bit per port, 8 KiB): the listeners the
	// Server serves and Options.ProxyPorts. Read on every relayed request, so it is
	// a lock-free bitmap.
	own [1 << 16 / 64]atomic.Uint64

	mu        sync.RWMutex
	set       map[netip.Addr]bool // this host's application addresses
	refreshed int64               // unix nanoseconds
	now       func() int64
}

// AddOwnPort marks p as one of the proxy's own ports.
func (r *Targets) AddOwnPort(p uint16) {
	if p != 0 {
		r.own[p/64].Or(1 << (p % 64))
	}
}

func (r *Targets) ownPort(p uint16) bool {
	return r.own[p/64].Load()&(1<<(p%64)) != 0
}

// Refusal returns why dst may not be relayed to, or ok.
func (r *Targets) Refusal(dst netip.AddrPort) (metrics.RelayRefusal, bool) {
	a := dst.Addr().Unmap()
	switch {
	case r.ownPort(dst.Port()):
		// Whatever the address: relaying to the proxy's own listeners would loop
		// (inbound, outbound) or reach what no peer may (admin, tap).
		return metrics.RelayProxyPort, false
	case a.IsLoopback():
		if r.allowLoopback {
			return 0, true
		}
		return metrics.RelayLoopback, false
	case !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		// 0.0.0.0 and :: connect to loopback on Linux; link-local addresses are
		// per link (169.254.169.254 is the cloud metadata service, not the pod).
		return metrics.RelayNotUnicast, false
	}
	if !r.local(a) {
		return metrics.RelayNotLocal, false
	}
	return 0, true
}

// local reports whether a is an application address of this host.
func (r *Targets) local(a netip.Addr) bool {
	r.mu.RLock()
	ok := r.set[a]
	last := r.refreshed
	r.mu.RUnlock()
	if ok {
		return true
	}
	// Addresses can be added after start (the pod's IPv6 address may come late);
	// re-read at most once a second on a miss, so a client naming random addresses
	// costs one interface listing per second at most.
	if now := r.now(); now-last > 1e9 {
		r.refresh(now)
		r.mu.RLock()
		ok = r.set[a]
		r.mu.RUnlock()
	}
	return ok
}

// refresh re-reads the host's addresses. Addresses of loopback interfaces are left
// out whatever their range: what is bound there is meant for this host only.
func (r *Targets) refresh(now int64) {
	set := map[netip.Addr]bool{}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				set[p.Addr().Unmap()] = true
			}
		}
	}
	r.mu.Lock()
	r.set, r.refreshed = set, now
	r.mu.Unlock()
}

// NewTargets returns the relay targets of this host; allowLoopback is
// server.Options.UnsafeLoopbackApps.
func NewTargets(allowLoopback bool) *Targets {
	r := &Targets{allowLoopback: allowLoopback, now: func() int64 { return time.Now().UnixNano() }}
	r.refresh(0)
	return r
}

// Checker applies Targets and the port policy, and counts and logs refusals. Only
// at V(1): any client can cause refusals, and must not be able to fill the log at the
// default level.
type Checker struct {
	Targets *Targets
	Log     logr.Logger
	Metrics *metrics.Registry
}

// RelayAllowed applies Targets to a target of the inbound side; client names who
// asked, for the log.
func (c *Checker) RelayAllowed(dst netip.AddrPort, client string) (metrics.RelayRefusal, bool) {
	why, ok := c.Targets.Refusal(dst)
	if !ok {
		c.Metrics.RelayRefused[why].Add(1)
		c.Log.V(1).Info("Refusing to relay to an address that is not the pod's application", "dst", dst, "reason", why.String(), "client", client)
	}
	return why, ok
}

// PlainAllowed applies the inbound policy to a client without identity.
func (c *Checker) PlainAllowed(ix *config.Index, dst netip.AddrPort) bool {
	switch ix.InboundPolicy(dst.Port()) {
	case config.PolicyAllUnauthenticated:
		return true
	default:
		c.Log.V(1).Info("Refusing unauthenticated client by policy", "port", dst.Port())
		return false
	}
}

// MeshAllowed applies the inbound policy to a client that completed mTLS.
func (c *Checker) MeshAllowed(ix *config.Index, dst netip.AddrPort, peerID string) bool {
	switch ix.InboundPolicy(dst.Port()) {
	case config.PolicyAllUnauthenticated:
		return true
	case config.PolicyAllAuthenticated:
		if peerID != "" {
			return true
		}
	}
	c.Log.V(1).Info("Refusing client by policy", "port", dst.Port(), "client", peerID)
	return false
}

// RefusedMessage tells the client what was refused and why, in the body of the
// 403 the inbound side answers.
func RefusedMessage(dst netip.AddrPort, why metrics.RelayRefusal) string {
	var what string
	switch why {
	case metrics.RelayLoopback:
		what = "is a loopback address"
	case metrics.RelayNotUnicast:
		what = "is not a unicast address of this pod"
	case metrics.RelayProxyPort:
		what = "is one of the proxy's own ports"
	default:
		what = "is not an address of this pod"
	}
	return "weft-proxy: refusing to forward to " + dst.String() + ": it " + what +
		"; the inbound proxy forwards only to the pod's own application addresses (its non-loopback IPs, on application ports)\n"
}
