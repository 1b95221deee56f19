package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientStream is one request and its response body.
type clientStream struct {
	cc  *clientConn
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
	body   pipe       // the response body
	num1xx int        // informational responses so far; read loop only

	stopCtx func() bool // stops the context watch
	ended   atomic.Bool // the stream is over both ways: forgotten
	sentEnd atomic.Bool // the request's END_STREAM went out
}

func (cc *clientConn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	st := &clientStream{cc: cc, req: req, respReady: make(chan struct{})}
	st.body.initPipe(clientStreamWindow)

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
		return nil, errNotProcessed{err: err, reason: NotProcessedConnGone}
	}
	if limit := cc.peerMaxHdr; limit > 0 && headerListSize(req) > int64(limit) {
		// The peer would end the whole connection over a block this large (x/net's
		// framer does past twice its limit), failing every stream on it; the
		// peer's setting is advisory, but only this request should fail (RFC
		// 9113 §6.5.2, §10.5.1).
		cc.mu.Unlock()
		cc.wmu.Unlock()
		return nil, fmt.Errorf("%w (%d bytes)", ErrHeaderListTooLarge, limit)
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
			return nil, errNotProcessed{err: err, reason: NotProcessedConnGone}
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

// ErrHeaderListTooLarge fails a request whose header fields exceed what the peer
// proxy takes (its SETTINGS_MAX_HEADER_LIST_SIZE).
var ErrHeaderListTooLarge = errors.New("request header fields exceed the peer proxy's header list limit")

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
func (cc *clientConn) writeRequestHeaders(id uint32, req *http.Request, endStream bool) {
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
func (st *clientStream) writeBody(body io.ReadCloser) {
	defer body.Close()
	cc := st.cc
	bufp := httpmsg.CopyBuffers.Get().(*[]byte)
	defer httpmsg.CopyBuffers.Put(bufp)
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
	if st.reset || cc.werr != nil {
		cc.wmu.Unlock()
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
	// Released before forgetting the stream: forgetting the last stream of a
	// connection going away closes it, which takes wmu and Client.mu (see the lock
	// order in doc.go).
	cc.wmu.Unlock()
	st.sentEnd.Store(true)
	cc.maybeForget(st)
}

// writeData sends p within the send windows, waiting for window as needed, and
// flushes.
func (st *clientStream) writeData(p []byte, end bool) error {
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
func (st *clientStream) abort(err error, tell bool) {
	code := http2.ErrCodeCancel
	if !tell {
		code = 0xffffffff
	}
	st.resetWith(err, code)
}

// streamError ends a stream on which the peer broke the protocol: RST_STREAM with
// code (RFC 9113 §5.4.2), and the response fails with err.
func (st *clientStream) streamError(err error, code http2.ErrCode) {
	st.resetWith(fmt.Errorf("%w (stream reset with %v)", err, code), code)
}

// resetWith ends a stream, telling the peer with RST_STREAM(code) unless code is
// 0xffffffff.
func (st *clientStream) resetWith(err error, code http2.ErrCode) {
	cc := st.cc
	cc.wmu.Lock()
	already := st.reset
	st.reset = true
	if code != 0xffffffff && !already && !st.ended.Load() {
		cc.fr.WriteRSTStream(st.id, code)
		cc.flushLocked()
	}
	cc.wcond.Broadcast()
	cc.wmu.Unlock()
	// After the reset is out: the caller, woken by the error, may close the body,
	// which must not be first to reset the stream (with another code).
	st.fail(err)
	st.sentEnd.Store(true)
	st.ended.Store(true)
	cc.forgetStream(st)
}

// fail ends the response, or its body, with err.
func (st *clientStream) fail(err error) {
	st.body.fail(err)
	st.setResp(nil, err)
}

// setResp delivers the response (or the error instead of one) once.
func (st *clientStream) setResp(resp *http.Response, err error) {
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
func (cc *clientConn) maybeForget(st *clientStream) {
	if !st.sentEnd.Load() {
		return
	}
	if st.body.ended() && st.ended.CompareAndSwap(false, true) {
		cc.forgetStream(st)
	}
}

func (cc *clientConn) forgetStream(st *clientStream) {
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
func (st *clientStream) Read(p []byte) (int, error) {
	n, inc, fields, err := st.body.read(p)
	if len(fields) > 0 {
		if st.resp.Trailer == nil {
			// Made when trailers come, not for every response (most have none):
			// whoever reads the body reads Trailer after it ended, in this goroutine.
			st.resp.Trailer = make(http.Header, len(fields))
		}
		addFields(st.resp.Trailer, fields, false)
	}
	if n > 0 {
		st.cc.returnWindow(st.id, int64(n), inc)
	}
	return n, err
}

// Close closes the response body; a stream still running is cancelled.
func (st *clientStream) Close() error {
	dropped, running := st.body.closeRead()
	st.cc.returnWindow(0, dropped, 0)
	if running {
		st.abort(errors.New("response body closed"), true)
	} else {
		st.cc.maybeForget(st)
	}
	return nil
}

// onHeaders takes a response's headers (1xx, final) or its trailers.
func (st *clientStream) onHeaders(f *http2.MetaHeadersFrame) {
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
		st.streamError(fmt.Errorf("response header list over %d bytes from the peer proxy", MaxHeaderList), http2.ErrCodeCancel)
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
		if st.num1xx++; st.num1xx > httpmsg.Max1xxResponses || f.StreamEnded() {
			st.streamError(errors.New("too many 1xx informational responses, or one that ends the stream"), http2.ErrCodeProtocol)
			return
		}
		if err := httpmsg.PassInterim(st.req.Context(), code, h); err != nil {
			// The caller's trace refused it (as the HTTP/1.1 client does, the
			// request fails).
			st.streamError(err, http2.ErrCodeCancel)
		}
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
		ContentLength: cl, Trailer: httpmsg.DeclaredTrailers(h),
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
		resp.Body = st // Read makes resp.Trailer if the peer sends trailers undeclared
	}
	st.setResp(resp, nil)
	if f.StreamEnded() {
		st.cc.maybeForget(st)
	}
}
