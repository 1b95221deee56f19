package discovery

import "net/netip"

// Target is server.Target (the contract in /work/briefs/contracts.md). TEMPORARY until
// proxy/server's Source interface is committed; then this becomes an alias.
type Target struct {
	Authority string
	Addr      netip.AddrPort
}
