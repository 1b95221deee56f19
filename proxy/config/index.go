package config

import (
	"net/netip"
)

// Index is an immutable lookup structure built from a validated Config: the
// listener-level settings (opaque ports, test overrides). The inbound policy is
// proxy/inboundpolicy's (Bootstrap reads Config.Inbound). The
// destinations are served by the proxy's static source (proxy/destination), which
// converts them to the destination service's model. The proxy swaps whole Indexes
// atomically when configuration changes, so lookups take no lock.
type Index struct {
	Config      *Config
	opaque      map[uint16]bool
	InboundDst  netip.AddrPort // zero unless overridden
	OutboundDst netip.AddrPort // zero unless overridden
}

// NewIndex builds the lookup structure. The config must have passed Validate and
// had ApplyDefaults called; invalid entries are skipped.
func NewIndex(c *Config) *Index {
	ix := &Index{
		Config: c,
		opaque: map[uint16]bool{},
	}
	for _, p := range c.OpaquePorts {
		ix.opaque[p] = true
	}
	ix.InboundDst, _ = ParseAddrPort(c.Inbound.OriginalDstOverride)
	ix.OutboundDst, _ = ParseAddrPort(c.Outbound.OriginalDstOverride)
	return ix
}

// Opaque reports whether detection is skipped for this port.
func (ix *Index) Opaque(port uint16) bool { return ix.opaque[port] }
