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
	frameWindowUpd  = 0x8
	flagEndStream   = 0x1
	flagEndHeaders  = 0x4
	clientPrefaceLn = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// coalescingConn joins an HTTP/2 request's HEADERS frame and the DATA that follows
// into one write, on the proxy's connections to peer proxies. Go's HTTP/2 client
// writes and flushes the header block on its own and the body after it, so a small
// request costs two TLS records and two write system calls here, and on the peer two
// reads and often two wake-ups. (The peer's side, h2mesh.go, frames its responses
// itself and needs none of this.) When a write ends with a complete HEADERS frame that does not end
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
	err     error // a delayed write failed; later writes fail with it
	// Connection-level WINDOW_UPDATEs are held for the next write (see
	// holdWindowUpdate); heldCredit is the window they carry.
	heldCredit int64
	delay      time.Duration // how long a HEADERS frame is held; coalesceDelay, tests lengthen it

	// Frame tracking over the written byte stream.
	skip      int // bytes before the first frame (the client preface)
	hdr       [frameHeaderLen]byte
	hdrN      int
	remain    int // payload bytes left in the current frame
	lastType  byte
	lastFlags byte
	// Over the current write: whether every frame so far is a connection-level
	// WINDOW_UPDATE, and the window they add.
	onlyConnWU bool
	wuCredit   int64
	wuPayload  [4]byte
	wuN        int
}

// maxHeldCredit bounds the connection window held back in WINDOW_UPDATEs. Go's HTTP/2
// client grants the server a 1 GiB connection window, so holding up to 16 MiB of it
// never makes the server wait.
const maxHeldCredit = 16 << 20

// newCoalescingConn wraps the client side of an HTTP/2 connection (a mesh connection
// to a peer proxy); its first bytes are the client preface.
func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, delay: coalesceDelay, skip: clientPrefaceLn}
}

// track follows frame boundaries through p and reports whether p ends exactly after a
// HEADERS frame whose stream continues with DATA.
func (c *coalescingConn) track(p []byte) bool {
	c.onlyConnWU, c.wuCredit = len(p) > 0 && c.skip == 0 && c.remain == 0 && c.hdrN == 0, 0
	for len(p) > 0 {
		switch {
		case c.skip > 0:
			n := min(c.skip, len(p))
			c.skip -= n
			p = p[n:]
		case c.remain > 0:
			n := min(c.remain, len(p))
			if c.lastType == frameWindowUpd && c.wuN < len(c.wuPayload) {
				c.wuN += copy(c.wuPayload[c.wuN:], p[:n])
				if c.wuN == len(c.wuPayload) {
					c.wuCredit += int64(uint32(c.wuPayload[0])&0x7f<<24 | uint32(c.wuPayload[1])<<16 | uint32(c.wuPayload[2])<<8 | uint32(c.wuPayload[3]))
				}
			}
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
				connLevel := c.hdr[5]&0x7f == 0 && c.hdr[6] == 0 && c.hdr[7] == 0 && c.hdr[8] == 0
				if c.lastType != frameWindowUpd || !connLevel || c.remain != len(c.wuPayload) {
					c.onlyConnWU = false
				}
				c.wuN = 0
			}
		}
	}
	if c.remain != 0 || c.hdrN != 0 || c.skip != 0 {
		c.onlyConnWU = false
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
		c.heldCredit = 0 // sent with the headers
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
	if c.holdWindowUpdate(p) {
		return len(p), nil
	}
	if len(c.pending) == 0 {
		return c.Conn.Write(p)
	}
	c.heldCredit = 0
	c.disarm()
	c.pending = append(c.pending, p...)
	n, err := c.Conn.Write(c.pending)
	held := len(c.pending) - len(p)
	c.pending = c.pending[:0]
	// Report only p's share of what was written.
	return max(0, n-held), err
}

// holdWindowUpdate holds a write that is only connection-level WINDOW_UPDATE frames
// until the next write, on the client side (proxy to peer proxy). Go's HTTP/2 client
// returns the connection window in a frame of its own, written and flushed at once,
// after every 4 KiB or so of response bodies: with small responses that is a write
// system call on this side, and a read and a wake-up on the peer, for one request in
// four. The next request's HEADERS carries it instead. No timer is needed because the
// server has a 1 GiB connection window and at most maxHeldCredit of it is held.
// Stream-level updates and everything else go out as before.
func (c *coalescingConn) holdWindowUpdate(p []byte) bool {
	if !c.onlyConnWU || c.heldCredit+c.wuCredit > maxHeldCredit {
		return false
	}
	c.heldCredit += c.wuCredit
	c.pending = append(c.pending, p...)
	return true
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
	c.heldCredit = 0
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
