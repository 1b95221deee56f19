package server

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/tcpfwd"
)

// countedConn counts a connection's bytes into a TCP series and records its close.
// The series may be attached after some traffic (an inbound TLS connection's client
// identity is known only after the handshake); bytes seen before are kept pending.
// Attach must happen before the connection is shared between goroutines.
type countedConn struct {
	net.Conn
	series       *metrics.TCPSeries
	pendR, pendW uint64
	errno        atomic.Pointer[string]
	closeOnce    sync.Once
	onClose      func()
	fallback     func() *metrics.TCPSeries
	// writeTimeout, when set, bounds each Write (Options.WriteTimeout). The
	// deadline is moved only when it has aged by a quarter of the timeout, so a
	// busy connection does not pay a timer update per write: a stalled write fails
	// after between 3/4 and all of the timeout.
	writeTimeout time.Duration
	writeDL      atomic.Int64 // unix nanoseconds of the deadline Write set last; -1: its owner set one
	// release frees the connection's place under its listener's connection limit.
	release func()
}

// newCountedConn wraps a TCP connection of the data path: counted, and read and
// written with raw system calls (rawTCP).
func newCountedConn(c net.Conn) *countedConn {
	return &countedConn{Conn: newRawTCP(c)}
}

func (c *countedConn) attach(s *metrics.TCPSeries) {
	c.series = s
	s.Open()
	if c.pendR|c.pendW != 0 {
		s.AddBytes(c.pendR, c.pendW)
		c.pendR, c.pendW = 0, 0
	}
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.series != nil {
			c.series.AddBytes(uint64(n), 0)
		} else {
			c.pendR += uint64(n)
		}
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		if last := c.writeDL.Load(); last >= 0 {
			if dl := time.Now().Add(c.writeTimeout).UnixNano(); dl-last > int64(c.writeTimeout/4) && c.writeDL.CompareAndSwap(last, dl) {
				c.Conn.SetWriteDeadline(time.Unix(0, dl))
			}
		}
	}
	n, err := c.Conn.Write(p)
	if n > 0 {
		if c.series != nil {
			c.series.AddBytes(0, uint64(n))
		} else {
			c.pendW += uint64(n)
		}
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}

// SetWriteDeadline and SetDeadline set a deadline for whoever owns the connection
// (TLS interrupting a handshake, net/http clearing its deadlines): until it is
// cleared, Write leaves it alone instead of moving it.
func (c *countedConn) SetWriteDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *countedConn) SetDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *countedConn) noteDeadline(t time.Time) {
	if t.IsZero() {
		c.writeDL.Store(0) // none: the next Write sets the write timeout's
	} else {
		c.writeDL.Store(-1) // the owner's deadline rules
	}
}

func (c *countedConn) noteErr(err error) {
	if e := tcpfwd.Errno(err); e != "" {
		c.errno.CompareAndSwap(nil, &e)
	}
}

// addSpliced adds bytes that moved on the bare socket (splice) and so bypassed Read
// and Write.
func (c *countedConn) addSpliced(read, written int64, err error) {
	if err != nil {
		c.noteErr(err)
	}
	if c.series != nil {
		c.series.AddBytes(uint64(read), uint64(written))
	}
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.series == nil && c.fallback != nil {
			c.attach(c.fallback())
		}
		if c.series != nil {
			e := ""
			if p := c.errno.Load(); p != nil {
				e = *p
			}
			c.series.Close(0, 0, e)
		}
		if c.onClose != nil {
			c.onClose()
		}
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// CloseWrite half-closes when the underlying connection can.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connInfo is what the proxy learned about an accepted connection before handing it
// to an HTTP server; handlers read it from the request context.
type connInfo struct {
	origDst netip.AddrPort
	mesh    bool   // inbound: arrived over mTLS from a peer proxy
	peerID  string // inbound mesh: the client's verified SPIFFE ID
	// h1Checked: Weft's HTTP/1.1 server checked the whole header of the request it
	// handed over with the connection (h1FramingError); taken by that request.
	h1Checked atomic.Bool
}

type connInfoKey struct{}

func infoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		return &connInfo{}
	}
	return ci
}

// infoConn carries connInfo from the accept loop into http.Server.ConnContext.
// It deliberately hides the wrapped connection's type: a *tls.Conn must not be seen
// by net/http, which would otherwise insist on "h2" ALPN instead of treating weft.h2
// connections as HTTP/2 with prior knowledge.
type infoConn struct {
	net.Conn
	info *connInfo
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
