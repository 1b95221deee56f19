package server

import (
	"net"
	"sync"
	"time"
)

// coalesceDelay is the longest a HEADERS frame waits for its stream's DATA.
const coalesceDelay = 100 * time.Microsecond

// HTTP/2 frame header fields (RFC 9113 §4.1, §6.2).
const (
	frameHeaderLen  = 9
	frameHeaders    = 0x1
	flagEndStream   = 0x1
	flagEndHeaders  = 0x4
	clientPrefaceLn = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// coalescingConn joins an HTTP/2 response's (or request's) HEADERS frame and the
// DATA that follows into one write. Go's HTTP/2 server and client write and flush
// the header block on its own and the body after it, so a small response costs two
// TLS records and two write system calls here, and on the peer two reads and often
// two wake-ups. When a write ends with a complete HEADERS frame that does not end
// its stream (a body follows), it is held back for at most coalesceDelay and sent
// with the next write. Everything else, including anything after a held frame, is
// written at once, in order. The delay only shows when a body is slow to start (a
// streaming response's first bytes), and is bounded by the timer; a frame is never
// held for the next frame's sake otherwise.
//
// Writes are serialised by the HTTP/2 implementation; the mutex orders them with the
// timer's flush.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	pending []byte
	timer   *time.Timer
	armed   bool
	err     error         // a delayed write failed; later writes fail with it
	delay   time.Duration // how long a HEADERS frame is held; coalesceDelay, tests lengthen it

	// Frame tracking over the written byte stream.
	skip      int // bytes before the first frame (the client preface)
	hdr       [frameHeaderLen]byte
	hdrN      int
	remain    int // payload bytes left in the current frame
	lastType  byte
	lastFlags byte
}

func newCoalescingConn(c net.Conn, client bool) *coalescingConn {
	cc := &coalescingConn{Conn: c, delay: coalesceDelay}
	if client {
		cc.skip = clientPrefaceLn
	}
	return cc
}

// track follows frame boundaries through p and reports whether p ends exactly after a
// HEADERS frame whose stream continues with DATA.
func (c *coalescingConn) track(p []byte) bool {
	for len(p) > 0 {
		switch {
		case c.skip > 0:
			n := min(c.skip, len(p))
			c.skip -= n
			p = p[n:]
		case c.remain > 0:
			n := min(c.remain, len(p))
			c.remain -= n
			p = p[n:]
		default:
			n := copy(c.hdr[c.hdrN:], p)
			c.hdrN += n
			p = p[n:]
			if c.hdrN == frameHeaderLen {
				c.remain = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
				c.lastType, c.lastFlags = c.hdr[3], c.hdr[4]
				c.hdrN = 0
			}
		}
	}
	return c.skip == 0 && c.remain == 0 && c.hdrN == 0 &&
		c.lastType == frameHeaders && c.lastFlags&flagEndStream == 0 && c.lastFlags&flagEndHeaders != 0
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.track(p) {
		c.pending = append(c.pending, p...)
		if !c.armed {
			c.armed = true
			if c.timer == nil {
				c.timer = time.AfterFunc(c.delay, c.flushHeld)
			} else {
				c.timer.Reset(c.delay)
			}
		}
		return len(p), nil
	}
	if len(c.pending) == 0 {
		return c.Conn.Write(p)
	}
	c.disarm()
	c.pending = append(c.pending, p...)
	n, err := c.Conn.Write(c.pending)
	held := len(c.pending) - len(p)
	c.pending = c.pending[:0]
	// Report only p's share of what was written.
	return max(0, n-held), err
}

func (c *coalescingConn) disarm() {
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
}

// flushHeld runs on the timer: the body did not follow in time.
func (c *coalescingConn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if len(c.pending) == 0 || c.err != nil {
		return
	}
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	if err != nil {
		// Nobody is waiting for this write; fail later writes and close, so that
		// the HTTP/2 side notices on its reads too.
		c.err = err
		c.Conn.Close()
	}
}

// Close sends what is held before closing. A write blocked on a peer that does not
// read holds the mutex; closing must then go ahead without it, since closing is how
// the HTTP/2 side unblocks such a write.
func (c *coalescingConn) Close() error {
	if c.mu.TryLock() {
		if c.timer != nil {
			c.disarm()
		}
		if len(c.pending) > 0 && c.err == nil {
			_, _ = c.Conn.Write(c.pending)
			c.pending = c.pending[:0]
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
