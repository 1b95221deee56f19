package server

import (
	"net"
	"time"

	"github.com/weftmesh/weft/proxy/internal/h2"
)

// SetH2WriteTimeout shortens the weft.h2 write deadline for a test; the returned
// function restores it.
func SetH2WriteTimeout(d time.Duration) (restore func()) {
	return h2.SetWriteTimeoutForTest(d)
}

// AppAddress is an address of this host for apps behind the inbound proxy.
var AppAddress = hostAppAddr

// hostAppAddr is an address of this host for an app behind the inbound proxy, which
// forwards only to the pod's own application addresses: one that is not loopback
// when the host has one, else 127.0.0.1.
func hostAppAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}

// Weft.h2 limits the tests check against.
const (
	H2StreamWindow  = h2.StreamWindow
	H2ConnWindow    = h2.ConnWindow
	H2MaxHeaderList = h2.MaxHeaderList
)

// PooledForTest counts the connections Weft's HTTP/1.1 clients keep pooled (both
// directions) and the peer proxies the mesh pool holds clients for.
func (s *Server) PooledForTest() (conns, peers int) {
	return s.out.Pooled() + s.in.Pooled(), s.mesh.Peers()
}
