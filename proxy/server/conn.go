package server

import (
	"net"
	"sync"

	"github.com/weftmesh/weft/proxy/pipeline"
)

// infoConn carries a connection's pipeline.ConnInfo from the accept loop into
// http.Server.ConnContext.
// It deliberately hides the wrapped connection's type: a *tls.Conn must not be seen
// by net/http, which would otherwise insist on "h2" ALPN instead of treating weft.h2
// connections as HTTP/2 with prior knowledge.
type infoConn struct {
	net.Conn
	info *pipeline.ConnInfo
}

// chanListener is a net.Listener fed by the proxy's own accept loops, so that one
// http.Server serves connections that were detected (and maybe TLS-terminated)
// elsewhere.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// push hands c to the HTTP server; false when the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}
