package h2

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"golang.org/x/net/http2/hpack"
)

// pipe is a stream's incoming body (a request's on the server, a response's on the
// client): DATA the read loop pushes, read by one reader. Flow control bounds what it
// holds: push refuses DATA beyond the stream window this end granted.
type pipe struct {
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

func (p *pipe) initPipe(window int64) {
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
func (p *pipe) push(data []byte, flow int64, end bool) pushResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if errors.Is(p.err, io.EOF) {
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
		// The caller resets the stream, then fails the body: a reader that saw
		// the error first could close the body and reset it with CANCEL instead
		// of the PROTOCOL_ERROR the peer is owed.
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

func (p *pipe) failLocked(err error) {
	if p.err == nil || errors.Is(p.err, io.EOF) {
		p.err = err
		p.fields = nil
	}
	p.cond.Broadcast()
}

// chunkSize is the capacity of the pooled buffers that hold a stream's unread DATA
// (pipe) and its response body before framing (serverStream): most bodies fit, so a
// stream does not allocate one of its own. More data grows a buffer, which then goes
// to the garbage collector, not the pool.
const chunkSize = 16 << 10

// chunkBufs pools the buffers as array pointers: a slice put back is converted to
// its array's pointer in place, where a *[]byte would need a new slice header
// boxed on every Put (an allocation per buffer returned).
var chunkBufs = sync.Pool{New: func() any { return new([chunkSize]byte) }}

func getChunk() []byte { return chunkBufs.Get().(*[chunkSize]byte)[:0] }

// putChunk pools b unless it grew.
func putChunk(b []byte) {
	if cap(b) == chunkSize {
		chunkBufs.Put((*[chunkSize]byte)(b[:chunkSize]))
	}
}

// releaseBuf returns the emptied buffer to the pool. mu held.
func (p *pipe) releaseBuf() {
	if p.buf != nil {
		putChunk(p.buf)
	}
	p.buf, p.off = nil, 0
}

// end ends the body with trailer fields (nil: none). false when the body is
// shorter than its content-length, which fails it (RFC 9113 §8.1.1).
func (p *pipe) end(fields []hpack.HeaderField) bool {
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
func (p *pipe) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// endedOK says whether the peer ended the body (END_STREAM, trailers).
func (p *pipe) endedOK() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Is(p.err, io.EOF)
}

// ended says whether the body has ended (END_STREAM or failure).
func (p *pipe) ended() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// read waits for data and copies it to b. It returns how much stream window to give
// back now (a quarter of it at a time, none once the peer sends no more), and at the
// end the trailer fields, once, for the reader to put into its own header map: the
// read loop never touches the maps handlers and callers read.
func (p *pipe) read(b []byte) (n int, streamInc int64, fields []hpack.HeaderField, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.readable() == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return 0, 0, nil, http.ErrBodyReadAfterClose
	}
	if p.err != nil && !errors.Is(p.err, io.EOF) {
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
func (p *pipe) readable() int {
	avail := len(p.buf) - p.off
	if p.want >= 0 && p.err == nil && avail > 0 && p.got == p.want {
		avail--
	}
	return avail
}

// closeRead drops what is buffered and what still comes. It returns the dropped
// bytes (connection window to give back) and whether the stream was still running.
func (p *pipe) closeRead() (dropped int64, running bool) {
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
