package h2

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// framing is what both ends of a weft.h2 connection (server.go, client.go) share:
// the framer, whose write side is used under wmu by every stream, the header encoder,
// the peer's settings and the connection-level send window.
type framing struct {
	// Set before the connection is shared. Reading nc, br and fr's read side is
	// the read loop's alone; fr's write side is used under wmu.
	nc net.Conn
	fr *http2.Framer
	br *bufio.Reader // what fr reads through

	wmu      sync.Mutex // guards the fields below it, up to connWindow
	wcond    sync.Cond  // on wmu: a send window grew, or a stream or the connection ended
	bw       *bufio.Writer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	sendConn int64 // connection-level send window
	peerInit int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxF int   // the peer's SETTINGS_MAX_FRAME_SIZE
	// peerMaxHdr is the peer's SETTINGS_MAX_HEADER_LIST_SIZE, 0 for none.
	peerMaxHdr uint32
	werr       error // a write failed, or the connection ended
	// wdeadline is the write deadline last set on nc (see flushLocked).
	wdeadline time.Time

	// connWindow is the receive window this end grants for the whole connection;
	// unackConn what of it was consumed (read, or dropped) and not yet returned;
	// recvConn what the peer may still send before a WINDOW_UPDATE (RFC 9113
	// §6.9): the read loop takes from it, returnWindow gives back. connWindow is
	// set before the connection is shared; the others are atomic.
	connWindow int64
	unackConn  atomic.Int64
	recvConn   atomic.Int64
}

// maxWindow is the largest flow-control window RFC 9113 §6.9.1 allows.
const maxWindow = 1<<31 - 1

// writeTimeout bounds every flush of a weft.h2 connection: a peer that stops
// reading fills the socket buffers, and the flush that then blocks holds wmu, which
// every handler of the connection and the read loop's replies need. After this long
// the connection fails and all of them return.
const writeTimeout = 10 * time.Second

// testWriteTimeout, when not 0, replaces writeTimeout (SetWriteTimeoutForTest).
// Atomic because a test may restore it while another test's connections flush.
var testWriteTimeout atomic.Int64

func currentWriteTimeout() time.Duration {
	if d := testWriteTimeout.Load(); d != 0 {
		return time.Duration(d)
	}
	return writeTimeout
}

// lingerTimeout and lingerBytes bound how long and how much a connection that
// is closing reads and drops after its last write (GOAWAY, a final response): closing
// a socket with unread input makes the kernel send a TCP reset, which can destroy
// that last write in flight before the peer reads it. The bytes cover the rest of
// the largest frame a peer may be sending (maxReadFrame, or one over it that the
// framer refused after its header) and more.
const (
	lingerTimeout = time.Second
	lingerBytes   = 2 << 20
)

func (h *framing) init(nc net.Conn, connWindow int64) {
	h.nc = nc
	h.connWindow = connWindow
	h.bw = bufio.NewWriterSize(nc, 32<<10)
	h.sendConn, h.peerInit, h.peerMaxF = 65535, 65535, 16384
	h.wcond.L = &h.wmu
	h.henc = hpack.NewEncoder(&h.hbuf)
	h.br = bufio.NewReaderSize(nc, 16<<10)
	h.fr = http2.NewFramer(h.bw, h.br)
	h.fr.SetMaxReadFrameSize(maxReadFrame)
	h.fr.MaxHeaderListSize = MaxHeaderList
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.SetReuseFrames()
	h.recvConn.Store(65535) // until the opening's WINDOW_UPDATE raises it
}

// yieldBeforeRead lets the goroutines the last frames woke (a handler for a new
// request, a caller for its response) run before the read loop's next read, when that
// read is a system call that most likely finds nothing yet: on a proxy running on one
// thread, the request or response then moves on first, and the read waits its turn.
func (h *framing) yieldBeforeRead() {
	if h.br.Buffered() == 0 {
		runtime.Gosched()
	}
}

// writeOpening sends this end's opening: preface (the client's magic string, "" on
// the server's side), SETTINGS with the role's own settings and the limits both ends
// set, and a WINDOW_UPDATE raising the connection window from the protocol's 65,535
// to connWindow.
func (h *framing) writeOpening(preface string, role ...http2.Setting) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.bw.WriteString(preface)
	h.fr.WriteSettings(append(role,
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: MaxHeaderList},
	)...)
	h.recvConn.Add(h.connWindow - 65535)
	h.fr.WriteWindowUpdate(0, uint32(h.connWindow-65535))
	return h.flushLocked()
}

// flushLocked writes what is buffered; a failure ends the connection. wmu held.
// Every flush has at least half of writeTimeout to complete: the deadline is moved
// only when less than that is left, so most flushes cost a clock read, not a timer
// update.
func (h *framing) flushLocked() error {
	if h.werr != nil {
		return h.werr
	}
	if h.bw.Buffered() == 0 {
		return nil
	}
	if wt, now := currentWriteTimeout(), time.Now(); h.wdeadline.Sub(now) < wt/2 {
		h.wdeadline = now.Add(wt)
		h.nc.SetWriteDeadline(h.wdeadline)
	}
	if err := h.bw.Flush(); err != nil {
		h.failLocked(err)
		return err
	}
	return nil
}

// closeWrite ends this end's writing after what is buffered: a TLS close_notify
// (or a TCP FIN) tells the peer nothing more comes, and the read loop, which keeps
// reading under a deadline of lingerTimeout, closes the socket once the peer
// closed its side, so no unread input turns the close into a reset. Later writes
// fail.
func (h *framing) closeWrite() {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if h.werr != nil {
		return
	}
	h.flushLocked()
	h.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	if cw, ok := h.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if h.werr == nil {
		h.werr = net.ErrClosed
	}
	h.wcond.Broadcast()
}

// linger reads and drops what the peer still sends, for at most lingerTimeout
// and lingerBytes, after a connection error's GOAWAY: see closeWrite.
func (h *framing) linger() {
	h.closeWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(h.br, lingerBytes)) // best effort
}

// failLocked ends the connection for writers: later writes fail with err, waiting
// ones wake up. wmu held.
func (h *framing) failLocked(err error) {
	if h.werr == nil {
		h.werr = err
		h.nc.Close()
	}
	h.wcond.Broadcast()
}

// applySettings applies the peer's SETTINGS and acknowledges them. A new initial
// window size changes every open stream's send window by the difference (RFC 9113
// §6.9.2): adjust applies it to the owner's streams (wmu held) and returns false when
// one would pass 2^31-1, a connection error FLOW_CONTROL_ERROR. maxStreams, when not
// nil, takes SETTINGS_MAX_CONCURRENT_STREAMS.
func (h *framing) applySettings(f *http2.SettingsFrame, adjust func(delta int64) bool, maxStreams func(uint32)) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - h.peerInit
			h.peerInit = int64(s.Val)
			if !adjust(delta) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		case http2.SettingMaxFrameSize:
			h.peerMaxF = int(s.Val)
		case http2.SettingHeaderTableSize:
			h.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxHeaderListSize:
			h.peerMaxHdr = s.Val
		case http2.SettingMaxConcurrentStreams:
			if maxStreams != nil {
				maxStreams(s.Val)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.fr.WriteSettingsAck()
	h.wcond.Broadcast()
	return h.flushLocked()
}

// grow adds a WINDOW_UPDATE's increment to a send window guarded by wmu (the
// connection's, or a stream's) and wakes the writers waiting for window. false when
// the window would pass 2^31-1, a FLOW_CONTROL_ERROR of the stream or the connection
// whose window it is (RFC 9113 §6.9.1); the window is left as it was.
func (h *framing) grow(window *int64, inc uint32) bool {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if *window+int64(inc) > maxWindow {
		return false
	}
	*window += int64(inc)
	h.wcond.Broadcast()
	return true
}

// takeConn counts a DATA frame's flow-controlled length against the connection
// window this end granted; false when the peer sent more than it was granted, a
// connection error FLOW_CONTROL_ERROR (RFC 9113 §6.9.1). Read loop only.
func (h *framing) takeConn(n int64) bool {
	return h.recvConn.Add(-n) >= 0
}

// pingAck answers a PING.
func (h *framing) pingAck(data [8]byte) {
	h.wmu.Lock()
	h.fr.WritePing(true, data)
	h.flushLocked()
	h.wmu.Unlock()
}

// returnWindow gives consumed receive window back to the peer: n bytes of the
// connection's, in steps of a quarter of it so that small bodies cost no frame, and
// streamInc of stream id's (as its pipe decided).
func (h *framing) returnWindow(id uint32, n, streamInc int64) {
	var connInc int64
	if n > 0 && h.unackConn.Add(n) >= h.connWindow/4 {
		connInc = h.unackConn.Swap(0)
	}
	if connInc <= 0 && streamInc <= 0 {
		return
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if connInc > 0 {
		// Granted before the peer can see it: the read loop never counts
		// DATA against a window the peer does not know yet.
		h.recvConn.Add(connInc)
		h.fr.WriteWindowUpdate(0, uint32(connInc))
	}
	if streamInc > 0 {
		h.fr.WriteWindowUpdate(id, uint32(streamInc))
	}
	h.flushLocked()
}

// writeHeaderFrames writes a header block as HEADERS and as many CONTINUATION frames
// as the peer's frame size needs. wmu held.
func (h *framing) writeHeaderFrames(id uint32, block []byte, endStream bool) {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), h.peerMaxF)
		frag := block[:n]
		block = block[n:]
		if first {
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			h.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// SetWriteTimeoutForTest shortens writeTimeout for a test of a peer that stops
// reading; the returned function restores it. Not for use outside tests.
func SetWriteTimeoutForTest(d time.Duration) (restore func()) {
	old := testWriteTimeout.Swap(int64(d))
	return func() { testWriteTimeout.Store(old) }
}
