package config

import (
	"net/netip"
	"strings"
	"sync/atomic"
)

// ResolvedEndpoint is an endpoint with its address parsed, ready for dialling.
type ResolvedEndpoint struct {
	Addr      netip.AddrPort // the application's ip:port
	Identity  string         // expected SPIFFE ID; empty = unmeshed
	Protocol  Protocol
	ProxyAddr netip.AddrPort // the peer proxy's inbound ip:port (meshed only)
}

// Meshed reports whether the endpoint is reached through its proxy with mTLS.
func (e *ResolvedEndpoint) Meshed() bool { return e.Identity != "" }

// ResolvedDestination is a destination with parsed endpoints and a round-robin cursor.
type ResolvedDestination struct {
	Name      string
	Protocol  Protocol
	Endpoints []ResolvedEndpoint
	next      atomic.Uint32
}

// Pick returns the next endpoint in round-robin order. Safe for concurrent use.
func (d *ResolvedDestination) Pick() *ResolvedEndpoint {
	if len(d.Endpoints) == 1 {
		return &d.Endpoints[0]
	}
	n := d.next.Add(1)
	return &d.Endpoints[int(n)%len(d.Endpoints)]
}

// Index is an immutable lookup structure built from a validated Config. The proxy
// swaps whole Indexes atomically when configuration changes, so lookups take no lock.
type Index struct {
	Config      *Config
	byAddr      map[netip.AddrPort]*ResolvedDestination
	byAuthority map[string]*ResolvedDestination
	opaque      map[uint16]bool
	portPolicy  map[uint16]Policy
	InboundDst  netip.AddrPort // zero unless overridden
	OutboundDst netip.AddrPort // zero unless overridden
}

// NewIndex builds the lookup structure. The config must have passed Validate and
// had ApplyDefaults called; invalid entries are skipped.
func NewIndex(c *Config) *Index {
	ix := &Index{
		Config:      c,
		byAddr:      map[netip.AddrPort]*ResolvedDestination{},
		byAuthority: map[string]*ResolvedDestination{},
		opaque:      map[uint16]bool{},
		portPolicy:  map[uint16]Policy{},
	}
	for _, p := range c.OpaquePorts {
		ix.opaque[p] = true
	}
	for _, pp := range c.Inbound.PortPolicies {
		ix.portPolicy[pp.Port] = pp.Policy
	}
	ix.InboundDst, _ = ParseAddrPort(c.Inbound.OriginalDstOverride)
	ix.OutboundDst, _ = ParseAddrPort(c.Outbound.OriginalDstOverride)
	for i := range c.Destinations {
		d := &c.Destinations[i]
		rd := &ResolvedDestination{Name: d.Name, Protocol: d.Protocol}
		for _, e := range d.Endpoints {
			ip, err := netip.ParseAddr(e.Address)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			re := ResolvedEndpoint{Addr: netip.AddrPortFrom(ip, e.Port), Identity: e.Identity, Protocol: e.Protocol}
			if re.Protocol == "" {
				re.Protocol = d.Protocol
			}
			if e.Identity != "" {
				pp := e.ProxyPort
				if pp == 0 {
					pp = DefaultInboundPort
				}
				re.ProxyAddr = netip.AddrPortFrom(ip, pp)
			}
			rd.Endpoints = append(rd.Endpoints, re)
		}
		if len(rd.Endpoints) == 0 {
			continue
		}
		// Detection is decided per connection, before an endpoint is picked: a
		// destination is opaque when all its endpoints are.
		allOpaque := true
		for _, e := range rd.Endpoints {
			allOpaque = allOpaque && e.Protocol == ProtocolOpaque
		}
		if allOpaque {
			rd.Protocol = ProtocolOpaque
		}
		for _, a := range d.Addresses {
			if ap, err := ParseAddrPort(a); err == nil {
				ix.byAddr[ap] = rd
			}
		}
		for _, a := range d.Authorities {
			ix.byAuthority[NormalizeAuthority(a)] = rd
		}
	}
	return ix
}

// ByAddr finds the destination for an original destination ip:port.
func (ix *Index) ByAddr(ap netip.AddrPort) *ResolvedDestination {
	return ix.byAddr[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
}

// ByAuthority finds the destination for an HTTP authority. The common case (already
// lower-case with a port) does not allocate.
func (ix *Index) ByAuthority(a string) *ResolvedDestination {
	if len(ix.byAuthority) == 0 {
		return nil
	}
	if d, ok := ix.byAuthority[a]; ok {
		return d
	}
	if strings.IndexByte(a, ':') < 0 || strings.ToLower(a) != a {
		return ix.byAuthority[NormalizeAuthority(a)]
	}
	return nil
}

// Opaque reports whether detection is skipped for this port.
func (ix *Index) Opaque(port uint16) bool { return ix.opaque[port] }

// InboundPolicy returns the policy for a local application port.
func (ix *Index) InboundPolicy(port uint16) Policy {
	if p, ok := ix.portPolicy[port]; ok {
		return p
	}
	if ix.Config.Inbound.DefaultPolicy == "" {
		return PolicyAllUnauthenticated
	}
	return ix.Config.Inbound.DefaultPolicy
}
