package metrics

import (
	"cmp"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/weftmesh/weft/internal/promtext"
)

// The inbound authorization series, with the Linkerd proxy's names and labels
// (linkerd2-proxy linkerd/app/inbound/src/metrics/authz.rs): what the inbound policy
// (proxy/inboundpolicy) admitted and denied, per request for HTTP and per connection
// for opaque TCP, labelled with the server, route and authorization that decided.

// PolicyRef names a policy object in the srv_*, route_* and authz_* labels.
type PolicyRef struct {
	Group, Kind, Name string
}

// AuthzMetric is one of the authorization families.
type AuthzMetric uint8

const (
	// HTTPAuthzAllow: inbound_http_authz_allow_total (server, route, authz).
	HTTPAuthzAllow AuthzMetric = iota
	// HTTPAuthzDeny: inbound_http_authz_deny_total (server, route).
	HTTPAuthzDeny
	// HTTPRouteNotFound: inbound_http_route_not_found_total (server).
	HTTPRouteNotFound
	// TCPAuthzAllow: inbound_tcp_authz_allow_total (server, authz).
	TCPAuthzAllow
	// TCPAuthzDeny: inbound_tcp_authz_deny_total (server).
	TCPAuthzDeny
	// TCPAuthzTerminate: inbound_tcp_authz_terminate_total (server): open
	// connections closed because a new policy no longer admits them.
	TCPAuthzTerminate
	// HTTPRateLimited: weft_inbound_http_ratelimit_rejected_total (server, route,
	// ratelimit): authorized requests a rate limit refused (429). Weft-only: the
	// Linkerd proxy has no such family.
	HTTPRateLimited
	numAuthzMetrics
)

var authzFamilies = [numAuthzMetrics]struct {
	name, help   string
	route, authz bool
	// authzPrefix labels AuthzKey.Authz ("authz" when empty).
	authzPrefix string
}{
	HTTPAuthzAllow:    {"inbound_http_authz_allow_total", "The total number of inbound HTTP requests that were authorized.", true, true, ""},
	HTTPAuthzDeny:     {"inbound_http_authz_deny_total", "The total number of inbound HTTP requests that were denied.", true, false, ""},
	HTTPRouteNotFound: {"inbound_http_route_not_found_total", "The total number of inbound HTTP requests that could not be associated with a route.", false, false, ""},
	TCPAuthzAllow:     {"inbound_tcp_authz_allow_total", "The total number of inbound TCP connections that were authorized.", false, true, ""},
	TCPAuthzDeny:      {"inbound_tcp_authz_deny_total", "The total number of inbound TCP connections that were denied.", false, false, ""},
	TCPAuthzTerminate: {"inbound_tcp_authz_terminate_total", "The total number of inbound TCP connections that were terminated due to an authorization change.", false, false, ""},
	HTTPRateLimited:   {"weft_inbound_http_ratelimit_rejected_total", "The total number of authorized inbound HTTP requests refused by an HTTPLocalRateLimitPolicy.", true, true, "ratelimit"},
}

// AuthzKey identifies one authorization series. Route and Authz are left empty by
// the families that do not have them.
type AuthzKey struct {
	// Target is the application address the client asked for (target_addr).
	Target netip.AddrPort
	Server PolicyRef
	Route  PolicyRef
	Authz  PolicyRef
	// ClientID is the client's verified SPIFFE ID; "" is tls="no_identity".
	ClientID string
}

// MaxAuthzSeries bounds each authorization family. A client chooses the target port
// (any port of the pod) and, within the trust domain, its identity; past the bound new
// label sets are counted with target_addr and client_id "overflow", and in
// weft_inbound_authz_series_overflow_total.
const MaxAuthzSeries = 1000

// Authz counts one decision in family m.
func (r *Registry) Authz(m AuthzMetric, k AuthzKey) {
	r.amu.RLock()
	c := r.authz[m][k]
	r.amu.RUnlock()
	if c == nil {
		c = r.newAuthz(m, k)
	}
	c.Add(1)
}

func (r *Registry) newAuthz(m AuthzMetric, k AuthzKey) *atomic.Uint64 {
	r.amu.Lock()
	defer r.amu.Unlock()
	if r.authz[m] == nil {
		r.authz[m] = map[AuthzKey]*atomic.Uint64{}
	}
	series := r.authz[m]
	if c := series[k]; c != nil {
		return c
	}
	if len(series) >= MaxAuthzSeries {
		r.AuthzOverflow.Add(1)
		k.Target, k.ClientID = netip.AddrPort{}, OverflowAuthority
		if c := series[k]; c != nil {
			return c
		}
		// The overflow series of each server/route/authorization: bounded by the
		// policy's size, not by clients.
	}
	c := new(atomic.Uint64)
	series[k] = c
	return c
}

func refLabels(l promtext.Labels, prefix string, ref PolicyRef) promtext.Labels {
	return l.With(prefix+"_group", ref.Group, prefix+"_kind", ref.Kind, prefix+"_name", ref.Name)
}

func (r *Registry) writeAuthz(w *promtext.Writer) {
	type entry struct {
		k AuthzKey
		v uint64
	}
	for m := range numAuthzMetrics {
		f := authzFamilies[m]
		r.amu.RLock()
		es := make([]entry, 0, len(r.authz[m]))
		for k, c := range r.authz[m] {
			es = append(es, entry{k, c.Load()})
		}
		r.amu.RUnlock()
		if len(es) == 0 {
			// As the Linkerd proxy: a family appears once it has a series.
			continue
		}
		slices.SortFunc(es, func(a, b entry) int { return compareAuthzKeys(&a.k, &b.k) })
		w.Family(f.name, promtext.Counter, f.help)
		for _, e := range es {
			target := OverflowAuthority
			if e.k.Target.IsValid() {
				target = e.k.Target.String()
			}
			l := refLabels(promtext.L("target_addr", target), "srv", e.k.Server)
			if f.route {
				l = refLabels(l, "route", e.k.Route)
			}
			if f.authz {
				l = refLabels(l, cmp.Or(f.authzPrefix, "authz"), e.k.Authz)
			}
			if e.k.ClientID == "" {
				l = l.With("tls", "no_identity", "no_tls_reason", "no_tls_from_remote")
			} else {
				l = l.With("tls", "true", "client_id", e.k.ClientID)
			}
			w.Uint(f.name, l, e.v)
		}
	}
	w.Family("weft_inbound_authz_series_overflow_total", promtext.Counter, "Authorization decisions counted under target_addr and client_id \"overflow\" because their family had reached its series limit.")
	w.Uint("weft_inbound_authz_series_overflow_total", "", r.AuthzOverflow.Load())
}

func compareAuthzKeys(a, b *AuthzKey) int {
	return cmp.Or(a.Target.Compare(b.Target),
		cmp.Compare(a.Server.Group, b.Server.Group), cmp.Compare(a.Server.Kind, b.Server.Kind), cmp.Compare(a.Server.Name, b.Server.Name),
		cmp.Compare(a.Route.Group, b.Route.Group), cmp.Compare(a.Route.Kind, b.Route.Kind), cmp.Compare(a.Route.Name, b.Route.Name),
		cmp.Compare(a.Authz.Group, b.Authz.Group), cmp.Compare(a.Authz.Kind, b.Authz.Kind), cmp.Compare(a.Authz.Name, b.Authz.Name),
		cmp.Compare(a.ClientID, b.ClientID))
}
