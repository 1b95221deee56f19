package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Framing is what both ends of a weft.h2 connection (h2mesh.go, h2client.go) share:
// the framer, whose write side is used under wmu by every stream, the header encoder,
// the peer's settings and the connection-level send window.
type h2Framing struct {
	nc net.Conn
	fr *http2.Framer
	br *bufio.Reader // what fr reads through

	wmu      sync.Mutex
	wcond    sync.Cond // on wmu: a send window grew, or a stream or the connection ended
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
	// §6.9): the read loop takes from it, returnWindow gives back.
	connWindow int64
	unackConn  atomic.Int64
	recvConn   atomic.Int64
}

// maxWindow is the largest flow-control window RFC 9113 §6.9.1 allows.
const maxWindow = 1<<31 - 1

// h2WriteTimeout bounds every flush of a weft.h2 connection: a peer that stops
// reading fills the socket buffers, and the flush that then blocks holds wmu, which
// every handler of the connection and the read loop's replies need. After this long
// the connection fails and all of them return. (A variable for tests.)
var h2WriteTimeout = 10 * time.Second

// h2LingerTimeout and h2LingerBytes bound how long and how much a connection that
// is closing reads and drops after its last write (GOAWAY, a final response): closing
// a socket with unread input makes the kernel send a TCP reset, which can destroy
// that last write in flight before the peer reads it. The bytes cover the rest of
// the largest frame a peer may be sending (h2MaxReadFrame, or one over it that the
// framer refused after its header) and more.
const (
	h2LingerTimeout = time.Second
	h2LingerBytes   = 2 << 20
)

func (h *h2Framing) init(nc net.Conn, connWindow int64) {
	h.nc = nc
	h.connWindow = connWindow
	h.bw = bufio.NewWriterSize(nc, 32<<10)
	h.sendConn, h.peerInit, h.peerMaxF = 65535, 65535, 16384
	h.wcond.L = &h.wmu
	h.henc = hpack.NewEncoder(&h.hbuf)
	h.br = bufio.NewReaderSize(nc, 16<<10)
	h.fr = http2.NewFramer(h.bw, h.br)
	h.fr.SetMaxReadFrameSize(h2MaxReadFrame)
	h.fr.MaxHeaderListSize = h2MaxHeaderList
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.SetReuseFrames()
	h.recvConn.Store(65535) // until the opening's WINDOW_UPDATE raises it
}

// yieldBeforeRead lets the goroutines the last frames woke (a handler for a new
// request, a caller for its response) run before the read loop's next read, when that
// read is a system call that most likely finds nothing yet: on a proxy running on one
// thread, the request or response then moves on first, and the read waits its turn.
func (h *h2Framing) yieldBeforeRead() {
	if h.br.Buffered() == 0 {
		runtime.Gosched()
	}
}

// writeOpening sends this end's opening: preface (the client's magic string, "" on
// the server's side), SETTINGS with the role's own settings and the limits both ends
// set, and a WINDOW_UPDATE raising the connection window from the protocol's 65,535
// to connWindow.
func (h *h2Framing) writeOpening(preface string, role ...http2.Setting) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.bw.WriteString(preface)
	h.fr.WriteSettings(append(role,
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
	)...)
	h.recvConn.Add(h.connWindow - 65535)
	h.fr.WriteWindowUpdate(0, uint32(h.connWindow-65535))
	return h.flushLocked()
}

// flushLocked writes what is buffered; a failure ends the connection. wmu held.
// Every flush has at least half of h2WriteTimeout to complete: the deadline is moved
// only when less than that is left, so most flushes cost a clock read, not a timer
// update.
func (h *h2Framing) flushLocked() error {
	if h.werr != nil {
		return h.werr
	}
	if h.bw.Buffered() == 0 {
		return nil
	}
	if now := time.Now(); h.wdeadline.Sub(now) < h2WriteTimeout/2 {
		h.wdeadline = now.Add(h2WriteTimeout)
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
// reading under a deadline of h2LingerTimeout, closes the socket once the peer
// closed its side, so no unread input turns the close into a reset. Later writes
// fail.
func (h *h2Framing) closeWrite() {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if h.werr != nil {
		return
	}
	h.flushLocked()
	h.nc.SetReadDeadline(time.Now().Add(h2LingerTimeout))
	if cw, ok := h.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if h.werr == nil {
		h.werr = net.ErrClosed
	}
	h.wcond.Broadcast()
}

// linger reads and drops what the peer still sends, for at most h2LingerTimeout
// and h2LingerBytes, after a connection error's GOAWAY: see closeWrite.
func (h *h2Framing) linger() {
	h.closeWrite()
	io.Copy(io.Discard, io.LimitReader(h.br, h2LingerBytes))
}

// failLocked ends the connection for writers: later writes fail with err, waiting
// ones wake up. wmu held.
func (h *h2Framing) failLocked(err error) {
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
func (h *h2Framing) applySettings(f *http2.SettingsFrame, adjust func(delta int64) bool, maxStreams func(uint32)) error {
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
func (h *h2Framing) grow(window *int64, inc uint32) bool {
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
func (h *h2Framing) takeConn(n int64) bool {
	return h.recvConn.Add(-n) >= 0
}

// pingAck answers a PING.
func (h *h2Framing) pingAck(data [8]byte) {
	h.wmu.Lock()
	h.fr.WritePing(true, data)
	h.flushLocked()
	h.wmu.Unlock()
}

// returnWindow gives consumed receive window back to the peer: n bytes of the
// connection's, in steps of a quarter of it so that small bodies cost no frame, and
// streamInc of stream id's (as its pipe decided).
func (h *h2Framing) returnWindow(id uint32, n, streamInc int64) {
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
func (h *h2Framing) writeHeaderFrames(id uint32, block []byte, endStream bool) {
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

// h2Pipe is a stream's incoming body (a request's on the server, a response's on the
// client): DATA the read loop pushes, read by one reader. Flow control bounds what it
// holds: push refuses DATA beyond the stream window this end granted.
type h2Pipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte // pushed data; buf[off:] is still to be read
	off    int
	err    error               // io.EOF at END_STREAM, or why the stream failed
	closed bool                // the reader is done: later data is dropped
	fields []hpack.HeaderField // trailers, handed to the reader at the end
	window int64               // the stream receive window this end grants
	unack  int64               // of it, consumed and not yet returned
	recv   int64               // of it, what the peer may still send (RFC 9113 §6.9)
	// want is the body's declared content-length, -1 when none; got what arrived
	// of it. A body that ends shorter or runs longer fails (RFC 9113 §8.1.1).
	want, got int64
}

func (p *h2Pipe) initPipe(window int64) {
	p.cond.L = &p.mu
	p.window = window
	p.recv = window
	p.want = -1
}

// pushResult is what push did with a DATA frame.
type pushResult uint8

const (
	pushKept    pushResult = iota // buffered for the reader
	pushDropped                   // the reader is gone: the caller returns the connection window
	// The stream must be reset; push has failed the body. The caller returns the
	// connection window.
	pushFlowError   // more than the stream window granted: FLOW_CONTROL_ERROR
	pushClosed      // DATA after END_STREAM: STREAM_CLOSED (RFC 9113 §5.1)
	pushLengthError // more or less than content-length: PROTOCOL_ERROR
)

// errBodyLength is how a body fails whose DATA disagrees with its content-length.
var errBodyLength = errors.New("body length differs from its content-length (RFC 9113 §8.1.1)")

// errFlowControl is how a body fails whose peer sent more than its window.
var errFlowControl = errors.New("peer sent more than its flow-control window (RFC 9113 §6.9)")

// push adds data from the read loop. flow is the frame's flow-controlled length
// (data and padding); the padding is granted again at once (the caller sends its
// WINDOW_UPDATE with the connection's).
func (p *h2Pipe) push(data []byte, flow int64, end bool) pushResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == io.EOF {
		return pushClosed
	}
	if p.err != nil {
		// Failed, and reset already: what the peer sent before it saw the
		// reset is dropped without another reset per frame.
		return pushDropped
	}
	if p.recv -= flow; p.recv < 0 {
		p.failLocked(errFlowControl)
		return pushFlowError
	}
	p.recv += flow - int64(len(data))
	if p.got += int64(len(data)); p.want >= 0 && (p.got > p.want || (end && p.got != p.want)) {
		p.failLocked(errBodyLength)
		return pushLengthError
	}
	if p.closed {
		return pushDropped
	}
	if len(data) > 0 {
		if p.buf == nil && len(data) <= chunkSize {
			p.buf = getChunk()
		}
		if p.off > 0 && len(p.buf)+len(data) > cap(p.buf) {
			// Reuse the part already read before growing.
			p.buf = p.buf[:copy(p.buf, p.buf[p.off:])]
			p.off = 0
		}
		p.buf = append(p.buf, data...)
	}
	if end {
		p.err = io.EOF
	}
	p.cond.Broadcast()
	return pushKept
}

func (p *h2Pipe) failLocked(err error) {
	if p.err == nil || p.err == io.EOF {
		p.err = err
		p.fields = nil
	}
	p.cond.Broadcast()
}

// chunkSize is the capacity of the pooled buffers that hold a stream's unread DATA
// (h2Pipe) and its response body before framing (h2Stream): most bodies fit, so a
// stream does not allocate one of its own. More data grows a buffer, which then goes
// to the garbage collector, not the pool.
const chunkSize = 16 << 10

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

func getChunk() []byte { return (*chunkBufs.Get().(*[]byte))[:0] }

// putChunk pools b unless it grew.
func putChunk(b []byte) {
	if cap(b) == chunkSize {
		b = b[:0]
		chunkBufs.Put(&b)
	}
}

// releaseBuf returns the emptied buffer to the pool. mu held.
func (p *h2Pipe) releaseBuf() {
	if p.buf != nil {
		putChunk(p.buf)
	}
	p.buf, p.off = nil, 0
}

// end ends the body with trailer fields (nil: none). false when the body is
// shorter than its content-length, which fails it (RFC 9113 §8.1.1).
func (p *h2Pipe) end(fields []hpack.HeaderField) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want >= 0 && p.got != p.want {
		p.failLocked(errBodyLength)
		return false
	}
	if p.err == nil {
		p.err, p.fields = io.EOF, fields
	}
	p.cond.Broadcast()
	return true
}

// fail ends the body with err, unless it has ended already.
func (p *h2Pipe) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// endedOK says whether the peer ended the body (END_STREAM, trailers).
func (p *h2Pipe) endedOK() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err == io.EOF
}

// ended says whether the body has ended (END_STREAM or failure).
func (p *h2Pipe) ended() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// read waits for data and copies it to b. It returns how much stream window to give
// back now (a quarter of it at a time, none once the peer sends no more), and at the
// end the trailer fields, once, for the reader to put into its own header map: the
// read loop never touches the maps handlers and callers read.
func (p *h2Pipe) read(b []byte) (n int, streamInc int64, fields []hpack.HeaderField, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.readable() == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return 0, 0, nil, http.ErrBodyReadAfterClose
	}
	if p.err != nil && p.err != io.EOF {
		// A failed body hands nothing more over: what it holds may be the
		// part that would complete it (see readable).
		return 0, 0, nil, p.err
	}
	avail := p.readable()
	if avail == 0 {
		fields, p.fields = p.fields, nil
		return 0, 0, fields, p.err
	}
	n = copy(b[:min(len(b), avail)], p.buf[p.off:])
	if p.off += n; p.off == len(p.buf) {
		p.releaseBuf()
	}
	if p.err == nil {
		p.unack += int64(n)
		if p.unack >= p.window/4 {
			streamInc, p.unack = p.unack, 0
			p.recv += streamInc // granted before the WINDOW_UPDATE leaves
		}
	}
	return n, streamInc, nil, nil
}

// readable is how much of the buffered data the reader may take. Until the body has
// ended, the last byte of a declared content-length is held back: a peer that then
// sends more than it declared (RFC 9113 §8.1.1) fails the body before the app behind
// the proxy ever received a complete request or response. mu held.
func (p *h2Pipe) readable() int {
	avail := len(p.buf) - p.off
	if p.want >= 0 && p.err == nil && avail > 0 && p.got == p.want {
		avail--
	}
	return avail
}

// closeRead drops what is buffered and what still comes. It returns the dropped
// bytes (connection window to give back) and whether the stream was still running.
func (p *h2Pipe) closeRead() (dropped int64, running bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, false
	}
	p.closed = true
	dropped = int64(len(p.buf) - p.off)
	p.releaseBuf()
	p.cond.Broadcast()
	return dropped, p.err == nil
}

// fieldsHeader makes an http.Header of decoded header fields.
func fieldsHeader(fields []hpack.HeaderField) http.Header {
	h := make(http.Header, len(fields))
	addFields(h, fields, false)
	return h
}

// addFields adds header fields to h; with declaredOnly only those h already names
// (a Trailer map's declared keys).
func addFields(h http.Header, fields []hpack.HeaderField, declaredOnly bool) {
	for _, hf := range fields {
		k := http.CanonicalHeaderKey(hf.Name)
		if _, declared := h[k]; declaredOnly && !declared {
			continue
		}
		h[k] = append(h[k], hf.Value)
	}
}

// contentLength reads a Content-Length field: -1 when there is none or it is not a
// single non-negative number.
func contentLength(h http.Header) int64 {
	if v := h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	return -1
}

// declaredLength reads the content-length of a request or response that arrived
// over HTTP/2: -1 when there is none, an error when it is not one non-negative
// number (repeated equal values count as one, RFC 9110 §8.6), which makes the
// message malformed (RFC 9113 §8.1.1).
func declaredLength(h http.Header) (int64, error) {
	vs := h["Content-Length"]
	if len(vs) == 0 {
		return -1, nil
	}
	for _, v := range vs[1:] {
		if v != vs[0] {
			return 0, fmt.Errorf("content-length values %q disagree", vs)
		}
	}
	n, err := strconv.ParseUint(vs[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("bad content-length %q", vs[0])
	}
	return int64(n), nil
}

// badFields finds a connection-specific field, which HTTP/2 forbids (RFC 9113
// §8.2.2): connection, keep-alive, proxy-connection, transfer-encoding, upgrade, and
// te, which only a request may carry and only as "trailers". The message is then
// malformed.
func badFields(fields []hpack.HeaderField, request bool) error {
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return fmt.Errorf("connection-specific field %q (RFC 9113 §8.2.2)", hf.Name)
		case "te":
			if !request || hf.Value != "trailers" {
				return fmt.Errorf("te: %q (RFC 9113 §8.2.2)", hf.Value)
			}
		}
	}
	return nil
}

// declaredTrailers is the Trailer map a Trailer field announces (names with no
// values yet), or nil when it announces none.
func declaredTrailers(h http.Header) http.Header {
	var t http.Header
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				if t == nil {
					t = http.Header{}
				}
				t[http.CanonicalHeaderKey(k)] = nil
			}
		}
	}
	return t
}

// trailerFields collects the trailer fields a handler set in its header map h:
// those announced in the Trailer field (declared), and any with http.TrailerPrefix.
// nil when there are none.
func trailerFields(declared, h http.Header) http.Header {
	var t http.Header
	for k := range declared {
		if vs := h[k]; len(vs) > 0 {
			if t == nil {
				t = http.Header{}
			}
			t[k] = vs
		}
	}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = http.Header{}
			}
			t[http.CanonicalHeaderKey(name)] = vs
		}
	}
	return t
}
