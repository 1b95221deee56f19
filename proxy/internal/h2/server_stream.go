package h2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverStream is one request on an serverConn and its http.ResponseWriter.
type serverStream struct {
	c      *serverConn
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	body   *requestBody // nil when the request has no body
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
	// reqCtx is the request's context: ctx carrying st as the request's
	// InterimSender without an allocation of its own.
	reqCtx httpmsg.SenderContext
	// req is the request the handler serves, set before RunTask.
	req *http.Request
}

// RunTask serves st's request (the server's Run calls it).
func (st *serverStream) RunTask() { st.run(st.req) }

// run serves the request on a pooled goroutine.
func (st *serverStream) run(r *http.Request) {
	c := st.c
	defer func() {
		v := recover()
		// A stream reset already (by either end) gets no second reset: the
		// peer treats frames after its own reset as errors (RFC 9113 §5.1).
		c.wmu.Lock()
		reset := st.reset
		c.wmu.Unlock()
		if v != nil {
			if err, _ := v.(error); !errors.Is(err, http.ErrAbortHandler) {
				c.s.logError(fmt.Errorf("%v", v), "Handler panicked", "protocol", c.proto, "client", c.peer)
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
	c.handler.ServeHTTP(st, r)
}

// abort ends the stream from outside: the handler's context, its body and its
// pending writes all fail.
func (st *serverStream) abort(err error) {
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

func (st *serverStream) Header() http.Header { return st.header }

func (st *serverStream) WriteHeader(code int) {
	if st.status != 0 {
		return
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return // not in HTTP/2
		}
		st.SendInterim(code, st.header)
		return
	}
	st.status = code
	st.declared = httpmsg.DeclaredTrailers(st.header)
}

// SendInterim sends an informational response (100 Continue, 103 Early Hints) at
// once.
func (st *serverStream) SendInterim(code int, h http.Header) {
	c := st.c
	c.wmu.Lock()
	if !st.reset {
		c.writeHeaderBlock(st.id, code, h, false, false)
		c.flushLocked()
	}
	c.wmu.Unlock()
}

func (st *serverStream) Write(p []byte) (int, error) {
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
	if len(st.pending) >= writeChunk {
		if err := st.writeData(false, false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (st *serverStream) Flush() {
	if st.status == 0 {
		st.WriteHeader(http.StatusOK)
	}
	_ = st.writeData(false, true)
}

// finish ends the response: headers if none went out, the buffered body, trailers,
// END_STREAM, one flush.
func (st *serverStream) finish() {
	if st.status == 0 {
		st.WriteHeader(http.StatusOK)
	}
	trailers := httpmsg.TrailerFields(st.declared, st.header)
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
func (st *serverStream) writeData(end, flush bool) error {
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

// requestBody is a request body.
type requestBody struct {
	pipe
	st *serverStream
	// trailer is the request's Trailer map; only trailers it declares are kept.
	trailer http.Header
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, inc, fields, err := b.read(p)
	addFields(b.trailer, fields, true)
	if n > 0 {
		b.st.c.returnWindow(b.st.id, int64(n), inc)
	}
	return n, err
}

func (b *requestBody) Close() error {
	b.discard()
	return nil
}

// discard drops what is buffered and what still comes; the connection window it
// holds goes back to the peer.
func (b *requestBody) discard() {
	dropped, _ := b.closeRead()
	b.st.c.returnWindow(0, dropped, 0)
}

// newRequest makes the http.Request a HEADERS frame opens (RFC 9113 §8.3.1).
func (c *serverConn) newRequest(f *http2.MetaHeadersFrame, st *serverStream) (*http.Request, error) {
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
	st.reqCtx = httpmsg.SenderContext{Context: ctx, Sender: st}
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
		r.Trailer = httpmsg.DeclaredTrailers(h)
		st.body = &requestBody{st: st, trailer: r.Trailer}
		st.body.initPipe(StreamWindow)
		st.body.want = cl
		r.Body = st.body
	}
	return r.WithContext(&st.reqCtx), nil
}

// writeHeaderBlock encodes fields into HEADERS (+ CONTINUATION) frames. wmu held.
func (c *serverConn) writeHeaderBlock(id uint32, status int, h http.Header, trailers bool, endStream bool) {
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
