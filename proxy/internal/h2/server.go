package h2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http2"
)

// The proxy's HTTP/2 server: the inbound side of weft.h2 (connections from peer
// proxies) and the app-facing h2c connections (prior knowledge) on the outbound and
// plaintext inbound ports, so that every HTTP/2 peer meets the same limits and the
// same RFC 9113 checks.
//
// Every meshed request crosses one of these, so it is written for that one job
// instead of going through net/http's general HTTP/2 server, which hands each frame
// between a read goroutine, a serve loop, the handler and a new goroutine per
// flushed write, and starts every stream's handler on a fresh goroutine whose stack
// then grows through TLS and the reverse proxy. Here the read loop runs the
// connection, handlers write their frames themselves under one lock, a response's
// HEADERS, DATA and end of stream leave in one write, and handlers run on pooled
// goroutines. What it speaks is plain RFC 9113: flow control both ways, trailers,
// informational responses, RST_STREAM both ways (cancellation), PING, SETTINGS,
// GOAWAY on shutdown.

// What one weft.h2 connection may make this proxy hold, at most, from a peer that
// follows the protocol to the letter (a peer that does not gets FLOW_CONTROL_ERROR or
// 431 before it gets more), against the 250 MiB memory limit the injector sets:
//
//	DATA not yet read by the app   ConnWindow                        8 MiB
//	  (the buffers holding it grow by doubling: up to twice that)    (16 MiB)
//	header lists of open streams   maxStreams x MaxHeaderList    6.25 MiB
//	  (decoded strings plus the request's header map: about twice) (12.5 MiB)
//	the framer's read buffer       maxReadFrame                    512 KiB
//	                                                         worst   ~30 MiB
//
// so eight such connections at their worst stay inside the limit with the proxy's
// own ~20 MB; a typical connection holds well under 1 MiB. The client's side
// (client.go) is bounded the same way by clientConnWindow and the peer's streams.
const (
	// maxStreams is the concurrent streams a peer may open on one connection
	// (RFC 9113 §6.5.2 recommends no fewer than 100). A client proxy with more
	// requests in flight to one peer opens another connection.
	maxStreams = 100
	// StreamWindow is how much of a request body a peer may send ahead of the
	// app reading it, per stream; ConnWindow for the whole connection: sixteen
	// streams may fill their windows before the others wait for the app.
	StreamWindow = 512 << 10
	ConnWindow   = 8 << 20
	// maxReadFrame is the largest frame peers may send (SETTINGS_MAX_FRAME_SIZE):
	// large gRPC messages then cost fewer frames. No larger than a stream's
	// window, so that a frame of the advertised size always fits a fresh stream
	// (a peer that sized its DATA by the frame limit alone would otherwise meet
	// FLOW_CONTROL_ERROR).
	maxReadFrame = StreamWindow
	// MaxHeaderList bounds a header block (SETTINGS_MAX_HEADER_LIST_SIZE, RFC
	// 9113 §6.5.2: names, values and 32 bytes per field); a request over it gets
	// 431. 64 KiB is what Envoy allows by default (60 KiB) with room to spare.
	MaxHeaderList = 64 << 10
	// idleTimeout closes a connection without streams for this long.
	idleTimeout = 5 * time.Minute
	// writeChunk is how much response body a stream buffers before framing it.
	writeChunk = chunkSize
	// prefaceTimeout bounds how long a peer may take to send its preface.
	prefaceTimeout = 10 * time.Second
)

// errStreamReset is what a request body returns after the peer reset its stream.
var errStreamReset = errors.New("stream reset by the peer proxy")

// serverConn is one connection of a Server (weft.h2 or h2c). See the package doc for who owns and
// who guards each field.
type serverConn struct {
	framing
	// Set before the connection is shared, then only read.
	s       *Server
	handler http.Handler
	proto   string // for logs
	peer    string // for logs: the client's identity, or its address
	remote  string
	ctx     context.Context // cancelled when the connection ends
	cancel  context.CancelFunc

	mu        sync.Mutex // guards the fields below; taken after wmu, never before
	streams   map[uint32]*serverStream
	lastID    uint32
	goingAway bool
	closed    bool
	idle      *time.Timer
	// resetIDs are the streams this end reset last: frames the peer sent on them
	// before it saw the reset are ignored (RFC 9113 §5.1, "closed"), while other
	// frames on closed streams are errors.
	resetIDs  [32]uint32
	resetNext int
}

// ServeConn runs an HTTP/2 connection until it ends. nc's first bytes must be the
// client preface.
func (s *Server) ServeConn(nc net.Conn, opts ServeConnOpts) {
	base := opts.Context
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancel(base)
	c := &serverConn{s: s, handler: opts.Handler, proto: opts.Proto, peer: cmp.Or(opts.Peer, nc.RemoteAddr().String()), remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel, streams: map[uint32]*serverStream{}}
	c.init(nc, ConnWindow)
	c.idle = time.AfterFunc(idleTimeout, c.GoAway)
	if s.Drain != nil {
		if !s.Drain.Add(c) {
			c.idle.Stop()
			nc.Close()
			cancel()
			return
		}
		defer s.Drain.Remove(c)
	}
	defer c.close()
	err := c.serve()
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) { // serve always ends with an error
		s.logInfo("HTTP/2 connection ended", "protocol", c.proto, "client", c.peer, "error", err.Error())
	}
}

func (s *Server) logInfo(msg string, kv ...any) {
	if s.Log != nil {
		s.Log.Info(msg, kv...)
	}
}

func (s *Server) logError(err error, msg string, kv ...any) {
	if s.Log != nil {
		s.Log.Error(err, msg, kv...)
	}
}

// run starts a stream's handler.
func (s *Server) run(t httpmsg.Task) {
	if s.Run != nil {
		s.Run(t)
		return
	}
	go t.RunTask()
}

func (c *serverConn) serve() error {
	if err := c.writeOpening("",
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: StreamWindow}); err != nil {
		return err
	}
	var preface [len(http2.ClientPreface)]byte
	c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	// The framer reads through its own bufio.Reader; the preface comes first, so
	// read it from the connection before the framer buffers anything.
	if _, err := io.ReadFull(c.nc, preface[:]); err != nil {
		return fmt.Errorf("read client preface: %w", err)
	}
	c.nc.SetReadDeadline(time.Time{})
	if string(preface[:]) != http2.ClientPreface {
		return errors.New("bad client preface")
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.streamError(se.StreamID, se.Code, nil)
				continue
			}
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &ce):
				c.writeGoAway(http2.ErrCode(ce))
				c.linger()
			case errors.Is(err, http2.ErrFrameTooLarge):
				// Over the SETTINGS_MAX_FRAME_SIZE this end sent (RFC 9113
				// §4.2); the framer read only the frame's header.
				c.writeGoAway(http2.ErrCodeFrameSize)
				c.linger()
			}
			return err
		}
		if err := c.handle(f); err != nil {
			code := http2.ErrCodeProtocol
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			c.writeGoAway(code)
			c.linger()
			return err
		}
		c.yieldBeforeRead()
	}
}

// streamError resets stream id (RFC 9113 §5.4.2) and ends it here: its handler's
// context, its request body (failing with err, or errStreamReset) and its writes.
// A stream not opened yet counts as opened and closed (§5.1.1).
func (c *serverConn) streamError(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	st := c.streams[id]
	if st == nil && id > c.lastID && id%2 == 1 {
		c.lastID = id
	}
	c.mu.Unlock()
	c.resetStream(id, code)
	if st != nil {
		if err == nil {
			err = http2.StreamError{StreamID: id, Code: code}
		}
		st.abort(err)
	}
}

// forgetReset takes id off the streams this end reset recently.
func (c *serverConn) forgetReset(id uint32) {
	c.mu.Lock()
	for i, r := range c.resetIDs {
		if r == id {
			c.resetIDs[i] = 0
		}
	}
	c.mu.Unlock()
}

// idleOrClosed says, for a stream id not open on this connection, whether it is
// idle (never opened: frames other than HEADERS and PRIORITY on it are a connection
// error, RFC 9113 §5.1) and whether this end reset it recently.
func (c *serverConn) idleOrClosed(id uint32) (idle, recentlyReset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id > c.lastID {
		return true, false
	}
	for _, r := range c.resetIDs {
		if r == id {
			return false, true
		}
	}
	return false, false
}

// handle acts on one frame. An error is a connection error.
func (c *serverConn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			if !c.grow(&c.sendConn, f.Increment) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		} else if st := c.stream(f.StreamID); st != nil {
			if !c.grow(&st.sendWindow, f.Increment) {
				c.streamError(f.StreamID, http2.ErrCodeFlowControl, nil)
			}
		} else if idle, _ := c.idleOrClosed(f.StreamID); idle {
			return fmt.Errorf("WINDOW_UPDATE on idle stream %d", f.StreamID)
		}
	case *http2.RSTStreamFrame:
		if st := c.stream(f.StreamID); st != nil {
			st.peerReset = true
			st.abort(errStreamReset)
		} else if idle, recent := c.idleOrClosed(f.StreamID); idle {
			return fmt.Errorf("RST_STREAM on idle stream %d", f.StreamID)
		} else if recent {
			// Both ends reset it: the peer has nothing more in flight on it,
			// and what still comes is an error (RFC 9113 §5.1, "closed").
			c.forgetReset(f.StreamID)
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			// A stream cannot depend on itself (RFC 9113 §5.3.1).
			c.streamError(f.StreamID, http2.ErrCodeProtocol, nil)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return c.applySettings(f, c.adjustStreams, nil)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.pingAck(f.Data)
		}
	case *http2.GoAwayFrame:
		// The peer opens no more streams here: finish those it has, then close.
		c.mu.Lock()
		c.goingAway = true
		done := len(c.streams) == 0
		c.mu.Unlock()
		if done {
			c.closeWrite()
		}
	case *http2.PushPromiseFrame:
		return errors.New("PUSH_PROMISE from a client")
	}
	// Other PRIORITY frames and unknown frame types are ignored.
	return nil
}

func (c *serverConn) stream(id uint32) *serverStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// adjustStreams applies a change of the peer's initial window to the open streams;
// false when one would pass 2^31-1 (RFC 9113 §6.9.2). wmu held.
func (c *serverConn) adjustStreams(delta int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.streams {
		if st.sendWindow+delta > maxWindow {
			return false
		}
	}
	for _, st := range c.streams {
		st.sendWindow += delta
	}
	return true
}

func (c *serverConn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return fmt.Errorf("HEADERS on even stream %d", id)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		// A stream cannot depend on itself (RFC 9113 §5.3.1).
		c.streamError(id, http2.ErrCodeProtocol, nil)
		return nil
	}
	if st := c.stream(id); st != nil {
		return c.onTrailers(st, f)
	}
	c.mu.Lock()
	if id <= c.lastID {
		recent := false
		for _, r := range c.resetIDs {
			recent = recent || r == id
		}
		c.mu.Unlock()
		if recent {
			// Sent before the peer saw this end's reset: ignored (§5.1).
			return nil
		}
		if len(f.PseudoFields()) == 0 {
			// Trailers on a stream that ended: perhaps reset by this end
			// longer ago than resetIDs remembers. A stream error, so that no
			// other stream suffers for it.
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return nil
		}
		// A new request on a stream id that goes backwards, or on a stream
		// that has ended (RFC 9113 §5.1, §5.1.1).
		return fmt.Errorf("HEADERS on closed stream %d", id)
	}
	c.lastID = id
	refuse := c.goingAway || len(c.streams) >= maxStreams
	c.mu.Unlock()
	if refuse {
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Truncated {
		// Over SETTINGS_MAX_HEADER_LIST_SIZE: the framer decoded the block
		// (keeping HPACK state) but kept none of it (RFC 9113 §10.5.1).
		c.answerDirect(id, http.StatusRequestHeaderFieldsTooLarge, f.StreamEnded())
		return nil
	}
	st := &serverStream{c: c, id: id, header: http.Header{}}
	req, err := c.newRequest(f, st)
	if err != nil {
		c.s.logInfo("Malformed HTTP/2 request", "protocol", c.proto, "client", c.peer, "error", err.Error())
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	c.wmu.Lock()
	st.sendWindow = c.peerInit
	c.wmu.Unlock()
	c.mu.Lock()
	c.streams[id] = st
	if len(c.streams) == 1 {
		c.idle.Stop()
	}
	c.mu.Unlock()
	st.req = req
	c.s.run(st) // st.RunTask: st.run(req)
	return nil
}

// onTrailers takes a HEADERS frame on an open stream: the request's trailers, which
// end its body (RFC 9113 §8.1). An error is a connection error.
func (c *serverConn) onTrailers(st *serverStream, f *http2.MetaHeadersFrame) error {
	switch {
	case st.peerReset:
		c.streamError(st.id, http2.ErrCodeStreamClosed, nil)
	case st.body == nil || st.body.endedOK():
		c.wmu.Lock()
		closed := st.endSent
		c.wmu.Unlock()
		if closed {
			// Both ends sent END_STREAM: the stream is closed, its handler
			// only not yet gone (§5.1, "closed").
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		// Half-closed (remote): the peer sent END_STREAM already (§5.1).
		c.streamError(st.id, http2.ErrCodeStreamClosed, nil)
	case !f.StreamEnded(), f.Truncated, len(f.PseudoFields()) > 0, badFields(f.RegularFields(), false) != nil:
		// Malformed trailers (§8.1, §8.2.2, §8.3).
		c.streamError(st.id, http2.ErrCodeProtocol, nil)
	case !st.body.end(f.RegularFields()):
		c.streamError(st.id, http2.ErrCodeProtocol, errBodyLength)
	}
	return nil
}

// answerDirect answers a stream the proxy will not serve with a bare status, and
// resets it when the peer still sends on it (RFC 9113 §8.1).
func (c *serverConn) answerDirect(id uint32, status int, requestEnded bool) {
	c.wmu.Lock()
	c.writeHeaderBlock(id, status, nil, false, true)
	c.flushLocked()
	c.wmu.Unlock()
	if !requestEnded {
		c.resetStream(id, http2.ErrCodeNo)
	}
}

func (c *serverConn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // flow control counts padding too
	id := f.StreamID
	if !c.takeConn(n) {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := c.stream(id)
	if st == nil || st.body == nil || st.peerReset {
		// Not delivered: the connection window it used comes back.
		c.returnWindow(0, n, 0)
		if st != nil {
			// The request ended with its HEADERS, or the peer reset the
			// stream: closed for the peer's DATA (§5.1).
			c.streamError(id, http2.ErrCodeStreamClosed, nil)
			return nil
		}
		switch idle, recent := c.idleOrClosed(id); {
		case idle:
			return fmt.Errorf("DATA on idle stream %d", id)
		case !recent:
			c.resetStream(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	data := f.Data()
	switch st.body.push(data, n, f.StreamEnded()) {
	case pushKept:
		if pad := n - int64(len(data)); pad > 0 {
			c.returnWindow(id, pad, pad)
		}
	case pushDropped:
		c.returnWindow(0, n, 0)
	case pushFlowError:
		c.returnWindow(0, n, 0)
		c.streamError(id, http2.ErrCodeFlowControl, errFlowControl)
	case pushClosed:
		c.returnWindow(0, n, 0)
		c.streamError(id, http2.ErrCodeStreamClosed, nil)
	case pushLengthError:
		c.returnWindow(0, n, 0)
		c.streamError(id, http2.ErrCodeProtocol, errBodyLength)
	}
	return nil
}

func (c *serverConn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.resetIDs[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % len(c.resetIDs)
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteRSTStream(id, code)
	c.flushLocked()
	c.wmu.Unlock()
}

func (c *serverConn) writeGoAway(code http2.ErrCode) {
	c.mu.Lock()
	last := c.lastID
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
}

// GoAway tells the peer to open no more streams (graceful shutdown, or idle), and
// closes the connection once its streams are done.
func (c *serverConn) GoAway() {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	done := len(c.streams) == 0
	c.mu.Unlock()
	c.writeGoAway(http2.ErrCodeNo)
	if done {
		c.closeWrite()
	}
}

// close ends the connection: streams see their context cancelled and their bodies
// fail; waiting writers wake up.
func (c *serverConn) close() {
	c.nc.Close()
	c.idle.Stop()
	c.mu.Lock()
	c.closed = true
	streams := make([]*serverStream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.mu.Unlock()
	for _, st := range streams {
		st.abort(net.ErrClosed)
	}
	c.wmu.Lock()
	c.failLocked(net.ErrClosed)
	c.wmu.Unlock()
	c.cancel()
}

// streamDone forgets a finished stream; after GOAWAY the last one closes the
// connection.
func (c *serverConn) streamDone(st *serverStream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	left := len(c.streams)
	closeNow := left == 0 && c.goingAway
	if left == 0 && !c.closed {
		c.idle.Reset(idleTimeout)
	}
	c.mu.Unlock()
	if closeNow {
		c.closeWrite()
	}
}
