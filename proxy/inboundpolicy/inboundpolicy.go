// Package inboundpolicy decides what the inbound side lets a client reach: the
// relay targets (only the pod's own application addresses, never loopback, never the
// proxy's own ports) and the pod's inbound policy (proxy/api/inbound.proto: per port,
// which clients, by address and verified identity, may connect or make which
// requests). Both the opaque TCP relay and the HTTP pipeline ask it, so the rule has
// one home.
package inboundpolicy

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/ratelimit"
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

// Checker applies Targets and the pod's inbound policy, and counts and logs what
// they refuse. Denials are logged at V(1), and at most once a second at the default
// level: any client can cause them at will and must not be able to fill the log.
type Checker struct {
	Targets *Targets
	Log     logr.Logger
	Metrics *metrics.Registry

	// policy is the current Policy, read once per request or connection.
	policy atomic.Pointer[Policy]
	// fromControlPlane: the policy came from the control plane; a bootstrap
	// (configuration reload) no longer replaces it.
	fromControlPlane atomic.Bool
	// lastLoud is when a denial was last logged at the default level (unix ns).
	lastLoud atomic.Int64

	// conns are the open opaque connections, re-decided when the policy changes.
	connsMu sync.Mutex
	conns   map[*openConn]struct{}
}

type openConn struct {
	dst    netip.AddrPort
	client Client
	close  func()
}

// Policy returns the policy in force; before any was installed, one that denies
// everything.
func (c *Checker) Policy() *Policy {
	if p := c.policy.Load(); p != nil {
		return p
	}
	return denyAll
}

var denyAll = Compile(&api.InboundPolicy{DefaultServer: &api.InboundServer{Ref: &api.PolicyRef{Kind: "default", Name: "deny"}}})

// SetBootstrap installs the policy built from the proxy's configuration (Bootstrap),
// unless the control plane's policy is in force already.
func (c *Checker) SetBootstrap(p *Policy) {
	if c.fromControlPlane.Load() {
		return
	}
	c.install(p)
}

// SetPolicy installs a policy the control plane sent. Requests decided afterwards,
// on new and existing connections alike, use it; open opaque connections it no
// longer admits are closed.
func (c *Checker) SetPolicy(p *Policy) {
	c.fromControlPlane.Store(true)
	c.install(p)
}

func (c *Checker) install(p *Policy) {
	// Not atomic with the swap: should two installs race, p misses the limiters of
	// the other and its buckets start full, which admits at most one second's burst.
	p.inheritLimits(c.policy.Load())
	old := c.policy.Swap(p)
	if old != nil && old.Version == p.Version && old.Version != "" {
		return
	}
	for _, pr := range p.Problems {
		// Once per version: a message is compiled once.
		c.Log.Info("Part of the inbound policy does not apply: it admits no one", "version", p.Version, "problem", pr)
	}
	c.Log.V(1).Info("Inbound policy installed", "version", p.Version, "servers", len(p.servers))
	c.recheckConns(p)
}

// recheckConns closes the open opaque connections p does not admit, as the Linkerd
// proxy does (inbound_tcp_authz_terminate_total): a revoked authorization must not
// live on in a connection that stays open for days.
func (c *Checker) recheckConns(p *Policy) {
	c.connsMu.Lock()
	var denied []*openConn
	for oc := range c.conns {
		if p.Server(oc.dst.Port()).Connection(oc.client).Verdict != Allowed {
			denied = append(denied, oc)
			delete(c.conns, oc)
		}
	}
	c.connsMu.Unlock()
	for _, oc := range denied {
		s := p.Server(oc.dst.Port())
		c.Metrics.Authz(metrics.TCPAuthzTerminate, metrics.AuthzKey{Target: oc.dst, Server: s.Ref, ClientID: oc.client.ID})
		c.deniedLog("Closing connection the new inbound policy does not admit", oc.dst, s, nil, oc.client)
		// Not inline: closing a TLS connection may wait for its close_notify to
		// be written, and the policy stream must not wait for every connection.
		go oc.close()
	}
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

// Connection decides about an opaque connection to dst (the server's
// authorizations only) and counts the decision. When it is allowed, the caller
// tracks it with Track so that a policy change can close it.
func (c *Checker) Connection(dst netip.AddrPort, cl Client) bool {
	s := c.Policy().Server(dst.Port())
	d := s.Connection(cl)
	k := metrics.AuthzKey{Target: dst, Server: s.Ref, ClientID: cl.ID}
	if d.Verdict != Allowed {
		c.Metrics.Authz(metrics.TCPAuthzDeny, k)
		msg := "Connection denied by the inbound policy"
		if cl.Undeclared && s.limit != nil {
			msg = "Connection denied: it is not HTTP, and its port has an HTTP rate limit that would not apply to it (declare the port opaque, or remove the rate limit)"
		}
		c.deniedLog(msg, dst, s, nil, cl)
		return false
	}
	k.Authz = d.Authz
	c.Metrics.Authz(metrics.TCPAuthzAllow, k)
	if d.Audit {
		c.deniedLog("Audit: the inbound policy would deny this connection", dst, s, nil, cl)
	}
	return true
}

// Track registers an allowed opaque connection until the returned function is
// called; closeConn closes it when a new policy no longer admits it.
func (c *Checker) Track(dst netip.AddrPort, cl Client, closeConn func()) (untrack func()) {
	oc := &openConn{dst: dst, client: cl, close: closeConn}
	c.connsMu.Lock()
	if c.conns == nil {
		c.conns = map[*openConn]struct{}{}
	}
	c.conns[oc] = struct{}{}
	c.connsMu.Unlock()
	// A policy installed between the decision and here was not applied to it.
	if c.Policy().Server(dst.Port()).Connection(cl).Verdict != Allowed {
		c.recheckConns(c.Policy())
	}
	return func() {
		c.connsMu.Lock()
		delete(c.conns, oc)
		c.connsMu.Unlock()
	}
}

// Request decides about an HTTP request to dst under the current policy and counts
// the decision; the caller answers NoRoute and Denied (RequestRefusal).
func (c *Checker) Request(r *http.Request, dst netip.AddrPort, cl Client) Decision {
	s := c.Policy().Server(dst.Port())
	d := s.Request(r, cl)
	k := metrics.AuthzKey{Target: dst, Server: s.Ref, ClientID: cl.ID}
	switch d.Verdict {
	case NoRoute:
		c.Metrics.Authz(metrics.HTTPRouteNotFound, k)
		return d
	case Denied:
		k.Route = routeRef(d.Route)
		c.Metrics.Authz(metrics.HTTPAuthzDeny, k)
		c.deniedLog("Request denied by the inbound policy", dst, s, d.Route, cl)
		return d
	}
	k.Route, k.Authz = routeRef(d.Route), d.Authz
	c.Metrics.Authz(metrics.HTTPAuthzAllow, k)
	if d.Audit {
		c.deniedLog("Audit: the inbound policy would deny this request", dst, s, d.Route, cl)
	}
	// After authorization, so that a denied client spends no one's budget; never
	// the kubelet's probes, whose failure would restart a pod that is only busy.
	if d.Authz != ProbeRef {
		if scope, wait := s.RateLimit(cl.ID); scope != ratelimit.Admitted {
			d.Verdict, d.Limit, d.RetryAfter = RateLimited, scope, wait
			k.Authz = s.limit.Ref
			c.Metrics.Authz(metrics.HTTPRateLimited, k)
		}
	}
	return d
}

// RateLimitedMessage is the body of the 429 answering a rate-limited request: which
// policy and which of its limits, and when to retry.
func RateLimitedMessage(d Decision) string {
	return "weft-proxy: the " + d.Limit.String() + " rate limit of " + refString(d.Server.limit.Ref) +
		" on server " + refString(d.Server.Ref) + " is exceeded; retry after " +
		strconv.Itoa(ratelimit.RetryAfter(d.RetryAfter)) + "s\n"
}

// DefaultRouteRef is the route label of requests on a server without routes, as the
// Linkerd proxy labels them.
var DefaultRouteRef = Ref{Kind: "default", Name: "default"}

func routeRef(rt *Route) Ref {
	if rt == nil {
		return DefaultRouteRef
	}
	return rt.Ref
}

// deniedLog logs a denial (or an audited would-be denial) with who asked: at V(1)
// always, at the default level at most once a second.
func (c *Checker) deniedLog(msg string, dst netip.AddrPort, s *Server, rt *Route, cl Client) {
	l := c.Log.V(1)
	now, last := time.Now().UnixNano(), c.lastLoud.Load()
	if now-last >= int64(time.Second) && c.lastLoud.CompareAndSwap(last, now) {
		l = c.Log
	}
	if !l.Enabled() {
		return
	}
	client := cl.ID
	if client == "" {
		client = "(no identity)"
	}
	kv := []any{"dst", dst, "server", refString(s.Ref), "client", client, "clientAddr", cl.Addr}
	if rt != nil {
		kv = append(kv, "route", refString(rt.Ref))
	}
	l.Info(msg, kv...)
}

// DeniedMessage is the body of the 403 answering a denied request: which server's
// policy denied it, and what to do.
func DeniedMessage(d Decision, cl Client) string {
	who := cl.ID
	if who == "" {
		who = "a client without a mesh identity"
	}
	msg := "weft-proxy: the inbound policy of server " + refString(d.Server.Ref)
	if d.Route != nil {
		msg += " (route " + refString(d.Route.Ref) + ")"
	}
	return msg + " denies " + who + "; an AuthorizationPolicy must admit it\n"
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
