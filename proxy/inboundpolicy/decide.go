package inboundpolicy

import (
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/weftmesh/weft/proxy/ratelimit"
)

// Client is who asks: the inputs of every decision.
type Client struct {
	// Addr is the client's address (for a peer proxy, its pod's address).
	Addr netip.Addr
	// ID is the client's verified SPIFFE ID; "" when it did not complete mTLS.
	ID string
	// Undeclared: the connection is read as opaque TCP although its port is not
	// declared opaque (by the Server's proxyProtocol or the pod's opaque ports):
	// protocol detection found no HTTP in time, or a meshed client chose weft.tcp.
	Undeclared bool
}

// Verdict is the outcome of a decision.
type Verdict uint8

const (
	// Allowed: an authorization (or a probe path, or audit) admits the client.
	Allowed Verdict = iota
	// Denied: no authorization admits the client.
	Denied
	// NoRoute: the server has routes and the request matches none (404, gRPC
	// UNIMPLEMENTED); authorization is not asked.
	NoRoute
	// RateLimited: the client was admitted but the server's rate limit refused the
	// request (429 with Retry-After, gRPC RESOURCE_EXHAUSTED).
	RateLimited
)

// Decision is what a decision found, for the response, the metrics and the log.
type Decision struct {
	Verdict Verdict
	Server  *Server
	// Route is the route the request matched; nil for connections and for servers
	// without routes.
	Route *Route
	// Authz is what admitted the client when Allowed (ProbeRef, AuditRef or an
	// authorization's Ref).
	Authz Ref
	// Audit: nothing but the server's audit mode admitted the client (a would-be
	// denial).
	Audit bool
	// RetryAfter is how long a RateLimited client should wait.
	RetryAfter time.Duration
	// Limit is the limit that refused a RateLimited request.
	Limit ratelimit.Scope
}

// Connection decides about a connection read as opaque TCP: only the server's own
// authorizations apply (routes are HTTP's).
func (s *Server) Connection(c Client) Decision {
	d := Decision{Server: s}
	if c.Undeclared && s.limit != nil {
		// An HTTP rate limit reads requests; an opaque stream has none, so a client
		// that delays its first bytes past detection (or a meshed client that opens
		// weft.tcp) would pass unlimited. The port is HTTP by its policy: refuse.
		d.Verdict = Denied
		return d
	}
	if a := firstAdmitting(s.authz, c); a != nil {
		d.Authz = a.Ref
		return d
	}
	return s.otherwise(d)
}

// Request decides about one HTTP request (HTTP/1, HTTP/2, gRPC) on the server's
// port. Probe paths come first, so a restrictive policy never fails the kubelet's
// probes; then the route the request matches (none: NoRoute), whose authorizations
// or the server's admit the client.
func (s *Server) Request(r *http.Request, c Client) Decision {
	d := Decision{Server: s}
	if len(s.probes) > 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) && slices.Contains(s.probes, r.URL.Path) {
		d.Authz = ProbeRef
		return d
	}
	if len(s.routes) > 0 {
		for _, rt := range s.routes {
			if rt.match.Match(r) {
				d.Route = rt
				break
			}
		}
		if d.Route == nil {
			d.Verdict = NoRoute
			return d
		}
		if a := firstAdmitting(d.Route.authz, c); a != nil {
			d.Authz = a.Ref
			return d
		}
	}
	if a := firstAdmitting(s.authz, c); a != nil {
		d.Authz = a.Ref
		return d
	}
	return s.otherwise(d)
}

// otherwise is the decision when no authorization admitted the client: audit admits
// and flags it, anything else denies.
func (s *Server) otherwise(d Decision) Decision {
	if s.audit {
		d.Authz, d.Audit = AuditRef, true
		return d
	}
	d.Verdict = Denied
	return d
}

func firstAdmitting(as []*Authz, c Client) *Authz {
	for _, a := range as {
		if a.admits(c.Addr, c.ID) {
			return a
		}
	}
	return nil
}
