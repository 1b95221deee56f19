// Package netconn is the data path's TCP connection: every connection the proxy
// accepts or dials for HTTP is wrapped in a Counted, which counts its bytes into a
// TCP metrics series, records its close with the errno that ended it, bounds each
// write (a peer that stops reading cannot pin a writer), and reads and writes with
// raw system calls (NewRaw).
package netconn

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/tcpfwd"
)

// Counted counts a connection's bytes into a TCP series and records its close.
// The series may be attached after some traffic (an inbound TLS connection's client
// identity is known only after the handshake); bytes seen before are kept pending.
// Attach must happen before the connection is shared between goroutines.
type Counted struct {
	net.Conn
	series       *metrics.TCPSeries
	pendR, pendW uint64
	errno        atomic.Pointer[string]
	closeOnce    sync.Once
	// OnClose, when set, runs once when the connection closes (the accept loop's
	// tracking for graceful shutdown).
	OnClose func()
	// Fallback, when set, gives the series a connection closed before Attach is
	// counted into.
	Fallback func() *metrics.TCPSeries
	// WriteTimeout, when set, bounds each Write (server.Options.WriteTimeout). The
	// deadline is moved only when it has aged by a quarter of the timeout, so a
	// busy connection does not pay a timer update per write: a stalled write fails
	// after between 3/4 and all of the timeout.
	WriteTimeout time.Duration
	writeDL      atomic.Int64 // unix nanoseconds of the deadline Write set last; -1: its owner set one
	// Release, when set, frees the connection's place under its listener's
	// connection limit.
	Release func()
}

// NewCounted wraps a TCP connection of the data path: counted, and read and
// written with raw system calls (NewRaw).
func NewCounted(c net.Conn) *Counted {
	return &Counted{Conn: NewRaw(c)}
}

// Attach counts the connection into s from now on, with the bytes seen so far.
func (c *Counted) Attach(s *metrics.TCPSeries) {
	c.series = s
	s.Open()
	if c.pendR|c.pendW != 0 {
		s.AddBytes(c.pendR, c.pendW)
		c.pendR, c.pendW = 0, 0
	}
}

func (c *Counted) Read(p []byte) (int, error) {
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

func (c *Counted) Write(p []byte) (int, error) {
	if c.WriteTimeout > 0 {
		if last := c.writeDL.Load(); last >= 0 {
			if dl := time.Now().Add(c.WriteTimeout).UnixNano(); dl-last > int64(c.WriteTimeout/4) && c.writeDL.CompareAndSwap(last, dl) {
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
func (c *Counted) SetWriteDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *Counted) SetDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *Counted) noteDeadline(t time.Time) {
	if t.IsZero() {
		c.writeDL.Store(0) // none: the next Write sets the write timeout's
	} else {
		c.writeDL.Store(-1) // the owner's deadline rules
	}
}

func (c *Counted) noteErr(err error) {
	if e := tcpfwd.Errno(err); e != "" {
		c.errno.CompareAndSwap(nil, &e)
	}
}

// AddSpliced adds bytes that moved on the bare socket (splice) and so bypassed Read
// and Write.
func (c *Counted) AddSpliced(read, written int64, err error) {
	if err != nil {
		c.noteErr(err)
	}
	if c.series != nil {
		c.series.AddBytes(uint64(read), uint64(written))
	}
}

func (c *Counted) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.series == nil && c.Fallback != nil {
			c.Attach(c.Fallback())
		}
		if c.series != nil {
			e := ""
			if p := c.errno.Load(); p != nil {
				e = *p
			}
			c.series.Close(0, 0, e)
		}
		if c.OnClose != nil {
			c.OnClose()
		}
		if c.Release != nil {
			c.Release()
		}
	})
	return err
}

// CloseWrite half-closes when the underlying connection can.
func (c *Counted) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
