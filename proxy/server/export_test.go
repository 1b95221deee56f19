package server

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
