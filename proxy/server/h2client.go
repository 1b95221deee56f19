package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The sending side of weft.h2: the HTTP/2 client from this proxy to one peer proxy.
//
// Like the receiving side (h2mesh.go) it is written for this one job rather than
// taken from golang.org/x/net/http2, whose Transport starts a goroutine per request
// (its stack then grows through TLS), hands each response from its read loop to the
// caller, and returns connection window in a frame of its own every few KiB. Here the
// caller writes its HEADERS itself (a request with a body known to follow leaves them
// for the body's first DATA, one TLS record), the read loop hands the response over
// once, and window goes back in large steps.
//
// One connection per peer carries every request; another is dialled only when the
// peer's stream limit is reached, or when the connection is going away (GOAWAY) or
// broken. Requests the peer did not process (refused, or above a GOAWAY's last stream)
// are sent again on a new connection when their body can be sent again.

const (
	// h2cStreamWindow is how much response body a peer may send ahead of the
	// caller reading it; h2cConnWindow for the whole connection, which bounds
	// what one connection's responses can make this proxy hold (a peer sending
	// more gets FLOW_CONTROL_ERROR): sixteen streams fill their windows before
	// the others wait for their callers. With response header lists bounded by
	// h2MaxHeaderList and at most the server's h2MaxStreams streams, a
	// connection holds at most ~16 MiB of body (32 MiB of buffers) and 6.25 MiB
	// of headers, as the server side does (see h2mesh.go).
	h2cStreamWindow = 1 << 20
	h2cConnWindow   = 16 << 20
	// h2cReadIdle is how long a connection may stay silent before it is pinged,
	// h2cPingTimeout how long the answer may take before it is closed as dead.
	h2cReadIdle    = 30 * time.Second
	h2cPingTimeout = 10 * time.Second
	// h2cMaxRetries bounds how often a request the peer did not process is sent
	// again.
	h2cMaxRetries = 3
)

// errNotProcessed marks failures after which the peer certainly did not act on the
// request: it may be sent again.
type errNotProcessed struct{ err error }

func (e errNotProcessed) Error() string { return e.err.Error() }
func (e errNotProcessed) Unwrap() error { return e.err }

var errConnClosed = errors.New("mesh connection closed")

// meshClient sends requests to one peer proxy.
type meshClient struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu      sync.Mutex
	conns   []*h2ClientConn
	dialing *dialCall
}

type dialCall struct {
	done chan struct{}
	cc   *h2ClientConn
	err  error
}

func newMeshClient(dial func(ctx context.Context) (net.Conn, error)) *meshClient {
	return &meshClient{dial: dial}
}

func (m *meshClient) RoundTrip(req *http.Request) (*http.Response, error) {
	var replay *replayBody
	if b := req.Body; b != nil && b != http.NoBody && req.GetBody == nil && req.ContentLength > 0 && req.ContentLength <= maxReplayBody {
		if _, retried := b.(*attemptBody); !retried {
			// Keep a small body (an app's POST, read from its connection once) so the
			// request can go out again if the peer refuses it unprocessed, as a peer
			// proxy that is shutting down does.
			replay = newReplayBody(b, req.ContentLength)
			first, _ := replay.next()
			r := *req
			r.Body = first
			req = &r
		}
	}
	for attempt := 0; ; attempt++ {
		cc, err := m.conn(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(req)
		var np errNotProcessed
		if err == nil || !errors.As(err, &np) || attempt >= h2cMaxRetries || req.Context().Err() != nil {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			var body io.ReadCloser
			switch {
			case replay != nil:
				var ok bool
				if body, ok = replay.next(); !ok {
					return nil, err
				}
			case req.GetBody != nil:
				var berr error
				if body, berr = req.GetBody(); berr != nil {
					return nil, err
				}
			default:
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// conn returns a connection with room for a stream, dialling one when none has.
// A peer whose new connections are full or gone at once gets a few tries, not a
// loop.
func (m *meshClient) conn(ctx context.Context) (*h2ClientConn, error) {
	for range 3 {
		m.mu.Lock()
		for _, cc := range m.conns {
			if cc.reserve() {
				m.mu.Unlock()
				return cc, nil
			}
		}
		call := m.dialing
		if call == nil {
			call = &dialCall{done: make(chan struct{})}
			m.dialing = call
			go m.dialOne(call)
		}
		m.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if call.err != nil {
			return nil, call.err
		}
		if call.cc.reserve() {
			return call.cc, nil
		}
	}
	return nil, errors.New("no usable connection to the peer proxy: each new one was closed or full at once")
}

func (m *meshClient) dialOne(call *dialCall) {
	// The dial is shared by every waiting request, so no single request's
	// context may cancel it; the dialler bounds it with its connect timeout.
	nc, err := m.dial(context.Background())
	if err == nil {
		call.cc, err = newH2ClientConn(m, nc)
	}
	call.err = err
	m.mu.Lock()
	if err == nil {
		m.conns = append(m.conns, call.cc)
	}
	m.dialing = nil
	m.mu.Unlock()
	close(call.done)
}

func (m *meshClient) forget(cc *h2ClientConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.conns {
		if c == cc {
			m.conns = append(m.conns[:i], m.conns[i+1:]...)
			return
		}
	}
}

// closeIdle closes the connections without streams.
func (m *meshClient) closeIdle() {
	m.mu.Lock()
	conns := append([]*h2ClientConn(nil), m.conns...)
	m.mu.Unlock()
	for _, cc := range conns {
		cc.mu.Lock()
		idle := len(cc.streams) == 0 && cc.reserved == 0
		cc.mu.Unlock()
		if idle {
			cc.close(errConnClosed)
		}
	}
}

// h2ClientConn is one weft.h2 connection to a peer proxy.
type h2ClientConn struct {
	h2Framing
	m      *meshClient
	nextID uint32 // under wmu

	mu         sync.Mutex
	streams    map[uint32]*h2ClientStream
	reserved   int    // streams promised by reserve and not opened yet
	maxStreams uint32 // the peer's SETTINGS_MAX_CONCURRENT_STREAMS
	goingAway  bool
	closed     bool
	closeErr   error

	lastRead atomic.Int64 // unix nanos of the last frame read
	done     chan struct{}
}

func newH2ClientConn(m *meshClient, nc net.Conn) (*h2ClientConn, error) {
	cc := &h2ClientConn{m: m, nextID: 1, streams: map[uint32]*h2ClientStream{}, maxStreams: h2MaxStreams, done: make(chan struct{})}
	cc.init(nc, h2cConnWindow)
	cc.lastRead.Store(time.Now().UnixNano())
	err := cc.writeOpening(http2.ClientPreface,
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2cStreamWindow})
	if err != nil {
		nc.Close()
		return nil, err
	}
	go cc.readLoop()
	go cc.healthLoop()
	return cc, nil
}

// reserve takes a stream slot; false when the connection cannot take one.
func (cc *h2ClientConn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goingAway || uint32(len(cc.streams)+cc.reserved) >= cc.maxStreams {
		return false
	}
	cc.reserved++
	return true
}

func (cc *h2ClientConn) stream(id uint32) *h2ClientStream {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.streams[id]
}

// h2ClientStream is one request and its response body.
type h2ClientStream struct {
	cc  *h2ClientConn
	id  uint32
	req *http.Request

	respReady chan struct{} // closed when resp or respErr is set
	resp      *http.Response
	respErr   error
	gotResp   bool // read loop only

	// Under cc.wmu.
	sendWindow int64
	reset      bool

	respMu sync.Mutex // orders setResp
	body   h2Pipe     // the response body
	num1xx int        // informational responses so far; read loop only

	stopCtx func() bool // stops the context watch
	ended   atomic.Bool // the stream is over both ways: forgotten
	sentEnd atomic.Bool // the request's END_STREAM went out
}

func (cc *h2ClientConn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	st := &h2ClientStream{cc: cc, req: req, respReady: make(chan struct{})}
	st.body.initPipe(h2cStreamWindow)

	cc.wmu.Lock()
	cc.mu.Lock()
	cc.reserved--
	if cc.closed || cc.goingAway {
		err := cc.closeErr
		cc.mu.Unlock()
		cc.wmu.Unlock()
		if err == nil {
			err = errConnClosed
		}
		return nil, errNotProcessed{err}
	}
	if limit := cc.peerMaxHdr; limit > 0 && headerListSize(req) > int64(limit) {
		// The peer would end the whole connection over a block this large (x/net's
		// framer does past twice its limit), failing every stream on it; the
		// peer's setting is advisory, but only this request should fail (RFC
		// 9113 §6.5.2, §10.5.1).
		cc.mu.Unlock()
		cc.wmu.Unlock()
		return nil, fmt.Errorf("%w (%d bytes)", errHeaderListTooLarge, limit)
	}
	st.id = cc.nextID
	cc.nextID += 2
	// Set before the stream is reachable by other goroutines (they take cc.mu
	// to find it), which may forget it and stop the watch.
	st.stopCtx = context.AfterFunc(ctx, func() { st.abort(ctx.Err(), true) })
	cc.streams[st.id] = st
	cc.mu.Unlock()
	st.sendWindow = cc.peerInit
	cc.writeRequestHeaders(st.id, req, body == nil)
	// A body known to follow at once carries the headers out with its first DATA;
	// anything else (no body, a stream of unknown length, a client waiting for 100
	// Continue) sends them now.
	if body == nil || req.ContentLength <= 0 || req.Header.Get("Expect") != "" {
		if err := cc.flushLocked(); err != nil {
			cc.wmu.Unlock()
			cc.forgetStream(st)
			return nil, errNotProcessed{err}
		}
	}
	cc.wmu.Unlock()
	if body == nil {
		st.sentEnd.Store(true)
	} else {
		go st.writeBody(body)
	}
	select {
	case <-st.respReady:
	case <-ctx.Done():
		st.abort(ctx.Err(), true)
		<-st.respReady
	}
	if st.respErr != nil {
		return nil, st.respErr
	}
	return st.resp, nil
}

// errHeaderListTooLarge fails a request whose header fields exceed what the peer
// proxy takes (its SETTINGS_MAX_HEADER_LIST_SIZE).
var errHeaderListTooLarge = errors.New("request header fields exceed the peer proxy's header list limit")

// headerListSize is the size of a request's header list as RFC 9113 §6.5.2 counts it
// (name, value and 32 bytes per field), pseudo-header fields included.
func headerListSize(req *http.Request) int64 {
	n := int64(4*32 + len(req.Method) + len("http") + len(req.Host) + len(req.URL.Host) + len(req.URL.Path) + len(req.URL.RawQuery) + 64)
	for k, vs := range req.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 32)
		}
	}
	return n
}

// writeRequestHeaders encodes a request's HEADERS (RFC 9113 §8.3.1). wmu held.
func (cc *h2ClientConn) writeRequestHeaders(id uint32, req *http.Request, endStream bool) {
	cc.hbuf.Reset()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.RequestURI()
	enc := func(k, v string) { cc.henc.WriteField(hpack.HeaderField{Name: k, Value: v}) }
	enc(":method", req.Method)
	enc(":scheme", "http")
	enc(":authority", host)
	enc(":path", path)
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Trailer":
			continue
		case "User-Agent":
			if len(vs) == 1 && vs[0] == "" {
				continue // the app sent none (see forward)
			}
		case "Te":
			// Only "trailers" is allowed in HTTP/2 (§8.2.2).
			for _, v := range vs {
				if strings.EqualFold(textproto.TrimString(v), "trailers") {
					enc("te", "trailers")
					break
				}
			}
			continue
		}
		lk, ok := lowerHeader(k)
		if !ok {
			continue
		}
		for _, v := range vs {
			enc(lk, v)
		}
	}
	if n := req.ContentLength; n > 0 || (n == 0 && methodHasBody(req.Method)) {
		enc("content-length", strconv.FormatInt(n, 10))
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, strings.ToLower(k))
		}
		enc("trailer", strings.Join(keys, ","))
	}
	cc.writeHeaderFrames(id, cc.hbuf.Bytes(), endStream)
}

func methodHasBody(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

// writeBody sends the request body as DATA frames, then its trailers or END_STREAM.
func (st *h2ClientStream) writeBody(body io.ReadCloser) {
	defer body.Close()
	cc := st.cc
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if err := st.writeData(buf[:n], false); err != nil {
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The request cannot be completed: the peer must not take what it got
			// as the whole body.
			st.abort(fmt.Errorf("read request body: %w", rerr), true)
			return
		}
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if st.reset || cc.werr != nil {
		return
	}
	if tr := st.req.Trailer; len(tr) > 0 {
		cc.hbuf.Reset()
		for k, vs := range tr {
			lk := strings.ToLower(k)
			for _, v := range vs {
				cc.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
			}
		}
		cc.writeHeaderFrames(st.id, cc.hbuf.Bytes(), true)
	} else {
		cc.fr.WriteData(st.id, true, nil)
	}
	cc.flushLocked()
	st.sentEnd.Store(true)
	cc.maybeForget(st)
}

// writeData sends p within the send windows, waiting for window as needed, and
// flushes.
func (st *h2ClientStream) writeData(p []byte, end bool) error {
	cc := st.cc
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	for len(p) > 0 {
		for !st.reset && cc.werr == nil && (st.sendWindow <= 0 || cc.sendConn <= 0) {
			if err := cc.flushLocked(); err != nil {
				return err
			}
			cc.wcond.Wait()
		}
		if st.reset {
			return errStreamReset
		}
		if cc.werr != nil {
			return cc.werr
		}
		n := min(int64(len(p)), st.sendWindow, cc.sendConn, int64(cc.peerMaxF))
		cc.fr.WriteData(st.id, end && n == int64(len(p)), p[:n])
		st.sendWindow -= n
		cc.sendConn -= n
		p = p[n:]
	}
	return cc.flushLocked()
}

// abort ends a stream from this side: the response (or its body) fails with err,
// and when tell is set the peer gets RST_STREAM(CANCEL).
func (st *h2ClientStream) abort(err error, tell bool) {
	code := http2.ErrCodeCancel
	if !tell {
		code = 0xffffffff
	}
	st.resetWith(err, code)
}

// streamError ends a stream on which the peer broke the protocol: RST_STREAM with
// code (RFC 9113 §5.4.2), and the response fails with err.
func (st *h2ClientStream) streamError(err error, code http2.ErrCode) {
	st.resetWith(fmt.Errorf("%w (stream reset with %v)", err, code), code)
}

// resetWith ends a stream, telling the peer with RST_STREAM(code) unless code is
// 0xffffffff.
func (st *h2ClientStream) resetWith(err error, code http2.ErrCode) {
	cc := st.cc
	st.fail(err)
	cc.wmu.Lock()
	already := st.reset
	st.reset = true
	if code != 0xffffffff && !already && !st.ended.Load() {
		cc.fr.WriteRSTStream(st.id, code)
		cc.flushLocked()
	}
	cc.wcond.Broadcast()
	cc.wmu.Unlock()
	st.sentEnd.Store(true)
	st.ended.Store(true)
	cc.forgetStream(st)
}

// fail ends the response, or its body, with err.
func (st *h2ClientStream) fail(err error) {
	st.body.fail(err)
	st.setResp(nil, err)
}

// setResp delivers the response (or the error instead of one) once.
func (st *h2ClientStream) setResp(resp *http.Response, err error) {
	st.respMu.Lock()
	defer st.respMu.Unlock()
	select {
	case <-st.respReady:
		return
	default:
	}
	st.resp, st.respErr = resp, err
	close(st.respReady)
}

// maybeForget forgets a stream once both directions are over.
func (cc *h2ClientConn) maybeForget(st *h2ClientStream) {
	if !st.sentEnd.Load() {
		return
	}
	if st.body.ended() && st.ended.CompareAndSwap(false, true) {
		cc.forgetStream(st)
	}
}

func (cc *h2ClientConn) forgetStream(st *h2ClientStream) {
	if st.stopCtx != nil {
		st.stopCtx()
	}
	cc.mu.Lock()
	_, had := cc.streams[st.id]
	delete(cc.streams, st.id)
	closeNow := had && cc.goingAway && len(cc.streams) == 0 && cc.reserved == 0
	cc.mu.Unlock()
	if closeNow {
		cc.close(errConnClosed)
	}
}

// Read reads the response body.
func (st *h2ClientStream) Read(p []byte) (int, error) {
	n, inc, fields, err := st.body.read(p)
	addFields(st.resp.Trailer, fields, false)
	if n > 0 {
		st.cc.returnWindow(st.id, int64(n), inc)
	}
	return n, err
}

// Close closes the response body; a stream still running is cancelled.
func (st *h2ClientStream) Close() error {
	dropped, running := st.body.closeRead()
	st.cc.returnWindow(0, dropped, 0)
	if running {
		st.abort(errors.New("response body closed"), true)
	} else {
		st.cc.maybeForget(st)
	}
	return nil
}

// close ends the connection; its streams fail with err. They are not sent again:
// after a broken connection nobody can tell whether the peer saw them (only streams
// it refused, or that a GOAWAY excluded, are).
func (cc *h2ClientConn) close(err error) {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	cc.closeErr = err
	streams := make([]*h2ClientStream, 0, len(cc.streams))
	for _, st := range cc.streams {
		streams = append(streams, st)
	}
	cc.mu.Unlock()
	cc.m.forget(cc)
	cc.nc.Close()
	close(cc.done)
	for _, st := range streams {
		st.abort(err, false)
	}
	cc.wmu.Lock()
	cc.failLocked(err)
	cc.wmu.Unlock()
}

func (cc *h2ClientConn) readLoop() {
	var err error
	for {
		var f http2.Frame
		f, err = cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if st := cc.stream(se.StreamID); st != nil {
					st.streamError(se, se.Code)
				}
				continue
			}
			break
		}
		cc.lastRead.Store(time.Now().UnixNano())
		if err = cc.handle(f); err != nil {
			break
		}
		cc.yieldBeforeRead()
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		// The peer broke the protocol: say how before leaving (RFC 9113 §5.4.1).
		cc.wmu.Lock()
		cc.fr.WriteGoAway(0, http2.ErrCode(ce), nil)
		cc.flushLocked()
		cc.wmu.Unlock()
	}
	cc.close(fmt.Errorf("%w: %v", errConnClosed, err))
}

func (cc *h2ClientConn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if st := cc.stream(f.StreamID); st != nil {
			st.onHeaders(f)
		}
	case *http2.DataFrame:
		return cc.onData(f)
	case *http2.RSTStreamFrame:
		if st := cc.stream(f.StreamID); st != nil {
			var err error = http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode}
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = errNotProcessed{err}
			}
			st.abort(err, false)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return cc.applySettings(f, cc.adjustStreams, func(n uint32) {
			cc.mu.Lock()
			cc.maxStreams = n
			cc.mu.Unlock()
		})
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			if !cc.grow(&cc.sendConn, f.Increment) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		} else if st := cc.stream(f.StreamID); st != nil {
			if !cc.grow(&st.sendWindow, f.Increment) {
				st.streamError(errors.New("peer's WINDOW_UPDATE passed 2^31-1"), http2.ErrCodeFlowControl)
			}
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			cc.pingAck(f.Data)
		}
	case *http2.GoAwayFrame:
		cc.onGoAway(f)
	case *http2.PushPromiseFrame:
		return errors.New("PUSH_PROMISE though push is disabled")
	}
	return nil
}

// adjustStreams applies a change of the peer's initial window to the open streams;
// false when one would pass 2^31-1 (RFC 9113 §6.9.2). wmu held.
func (cc *h2ClientConn) adjustStreams(delta int64) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, st := range cc.streams {
		if st.sendWindow+delta > maxWindow {
			return false
		}
	}
	for _, st := range cc.streams {
		st.sendWindow += delta
	}
	return true
}

// onData takes response body data, within the windows this end granted.
func (cc *h2ClientConn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // flow control counts padding too
	if !cc.takeConn(n) {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := cc.stream(f.StreamID)
	if st == nil {
		// A stream this end forgot (reset, or done): its data is dropped and the
		// connection window comes back. One never opened is a connection error
		// (RFC 9113 §5.1).
		cc.returnWindow(0, n, 0)
		cc.wmu.Lock()
		idle := f.StreamID >= cc.nextID
		cc.wmu.Unlock()
		if idle {
			return fmt.Errorf("DATA on idle stream %d", f.StreamID)
		}
		return nil
	}
	if !st.gotResp {
		// DATA before the response's HEADERS (RFC 9113 §8.1).
		cc.returnWindow(0, n, 0)
		st.streamError(errors.New("DATA before the response headers"), http2.ErrCodeProtocol)
		return nil
	}
	data := f.Data()
	switch st.body.push(data, n, f.StreamEnded()) {
	case pushKept:
		if pad := n - int64(len(data)); pad > 0 {
			cc.returnWindow(st.id, pad, pad)
		}
	case pushDropped:
		cc.returnWindow(0, n, 0)
	case pushFlowError:
		cc.returnWindow(0, n, 0)
		st.streamError(errFlowControl, http2.ErrCodeFlowControl)
		return nil
	case pushClosed:
		cc.returnWindow(0, n, 0)
		st.streamError(errors.New("DATA after END_STREAM"), http2.ErrCodeStreamClosed)
		return nil
	case pushLengthError:
		cc.returnWindow(0, n, 0)
		st.streamError(errBodyLength, http2.ErrCodeProtocol)
		return nil
	}
	if f.StreamEnded() {
		cc.maybeForget(st)
	}
	return nil
}

// onGoAway: no new streams here; streams above the peer's last one were not
// processed and fail so that they are sent again on a new connection.
func (cc *h2ClientConn) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goingAway = true
	var refused []*h2ClientStream
	for id, st := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, st)
		}
	}
	cc.mu.Unlock()
	cc.m.forget(cc)
	for _, st := range refused {
		st.abort(errNotProcessed{fmt.Errorf("peer proxy going away (GOAWAY %v)", f.ErrCode)}, false)
	}
	cc.mu.Lock()
	idle := len(cc.streams) == 0 && cc.reserved == 0
	cc.mu.Unlock()
	if idle {
		cc.close(errConnClosed)
	}
}

// onHeaders takes a response's headers (1xx, final) or its trailers.
func (st *h2ClientStream) onHeaders(f *http2.MetaHeadersFrame) {
	if st.gotResp {
		// Trailers end the body (RFC 9113 §8.1).
		switch {
		case st.body.endedOK():
			st.streamError(errors.New("HEADERS after END_STREAM"), http2.ErrCodeStreamClosed)
		case !f.StreamEnded(), f.Truncated, len(f.PseudoFields()) > 0, badFields(f.RegularFields(), false) != nil:
			st.streamError(errors.New("malformed trailers from the peer proxy"), http2.ErrCodeProtocol)
		case !st.body.end(f.RegularFields()):
			st.streamError(errBodyLength, http2.ErrCodeProtocol)
		default:
			st.cc.maybeForget(st)
		}
		return
	}
	if f.Truncated {
		st.streamError(fmt.Errorf("response header list over %d bytes from the peer proxy", h2MaxHeaderList), http2.ErrCodeCancel)
		return
	}
	code, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || code < 100 || code > 999 {
		st.streamError(fmt.Errorf("malformed :status %q from the peer proxy", f.PseudoValue("status")), http2.ErrCodeProtocol)
		return
	}
	fields := f.RegularFields()
	if err := badFields(fields, false); err != nil {
		st.streamError(fmt.Errorf("malformed response from the peer proxy: %w", err), http2.ErrCodeProtocol)
		return
	}
	h := fieldsHeader(fields)
	if code < 200 {
		// Bounded as on the HTTP/1.1 path: a peer cannot keep a request
		// waiting with an endless run of 1xx responses.
		if st.num1xx++; st.num1xx > max1xxResponses || f.StreamEnded() {
			st.streamError(errors.New("too many 1xx informational responses, or one that ends the stream"), http2.ErrCodeProtocol)
			return
		}
		passInterim(st.req.Context(), code, h)
		return
	}
	cl, err := declaredLength(h)
	if err != nil {
		st.streamError(fmt.Errorf("malformed response from the peer proxy: %w", err), http2.ErrCodeProtocol)
		return
	}
	st.gotResp = true
	resp := &http.Response{
		Status: strconv.Itoa(code) + " " + http.StatusText(code), StatusCode: code,
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Request: st.req,
		ContentLength: cl, Trailer: declaredTrailers(h),
	}
	if st.req.Method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified {
		// The DATA that follows must match (RFC 9113 §8.1.1); a HEAD's or a
		// 304's content-length describes a body that is not sent.
		st.body.want = cl
	}
	if resp.Trailer != nil {
		delete(h, "Trailer")
	}
	if f.StreamEnded() {
		if !st.body.end(nil) {
			st.streamError(errBodyLength, http2.ErrCodeProtocol)
			return
		}
		resp.Body = http.NoBody
		resp.ContentLength = 0
	} else {
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
		resp.Body = st
	}
	st.setResp(resp, nil)
	if f.StreamEnded() {
		st.cc.maybeForget(st)
	}
}

// healthLoop pings a connection that has been silent for h2cReadIdle and closes it
// when the answer does not come within h2cPingTimeout: a peer that vanished (its pod
// deleted without a word) is noticed without waiting for TCP.
func (cc *h2ClientConn) healthLoop() {
	t := time.NewTicker(h2cReadIdle / 2)
	defer t.Stop()
	var pingSent time.Time
	for {
		select {
		case <-cc.done:
			return
		case now := <-t.C:
			last := time.Unix(0, cc.lastRead.Load())
			switch {
			case !pingSent.IsZero() && last.Before(pingSent) && now.Sub(pingSent) >= h2cPingTimeout:
				cc.close(fmt.Errorf("%w: no answer to PING in %s", errConnClosed, h2cPingTimeout))
				return
			case now.Sub(last) >= h2cReadIdle && (pingSent.IsZero() || !last.Before(pingSent)):
				pingSent = now
				cc.wmu.Lock()
				cc.fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'})
				cc.flushLocked()
				cc.wmu.Unlock()
			}
		}
	}
}
