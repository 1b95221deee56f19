package server

import "time"

// SetH2WriteTimeout shortens the weft.h2 write deadline for a test; the returned
// function restores it.
func SetH2WriteTimeout(d time.Duration) (restore func()) {
	old := h2WriteTimeout
	h2WriteTimeout = d
	return func() { h2WriteTimeout = old }
}

// AppAddress is an address of this host for apps behind the inbound proxy.
var AppAddress = hostAppAddr

// Weft.h2 limits the tests check against.
const (
	H2StreamWindow  = h2StreamWindow
	H2ConnWindow    = h2ConnWindow
	H2MaxHeaderList = h2MaxHeaderList
)

// PooledForTest counts the connections Weft's HTTP/1.1 clients keep pooled (both
// directions) and the peer proxies the mesh pool holds clients for.
func (s *Server) PooledForTest() (conns, peers int) {
	for _, h := range []*h1Client{s.out.fast, s.in.fast} {
		h.mu.Lock()
		for _, cs := range h.idle {
			conns += len(cs)
		}
		h.mu.Unlock()
	}
	s.mesh.mu.RLock()
	peers = len(s.mesh.h2) + len(s.mesh.h1)
	s.mesh.mu.RUnlock()
	return conns, peers
}
