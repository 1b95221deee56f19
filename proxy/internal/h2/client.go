package h2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// The sending side of weft.h2: the HTTP/2 client from this proxy to one peer proxy.
//
// Like the receiving side (server.go) it is written for this one job rather than
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
	// clientStreamWindow is how much response body a peer may send ahead of the
	// caller reading it; clientConnWindow for the whole connection, which bounds
	// what one connection's responses can make this proxy hold (a peer sending
	// more gets FLOW_CONTROL_ERROR): sixteen streams fill their windows before
	// the others wait for their callers. With response header lists bounded by
	// MaxHeaderList and at most the server's maxStreams streams, a
	// connection holds at most ~16 MiB of body (32 MiB of buffers) and 6.25 MiB
	// of headers, as the server side does (see server.go).
	clientStreamWindow = 1 << 20
	clientConnWindow   = 16 << 20
	// clientReadIdle is how long a connection may stay silent before it is pinged,
	// clientPingTimeout how long the answer may take before it is closed as dead.
	clientReadIdle    = 30 * time.Second
	clientPingTimeout = 10 * time.Second
	// clientMaxRetries bounds how often a request the peer did not process is sent
	// again.
	clientMaxRetries = 3
)

// errNotProcessed marks failures after which the peer certainly did not act on the
// request: it may be sent again.
type errNotProcessed struct {
	err    error
	reason string // one of the NotProcessed* reasons
}

// Why a request the peer certainly did not act on was not processed (NotProcessed).
const (
	// NotProcessedRefusedStream: the peer reset the stream with REFUSED_STREAM
	// (RFC 9113 §8.7).
	NotProcessedRefusedStream = "refused_stream"
	// NotProcessedGoAway: the stream was above the last stream ID of the peer's
	// GOAWAY (RFC 9113 §6.8).
	NotProcessedGoAway = "goaway"
	// NotProcessedConnGone: the connection closed or went away before the
	// stream's HEADERS could leave.
	NotProcessedConnGone = "conn_gone"
)

// NotProcessed says whether err ended a request that the peer certainly did not act
// on, and why: RoundTrip returns such an error once its own re-sends on new
// connections to the same peer are spent, so a caller may send the request to
// another peer.
func NotProcessed(err error) (reason string, ok bool) {
	var np errNotProcessed
	if errors.As(err, &np) {
		return np.reason, true
	}
	return "", false
}

func (e errNotProcessed) Error() string { return e.err.Error() }
func (e errNotProcessed) Unwrap() error { return e.err }

var errConnClosed = errors.New("mesh connection closed")

// Client sends requests to one peer: an http.RoundTripper over the connections its
// dial function opens (mTLS to a peer proxy, with ALPN weft.h2, in the proxy).
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu      sync.Mutex // guards conns and dialing; taken before any clientConn's lock
	conns   []*clientConn
	dialing *dialCall
}

type dialCall struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// NewClient returns a Client that opens connections with dial; dial bounds its own
// wait (the dial is shared by the requests waiting for it, so no request's context
// cancels it).
func NewClient(dial func(ctx context.Context) (net.Conn, error)) *Client {
	return &Client{dial: dial}
}

// RoundTrip sends req on a connection with room for a stream. A request the peer
// did not process (its stream refused, or above a GOAWAY's last stream, as a peer
// proxy that is shutting down answers) goes out again on another connection, up to
// clientMaxRetries times: at once when it has no body, else with the body
// req.GetBody returns, as x/net's http2.Transport does.
func (m *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		cc, err := m.conn(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(req)
		var np errNotProcessed
		if err == nil || !errors.As(err, &np) || attempt >= clientMaxRetries || req.Context().Err() != nil {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, berr := req.GetBody()
			if berr != nil {
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
func (m *Client) conn(ctx context.Context) (*clientConn, error) {
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

func (m *Client) dialOne(call *dialCall) {
	// The dial is shared by every waiting request, so no single request's
	// context may cancel it; the dialler bounds it with its connect timeout.
	nc, err := m.dial(context.Background())
	if err == nil {
		call.cc, err = newClientConn(m, nc)
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

func (m *Client) forget(cc *clientConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.conns {
		if c == cc {
			m.conns = append(m.conns[:i], m.conns[i+1:]...)
			return
		}
	}
}

// Unused says whether the client holds no connection and dials none: a pool may
// forget it.
func (m *Client) Unused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns) == 0 && m.dialing == nil
}

// CloseIdle closes the connections without streams.
func (m *Client) CloseIdle() {
	m.mu.Lock()
	conns := append([]*clientConn(nil), m.conns...)
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

// clientConn is one weft.h2 connection to a peer proxy.
type clientConn struct {
	framing
	m      *Client // set before the connection is shared
	nextID uint32  // under wmu

	mu         sync.Mutex // guards the fields below up to lastRead; taken after wmu
	streams    map[uint32]*clientStream
	reserved   int    // streams promised by reserve and not opened yet
	maxStreams uint32 // the peer's SETTINGS_MAX_CONCURRENT_STREAMS
	goingAway  bool
	closed     bool
	closeErr   error

	lastRead atomic.Int64  // unix nanos of the last frame read
	done     chan struct{} // closed by close: stops healthLoop
}

func newClientConn(m *Client, nc net.Conn) (*clientConn, error) {
	cc := &clientConn{m: m, nextID: 1, streams: map[uint32]*clientStream{}, maxStreams: maxStreams, done: make(chan struct{})}
	cc.init(nc, clientConnWindow)
	cc.lastRead.Store(time.Now().UnixNano())
	err := cc.writeOpening(http2.ClientPreface,
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: clientStreamWindow})
	if err != nil {
		nc.Close()
		return nil, err
	}
	go cc.readLoop()
	go cc.healthLoop()
	return cc, nil
}

// reserve takes a stream slot; false when the connection cannot take one.
func (cc *clientConn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goingAway || uint32(len(cc.streams)+cc.reserved) >= cc.maxStreams {
		return false
	}
	cc.reserved++
	return true
}

func (cc *clientConn) stream(id uint32) *clientStream {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.streams[id]
}

// close ends the connection; its streams fail with err. They are not sent again:
// after a broken connection nobody can tell whether the peer saw them (only streams
// it refused, or that a GOAWAY excluded, are).
func (cc *clientConn) close(err error) {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	cc.closeErr = err
	streams := make([]*clientStream, 0, len(cc.streams))
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

func (cc *clientConn) readLoop() {
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
	cc.close(fmt.Errorf("%w: %w", errConnClosed, err))
}

func (cc *clientConn) handle(f http2.Frame) error {
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
				err = errNotProcessed{err: err, reason: NotProcessedRefusedStream}
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
func (cc *clientConn) adjustStreams(delta int64) bool {
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
func (cc *clientConn) onData(f *http2.DataFrame) error {
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
func (cc *clientConn) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goingAway = true
	var refused []*clientStream
	for id, st := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, st)
		}
	}
	cc.mu.Unlock()
	cc.m.forget(cc)
	for _, st := range refused {
		st.abort(errNotProcessed{err: fmt.Errorf("peer proxy going away (GOAWAY %v)", f.ErrCode), reason: NotProcessedGoAway}, false)
	}
	cc.mu.Lock()
	idle := len(cc.streams) == 0 && cc.reserved == 0
	cc.mu.Unlock()
	if idle {
		cc.close(errConnClosed)
	}
}

// healthLoop pings a connection that has been silent for clientReadIdle and closes it
// when the answer does not come within clientPingTimeout: a peer that vanished (its pod
// deleted without a word) is noticed without waiting for TCP.
func (cc *clientConn) healthLoop() {
	t := time.NewTicker(clientReadIdle / 2)
	defer t.Stop()
	var pingSent time.Time
	for {
		select {
		case <-cc.done:
			return
		case now := <-t.C:
			last := time.Unix(0, cc.lastRead.Load())
			switch {
			case !pingSent.IsZero() && last.Before(pingSent) && now.Sub(pingSent) >= clientPingTimeout:
				cc.close(fmt.Errorf("%w: no answer to PING in %s", errConnClosed, clientPingTimeout))
				return
			case now.Sub(last) >= clientReadIdle && (pingSent.IsZero() || !last.Before(pingSent)):
				pingSent = now
				cc.wmu.Lock()
				cc.fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'})
				cc.flushLocked()
				cc.wmu.Unlock()
			}
		}
	}
}
