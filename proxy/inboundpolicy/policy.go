package inboundpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
)

// The inbound policy a proxy enforces (proxy/api/inbound.proto): per port, a server
// whose authorizations admit clients by address and verified identity, optionally
// with routes that have their own authorizations. Compile turns the control plane's
// message (or the bootstrap one, Bootstrap) into a Policy once; requests and
// connections then only read it. A Policy is immutable: a new message is a new
// Policy, swapped whole (Checker.SetPolicy), so a request reads one consistent
// version without a lock.

// Ref names where a server, route or authorization comes from: the group, kind and
// name labels of the authorization metrics, and what denial logs and bodies name.
type Ref = metrics.PolicyRef

// The built-in authorizations (PolicyRef kind "default").
var (
	// ProbeRef admits the kubelet's probes of the pod's declared probe paths.
	ProbeRef = Ref{Kind: "default", Name: "probe"}
	// AuditRef admits what nothing else admits on a server in audit mode.
	AuditRef = Ref{Kind: "default", Name: "audit"}
)

func refOf(r *api.PolicyRef) Ref {
	return Ref{Group: r.GetGroup(), Kind: r.GetKind(), Name: r.GetName()}
}

// refString is group/kind/name, or kind/name without a group.
func refString(r Ref) string {
	if r.Group == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Group + "/" + r.Kind + "/" + r.Name
}

// Policy is a compiled InboundPolicy.
type Policy struct {
	// Version is the message's version ("" for a bootstrap policy).
	Version string
	// def serves the ports servers has no entry for.
	def *Server
	// servers by port. A map, not a sorted slice: a pod has few ports, and a map
	// lookup of a uint16 neither allocates nor depends on the count.
	servers map[uint16]*Server
	// Problems are the parts of the message that did not compile, each already
	// made to admit nothing.
	Problems []string
}

// Server is the compiled policy of one port.
type Server struct {
	Port     uint16
	Ref      Ref
	Protocol api.InboundProtocol
	authz    []*Authz
	routes   []*Route
	// probes are exact paths admitted to GET and HEAD whatever the authorizations.
	probes []string
	audit  bool
	// limit is the port's rate limit; nil: none.
	limit *Limit
}

// Route is a compiled InboundRoute.
type Route struct {
	Ref   Ref
	match router.Matcher
	authz []*Authz
}

// Authz is a compiled Authorization: a client is admitted when its address is in
// every network set and its verified identity matches every identity set.
type Authz struct {
	Ref Ref
	// networks: each set is a list of CIDRs less their exceptions.
	networks [][]network
	// identities: nil means no identity is needed; otherwise every set must match a
	// verified identity (an empty set matches any verified identity).
	identities [][]idMatch
	// never: part of the authorization did not compile; it admits no one.
	never bool
}

type network struct {
	p      netip.Prefix
	except []netip.Prefix
}

type idMatch struct {
	s      string
	prefix bool
}

// Server returns the server of a port: its own, or the default one.
func (p *Policy) Server(port uint16) *Server {
	if s := p.servers[port]; s != nil {
		return s
	}
	return p.def
}

// Opaque reports whether the server reads its connections as opaque TCP (no
// detection, connection-level authorization only).
func (s *Server) Opaque() bool {
	return s.Protocol == api.InboundProtocol_INBOUND_PROTOCOL_OPAQUE
}

// Compile compiles msg. A part that does not compile (a CIDR, an identity match, a
// route match) makes its authorization or route match admit nothing, and is listed
// in Policy.Problems; the rest of the policy applies. A nil message, or one without a
// default server, denies every port without a server of its own: a policy the proxy
// cannot read never admits more than it says.
func Compile(msg *api.InboundPolicy) *Policy {
	p := &Policy{Version: msg.GetVersion(), servers: map[uint16]*Server{}}
	if ds := msg.GetDefaultServer(); ds != nil {
		p.def = p.compileServer(ds, 0)
	} else {
		p.def = &Server{Ref: Ref{Kind: "default", Name: "deny"}}
		p.problem("no default server: ports without a server deny every client")
	}
	for _, s := range msg.GetServers() {
		port := s.GetPort()
		if port == 0 || port > 65535 {
			p.problem("server %s: invalid port %d", refString(refOf(s.GetRef())), port)
			continue
		}
		if _, dup := p.servers[uint16(port)]; dup {
			// The control plane sends at most one per port; the first wins, as
			// it does there.
			p.problem("server %s: port %d has a server already", refString(refOf(s.GetRef())), port)
			continue
		}
		p.servers[uint16(port)] = p.compileServer(s, uint16(port))
	}
	return p
}

func (p *Policy) problem(format string, args ...any) {
	p.Problems = append(p.Problems, fmt.Sprintf(format, args...))
}

func (p *Policy) compileServer(s *api.InboundServer, port uint16) *Server {
	out := &Server{Port: port, Ref: refOf(s.GetRef()), Protocol: s.GetProtocol(), audit: s.GetAudit(), limit: compileLimit(s.GetRateLimit())}
	where := "server " + refString(out.Ref)
	for _, a := range s.GetAuthorizations() {
		out.authz = append(out.authz, p.compileAuthz(a, where))
	}
	for _, r := range s.GetRoutes() {
		rt := &Route{Ref: refOf(r.GetRef())}
		var errs []error
		rt.match, errs = router.CompileMatches(r.GetMatches())
		for _, err := range errs {
			p.problem("%s route %s: %v", where, refString(rt.Ref), err)
		}
		for _, a := range r.GetAuthorizations() {
			rt.authz = append(rt.authz, p.compileAuthz(a, where+" route "+refString(rt.Ref)))
		}
		out.routes = append(out.routes, rt)
	}
	for _, path := range s.GetProbePaths() {
		// Exact absolute paths only: a probe path is what the kubelet requests.
		if !strings.HasPrefix(path, "/") {
			p.problem("%s: probe path %q is not an absolute path", where, path)
			continue
		}
		out.probes = append(out.probes, path)
	}
	return out
}

func (p *Policy) compileAuthz(a *api.Authorization, where string) *Authz {
	out := &Authz{Ref: refOf(a.GetRef())}
	fail := func(format string, args ...any) {
		out.never = true
		p.problem("%s authorization %s: %s (it admits no one)", where, refString(out.Ref), fmt.Sprintf(format, args...))
	}
	for _, set := range a.GetNetworks() {
		var ns []network
		for _, n := range set.GetNetworks() {
			pre, err := parseCIDR(n.GetCidr())
			if err != nil {
				fail("%v", err)
				continue
			}
			nw := network{p: pre}
			for _, e := range n.GetExcept() {
				ep, err := parseCIDR(e)
				if err != nil {
					// Without the exception the network would admit more than
					// it says: the authorization admits no one instead.
					fail("except: %v", err)
					continue
				}
				nw.except = append(nw.except, ep)
			}
			ns = append(ns, nw)
		}
		// An empty set (or one whose networks all failed) is satisfied by no
		// address, which is what it says.
		out.networks = append(out.networks, ns)
	}
	if ids := a.GetIdentities(); len(ids) > 0 {
		out.identities = make([][]idMatch, 0, len(ids))
		for _, set := range ids {
			ms := []idMatch{}
			for _, m := range set.GetMatches() {
				switch k := m.GetKind().(type) {
				case *api.IdentityMatch_Exact:
					if k.Exact == "" {
						fail("empty exact identity")
						continue
					}
					ms = append(ms, idMatch{s: k.Exact})
				case *api.IdentityMatch_Prefix:
					if !strings.HasSuffix(k.Prefix, "/") || len(k.Prefix) < 2 {
						// "spiffe://td/ns/a" as a prefix would match ns/ab too.
						fail("identity prefix %q does not end with /", k.Prefix)
						continue
					}
					ms = append(ms, idMatch{s: k.Prefix, prefix: true})
				default:
					fail("identity match of unknown kind")
				}
			}
			if len(set.GetMatches()) > 0 && len(ms) == 0 {
				// Every match failed: the set must not become "any identity".
				out.never = true
			}
			out.identities = append(out.identities, ms)
		}
	}
	return out
}

// parseCIDR reads a CIDR or a single address (as /32 or /128), masked, with IPv4 in
// IPv6 unmapped so that it compares with unmapped client addresses.
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pre, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
	}
	if a := pre.Addr(); a.Is4In6() {
		bits := pre.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: an IPv4-mapped prefix shorter than /96", s)
		}
		pre = netip.PrefixFrom(a.Unmap(), bits)
	}
	if pre.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid network %q: zones are not allowed", s)
	}
	return pre.Masked(), nil
}

// admits reports whether the authorization admits a client at addr (unmapped) with
// verified identity id ("" without one).
func (a *Authz) admits(addr netip.Addr, id string) bool {
	if a.never {
		return false
	}
	for _, set := range a.networks {
		if !inSet(set, addr) {
			return false
		}
	}
	if a.identities != nil {
		if id == "" {
			return false
		}
		for _, set := range a.identities {
			if len(set) > 0 && !slices.ContainsFunc(set, func(m idMatch) bool { return m.matches(id) }) {
				return false
			}
		}
	}
	return true
}

func inSet(set []network, addr netip.Addr) bool {
	for i := range set {
		n := &set[i]
		if n.p.Contains(addr) && !slices.ContainsFunc(n.except, func(e netip.Prefix) bool { return e.Contains(addr) }) {
			return true
		}
	}
	return false
}

func (m idMatch) matches(id string) bool {
	if m.prefix {
		return strings.HasPrefix(id, m.s)
	}
	return id == m.s
}
