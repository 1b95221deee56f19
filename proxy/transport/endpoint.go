package transport

import (
	"net/http"
	"net/netip"

	"github.com/weftmesh/weft/proxy/balance"
)

// Hop is how one request reaches one endpoint: the client that carries it, what
// its URL dials (the endpoint, or the peer proxy in front of it), and for a peer
// proxy the Weft-Dst and Weft-Proto values naming the endpoint and the protocol the
// peer must speak to it.
type Hop struct {
	Transport http.RoundTripper
	Host      string
	Dst       string // "" when not meshed
	Proto     string // "h1" or "h2" when meshed
}

// Endpoint says how to reach ep for r: through its proxy over mTLS when it is
// meshed, else straight to it with plain.
func Endpoint(mesh *Mesh, plain *Plain, ep *balance.Endpoint, r *http.Request) Hop {
	if ep.Meshed() {
		upgrade := r.ProtoMajor == 1 && r.Header.Get("Upgrade") != ""
		proto := "h1"
		if r.ProtoMajor == 2 {
			proto = "h2"
		}
		return Hop{
			Transport: mesh.For(Peer{ep.ProxyAddr, ep.Identity}, upgrade),
			Host:      addrString(ep.ProxyAddr, ep.ProxyAddrString),
			Dst:       addrString(ep.Addr, ep.AddrString),
			Proto:     proto,
		}
	}
	return Hop{Transport: plain.For(r), Host: addrString(ep.Addr, ep.AddrString)}
}

// addrString returns the preformatted form of ap when there is one.
func addrString(ap netip.AddrPort, s string) string {
	if s != "" {
		return s
	}
	return ap.String()
}
