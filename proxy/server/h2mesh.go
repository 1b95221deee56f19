package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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
//	DATA not yet read by the app   h2ConnWindow                        8 MiB
//	  (the buffers holding it grow by doubling: up to twice that)    (16 MiB)
//	header lists of open streams   h2MaxStreams x h2MaxHeaderList    6.25 MiB
//	  (decoded strings plus the request's header map: about twice) (12.5 MiB)
//	the framer's read buffer       h2MaxReadFrame                    512 KiB
//	                                                         worst   ~30 MiB
//
// so eight such connections at their worst stay inside the limit with the proxy's
// own ~20 MB; a typical connection holds well under 1 MiB. The client's side
// (h2client.go) is bounded the same way by h2cConnWindow and the peer's streams.
const (
	// h2MaxStreams is the concurrent streams a peer may open on one connection
	// (RFC 9113 §6.5.2 recommends no fewer than 100). A client proxy with more
	// requests in flight to one peer opens another connection.
	h2MaxStreams = 100
	// h2StreamWindow is how much of a request body a peer may send ahead of the
	// app reading it, per stream; h2ConnWindow for the whole connection: sixteen
	// streams may fill their windows before the others wait for the app.
	h2StreamWindow = 512 << 10
	h2ConnWindow   = 8 << 20
	// h2MaxReadFrame is the largest frame peers may send (SETTINGS_MAX_FRAME_SIZE):
	// large gRPC messages then cost fewer frames. No larger than a stream's
	// window, so that a frame of the advertised size always fits a fresh stream
	// (a peer that sized its DATA by the frame limit alone would otherwise meet
	// FLOW_CONTROL_ERROR).
	h2MaxReadFrame = h2StreamWindow
	// h2MaxHeaderList bounds a header block (SETTINGS_MAX_HEADER_LIST_SIZE, RFC
	// 9113 §6.5.2: names, values and 32 bytes per field); a request over it gets
	// 431. 64 KiB is what Envoy allows by default (60 KiB) with room to spare.
	h2MaxHeaderList = 64 << 10
	// h2IdleTimeout closes a connection without streams for this long.
	h2IdleTimeout = 5 * time.Minute
	// h2WriteChunk is how much response body a stream buffers before framing it.
	h2WriteChunk = chunkSize
	// h2PrefaceTimeout bounds how long a peer may take to send its preface.
	h2PrefaceTimeout = 10 * time.Second
)

// errStreamReset is what a request body returns after the peer reset its stream.
var errStreamReset = errors.New("stream reset by the peer proxy")

// h2Conn is one HTTP/2 connection (weft.h2 or h2c). The read loop (serve) owns
// reading; writers (handlers, the read loop's replies) hold wmu.
type h2Conn struct {
	h2Framing
	s       *Server
	info    *connInfo
	proto   string // "weft.h2" or "h2c", for logs
	handler http.HandlerFunc
	remote  string
	ctx     context.Context // cancelled when the connection ends
	cancel  context.CancelFunc

	mu        sync.Mutex
	streams   map[uint32]*h2Stream
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

// serveMeshH2 runs a weft.h2 connection whose TLS handshake is done, until it ends.
func (s *Server) serveMeshH2(nc net.Conn, info *connInfo) {
	s.serveH2(nc, info, "weft.h2", s.inHTTP)
}

// serveH2C runs an app-facing HTTP/2 connection with prior knowledge (detection saw
// the client preface), on the outbound port (srv is s.outHTTP) or the plaintext
// inbound port (s.inHTTP), until it ends.
func (s *Server) serveH2C(pc *peekConn, info *connInfo, srv *http.Server) {
	s.serveH2(pc, info, "h2c", srv)
}

// serveH2 runs an HTTP/2 connection, serving its requests with srv's handler.
func (s *Server) serveH2(nc net.Conn, info *connInfo, proto string, srv *http.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	// Every stream's context carries the connection's identity, and an
	// http.Server: httputil.ReverseProxy aborts a response whose body fails midway
	// (panic(http.ErrAbortHandler), which the stream turns into RST_STREAM) only
	// when it believes a server will recover the panic. Without it a truncated
	// body would end cleanly.
	ctx = context.WithValue(context.WithValue(ctx, connInfoKey{}, info), http.ServerContextKey, srv)
	c := &h2Conn{
		s: s, info: info, proto: proto, handler: srv.Handler.ServeHTTP,
		remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel, streams: map[uint32]*h2Stream{},
	}
	c.init(nc, h2ConnWindow)
	c.idle = time.AfterFunc(h2IdleTimeout, c.goAway)
	if !s.addDrainer(c) {
		nc.Close()
		return
	}
	defer s.removeDrainer(c)
	defer c.close()
	err := c.serve()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.V(1).Info("HTTP/2 connection ended", "protocol", proto, "client", c.client(), "error", err.Error())
	}
}

// client names the peer in logs: its identity on weft.h2, its address on h2c.
func (c *h2Conn) client() string {
	if c.info.peerID != "" {
		return c.info.peerID
	}
	return c.remote
}

func (c *h2Conn) serve() error {
	if err := c.writeOpening("",
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow}); err != nil {
		return err
	}
	var preface [len(http2.ClientPreface)]byte
	c.nc.SetReadDeadline(time.Now().Add(h2PrefaceTimeout))
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
func (c *h2Conn) streamError(id uint32, code http2.ErrCode, err error) {
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
func (c *h2Conn) forgetReset(id uint32) {
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
func (c *h2Conn) idleOrClosed(id uint32) (idle, recentlyReset bool) {
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
func (c *h2Conn) handle(f http2.Frame) error {
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

func (c *h2Conn) stream(id uint32) *h2Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// adjustStreams applies a change of the peer's initial window to the open streams;
// false when one would pass 2^31-1 (RFC 9113 §6.9.2). wmu held.
func (c *h2Conn) adjustStreams(delta int64) bool {
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

func (c *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
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
	refuse := c.goingAway || len(c.streams) >= h2MaxStreams
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
	st := &h2Stream{c: c, id: id, header: http.Header{}}
	req, err := c.newRequest(f, st)
	if err != nil {
		c.s.log.V(1).Info("Malformed HTTP/2 request", "protocol", c.proto, "client", c.client(), "error", err.Error())
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
	c.s.workers.run(func() { st.run(req) })
	return nil
}

// onTrailers takes a HEADERS frame on an open stream: the request's trailers, which
// end its body (RFC 9113 §8.1). An error is a connection error.
func (c *h2Conn) onTrailers(st *h2Stream, f *http2.MetaHeadersFrame) error {
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
func (c *h2Conn) answerDirect(id uint32, status int, requestEnded bool) {
	c.wmu.Lock()
	c.writeHeaderBlock(id, status, nil, false, true)
	c.flushLocked()
	c.wmu.Unlock()
	if !requestEnded {
		c.resetStream(id, http2.ErrCodeNo)
	}
}

// newRequest makes the http.Request a HEADERS frame opens (RFC 9113 §8.3.1).
func (c *h2Conn) newRequest(f *http2.MetaHeadersFrame, st *h2Stream) (*http.Request, error) {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	authority := f.PseudoValue("authority")
	// Every request but CONNECT has :method, :scheme and :path, and a proxy
	// that does not offer CONNECT takes none (RFC 9113 §8.3.1, §8.5).
	if method == "" || path == "" || f.PseudoValue("scheme") == "" || method == http.MethodConnect || f.PseudoValue("protocol") != "" {
		return nil, fmt.Errorf("pseudo-headers :method %q :scheme %q :path %q", method, f.PseudoValue("scheme"), path)
	}
	fields := f.RegularFields()
	if err := badFields(fields, true); err != nil {
		return nil, err
	}
	h := fieldsHeader(fields)
	if cs := h["Cookie"]; len(cs) > 1 {
		// Cookies may arrive as separate fields; HTTP/1.1 wants one (§8.2.3).
		h["Cookie"] = []string{strings.Join(cs, "; ")}
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	delete(h, "Host")
	var u *url.URL
	if path == "*" {
		u = &url.URL{Path: "*"}
	} else {
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	st.ctx, st.cancel = ctx, cancel
	ctx = context.WithValue(ctx, interimKey{}, interimSender(st))
	r := &http.Request{
		Method: method, URL: u, RequestURI: path, Host: authority, Header: h,
		Proto: "HTTP/2.0", ProtoMajor: 2, RemoteAddr: c.remote,
	}
	cl, err := declaredLength(h)
	if err != nil {
		cancel()
		return nil, err
	}
	if f.StreamEnded() {
		if cl > 0 {
			cancel()
			return nil, fmt.Errorf("content-length %d without a body (RFC 9113 §8.1.1)", cl)
		}
		r.Body = http.NoBody
	} else {
		r.ContentLength = cl
		r.Trailer = declaredTrailers(h)
		st.body = &h2Body{st: st, trailer: r.Trailer}
		st.body.initPipe(h2StreamWindow)
		st.body.want = cl
		r.Body = st.body
	}
	return r.WithContext(ctx), nil
}

func (c *h2Conn) onData(f *http2.DataFrame) error {
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

func (c *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.resetIDs[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % len(c.resetIDs)
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteRSTStream(id, code)
	c.flushLocked()
	c.wmu.Unlock()
}

func (c *h2Conn) writeGoAway(code http2.ErrCode) {
	c.mu.Lock()
	last := c.lastID
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
}

// goAway tells the peer to open no more streams (graceful shutdown, or idle), and
// closes the connection once its streams are done.
func (c *h2Conn) goAway() {
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
func (c *h2Conn) close() {
	c.nc.Close()
	c.idle.Stop()
	c.mu.Lock()
	c.closed = true
	streams := make([]*h2Stream, 0, len(c.streams))
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
func (c *h2Conn) streamDone(st *h2Stream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	left := len(c.streams)
	closeNow := left == 0 && c.goingAway
	if left == 0 && !c.closed {
		c.idle.Reset(h2IdleTimeout)
	}
	c.mu.Unlock()
	if closeNow {
		c.closeWrite()
	}
}

// writeHeaderBlock encodes fields into HEADERS (+ CONTINUATION) frames. wmu held.
func (c *h2Conn) writeHeaderBlock(id uint32, status int, h http.Header, trailers bool, endStream bool) {
	c.hbuf.Reset()
	if !trailers {
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	}
	for k, vs := range h {
		lk, ok := lowerHeader(k)
		if !ok {
			continue
		}
		for _, v := range vs {
			c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
	c.writeHeaderFrames(id, c.hbuf.Bytes(), endStream)
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// lowerHeader gives a response header's HTTP/2 name, and false for the
// connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2).
func lowerHeader(k string) (string, bool) {
	if lk, ok := commonLower[k]; ok {
		return lk, lk != ""
	}
	if strings.HasPrefix(k, http.TrailerPrefix) {
		return "", false
	}
	return strings.ToLower(k), true
}

// commonLower maps canonical header names to their HTTP/2 form, "" for those never
// sent.
var commonLower = map[string]string{
	"Connection": "", "Keep-Alive": "", "Proxy-Connection": "", "Transfer-Encoding": "", "Upgrade": "", "Te": "",
	"Content-Type": "content-type", "Content-Length": "content-length", "Date": "date",
	"Grpc-Status": "grpc-status", "Grpc-Message": "grpc-message", "Grpc-Encoding": "grpc-encoding",
	"Cache-Control": "cache-control", "Server": "server", "Trailer": "trailer", "Vary": "vary",
	"Content-Encoding": "content-encoding", "Location": "location", "Etag": "etag",
	"Last-Modified": "last-modified", "Set-Cookie": "set-cookie", "X-Content-Type-Options": "x-content-type-options",
	hdrError: strings.ToLower(hdrError),
}

// h2Stream is one request on an h2Conn and its http.ResponseWriter.
type h2Stream struct {
	c      *h2Conn
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	body   *h2Body // nil when the request has no body
	// peerReset: the peer sent RST_STREAM; its later frames on the stream are
	// errors (RFC 9113 §5.1, "closed"). Read loop only.
	peerReset bool

	// Under c.wmu.
	sendWindow int64
	reset      bool // the peer reset the stream or the connection ended
	endSent    bool // the response's END_STREAM is written

	// The handler's side.
	header      http.Header
	status      int
	wroteHeader bool        // the final HEADERS frame is written
	declared    http.Header // the trailers the Trailer header announced at WriteHeader
	pending     []byte
	failed      error
}

// run serves the request on a pooled goroutine.
func (st *h2Stream) run(r *http.Request) {
	c := st.c
	defer func() {
		v := recover()
		// A stream reset already (by either end) gets no second reset: the
		// peer treats frames after its own reset as errors (RFC 9113 §5.1).
		c.wmu.Lock()
		reset := st.reset
		c.wmu.Unlock()
		if v != nil {
			if v != http.ErrAbortHandler {
				c.s.log.Error(fmt.Errorf("%v", v), "Handler panicked", "protocol", c.proto, "client", c.client())
			}
			// The response is incomplete: the peer must not take it as whole.
			if !reset {
				c.resetStream(st.id, http2.ErrCodeInternal)
			}
		} else {
			st.finish()
		}
		if st.body != nil && !st.body.ended() {
			// The request body is not needed any more (RFC 9113 §8.1).
			st.body.discard()
			if v == nil && !reset {
				c.resetStream(st.id, http2.ErrCodeNo)
			}
		}
		st.cancel()
		if st.pending != nil {
			putChunk(st.pending) // framed, or dropped: nothing refers to it
			st.pending = nil
		}
		c.streamDone(st)
	}()
	c.handler(st, r)
}

// abort ends the stream from outside: the handler's context, its body and its
// pending writes all fail.
func (st *h2Stream) abort(err error) {
	if st.cancel != nil {
		st.cancel()
	}
	if st.body != nil {
		st.body.fail(err)
	}
	st.c.wmu.Lock()
	st.reset = true
	st.c.wcond.Broadcast()
	st.c.wmu.Unlock()
}

func (st *h2Stream) Header() http.Header { return st.header }

func (st *h2Stream) WriteHeader(code int) {
	if st.status != 0 {
		return
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return // not in HTTP/2
		}
		st.sendInterim(code, st.header)
		return
	}
	st.status = code
	st.declared = declaredTrailers(st.header)
}

// sendInterim sends an informational response (100 Continue, 103 Early Hints) at
// once.
func (st *h2Stream) sendInterim(code int, h http.Header) {
	c := st.c
	c.wmu.Lock()
	if !st.reset {
		c.writeHeaderBlock(st.id, code, h, false, false)
		c.flushLocked()
	}
	c.wmu.Unlock()
}

func (st *h2Stream) Write(p []byte) (int, error) {
	if st.status == 0 {
		st.WriteHeader(http.StatusOK)
	}
	if st.failed != nil {
		return 0, st.failed
	}
	if st.pending == nil {
		st.pending = getChunk()
	}
	st.pending = append(st.pending, p...)
	if len(st.pending) >= h2WriteChunk {
		if err := st.writeData(false, false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (st *h2Stream) Flush() {
	if st.status == 0 {
		st.WriteHeader(http.StatusOK)
	}
	_ = st.writeData(false, true)
}

// finish ends the response: headers if none went out, the buffered body, trailers,
// END_STREAM, one flush.
func (st *h2Stream) finish() {
	if st.status == 0 {
		st.WriteHeader(http.StatusOK)
	}
	trailers := trailerFields(st.declared, st.header)
	if trailers == nil {
		_ = st.writeData(true, true)
		return
	}
	if st.writeData(false, false) != nil {
		return
	}
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.reset || c.werr != nil {
		return
	}
	c.writeHeaderBlock(st.id, 0, trailers, true, true)
	st.endSent = true
	c.flushLocked()
}

// writeData frames the buffered body, after the headers when they have not gone
// out yet, waiting for send window as needed; end sets END_STREAM, flush sends.
func (st *h2Stream) writeData(end, flush bool) error {
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.failed != nil {
		return st.failed
	}
	fail := func(err error) error {
		st.failed = err
		st.pending = st.pending[:0]
		return err
	}
	if st.reset {
		return fail(errStreamReset)
	}
	if c.werr != nil {
		return fail(c.werr)
	}
	p := st.pending
	if !st.wroteHeader {
		st.wroteHeader = true
		// A response without a body ends with its HEADERS.
		headersEnd := end && len(p) == 0
		c.writeHeaderBlock(st.id, st.status, st.header, false, headersEnd)
		if headersEnd {
			st.endSent = true
			st.pending = p[:0]
			return c.flushLocked()
		}
	}
	for len(p) > 0 || end {
		for st.sendWindow <= 0 || c.sendConn <= 0 {
			if len(p) == 0 {
				break // an empty DATA frame needs no window
			}
			// Out of window: send what is buffered so that the peer can read
			// it and grant more, then wait.
			if err := c.flushLocked(); err != nil {
				return fail(err)
			}
			c.wcond.Wait()
			if st.reset {
				return fail(errStreamReset)
			}
			if c.werr != nil {
				return fail(c.werr)
			}
		}
		n := min(int64(len(p)), st.sendWindow, c.sendConn, int64(c.peerMaxF))
		last := end && n == int64(len(p))
		c.fr.WriteData(st.id, last, p[:n])
		st.endSent = last
		st.sendWindow -= n
		c.sendConn -= n
		p = p[n:]
		if last {
			break
		}
	}
	st.pending = st.pending[:0]
	if flush {
		if err := c.flushLocked(); err != nil {
			return fail(err)
		}
	}
	return nil
}

// h2Body is a request body.
type h2Body struct {
	h2Pipe
	st *h2Stream
	// trailer is the request's Trailer map; only trailers it declares are kept.
	trailer http.Header
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, inc, fields, err := b.read(p)
	addFields(b.trailer, fields, true)
	if n > 0 {
		b.st.c.returnWindow(b.st.id, int64(n), inc)
	}
	return n, err
}

func (b *h2Body) Close() error {
	b.discard()
	return nil
}

// discard drops what is buffered and what still comes; the connection window it
// holds goes back to the peer.
func (b *h2Body) discard() {
	dropped, _ := b.closeRead()
	b.st.c.returnWindow(0, dropped, 0)
}

// workerPool runs handlers on goroutines that outlive one request, so that the
// stack a handler grew (TLS, the reverse proxy, the app's HTTP client) is used again
// instead of growing from its initial size for every stream. Idle workers exit after
// workerIdle.
type workerPool struct {
	tasks chan func()
}

const workerIdle = 30 * time.Second

func newWorkerPool() *workerPool { return &workerPool{tasks: make(chan func())} }

func (p *workerPool) run(f func()) {
	select {
	case p.tasks <- f: // an idle worker took it
	default:
		go p.work(f)
	}
}

func (p *workerPool) work(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-p.tasks:
		case <-t.C:
			return
		}
	}
}
