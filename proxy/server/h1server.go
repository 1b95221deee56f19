package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1ServerConn serves an app's plaintext HTTP/1.1 connection for the common case:
// requests without a body or with one of declared length, without Expect or Upgrade.
// net/http's server starts a goroutine per request that reads ahead (to notice a
// client that goes away) and interrupts it with a read deadline when the response is
// done: one more read system call that finds nothing, one more wake-up and two
// deadline changes per request. Here the connection's own goroutine does that read:
// once a request (and its body) has been read, it waits for the next one, and an error
// on that read is the client going away, which cancels the request.
//
// At the first request it does not take (chunked, Expect, Upgrade, HTTP/1.0, anything
// malformed or large), it hands the connection with the bytes it read to net/http's
// server, which serves it from there on; net/http also answers bad requests.
type h1ServerConn struct {
	s      *Server
	pc     *peekConn
	srv    *http.Server // the handler, and who takes connections handed over
	l      *chanListener
	ctx    context.Context // the base of every request's context
	remote string
	br     *bufio.Reader
	bw     *bufio.Writer
	done   chan bool // a handler finished; whether the connection may be kept
	idle   *time.Timer

	mu      sync.Mutex
	busy    bool // a request is being served
	closing bool // shutting down: close when idle
}

const (
	// h1IdleTimeout closes a keep-alive connection without requests for this long
	// (net/http's IdleTimeout in newHTTPServer).
	h1IdleTimeout = 5 * time.Minute
	// h1BufSize is the read and write buffer of a connection; a request header that
	// does not fit goes to net/http, which allows up to 1 MiB.
	h1BufSize = 4 << 10
)

// serveH1 serves pc until it closes or is handed over. info reaches handlers through
// the request context.
func (s *Server) serveH1(pc *peekConn, info *connInfo, srv *http.Server, l *chanListener) {
	// http.ServerContextKey: httputil.ReverseProxy aborts a response whose body fails
	// midway (panic(http.ErrAbortHandler), which ends the connection here) only when
	// it believes a server will recover the panic; else a truncated body ends cleanly.
	ctx := context.WithValue(context.WithValue(context.Background(), connInfoKey{}, info), http.ServerContextKey, srv)
	c := &h1ServerConn{
		s: s, pc: pc, srv: srv, l: l, ctx: ctx, remote: pc.RemoteAddr().String(),
		br: bufio.NewReaderSize(pc, h1BufSize), bw: bufio.NewWriterSize(pc, h1BufSize),
		done: make(chan bool, 1),
	}
	if !s.addDrainer(c) {
		pc.Close()
		return
	}
	defer s.removeDrainer(c)
	c.idle = time.AfterFunc(h1IdleTimeout, c.goAway)
	for c.serveNext() {
	}
}

// serveNext reads and serves one request; false when the connection is closed or
// handed over.
func (c *h1ServerConn) serveNext() bool {
	if c.br.Size() > h1BufSize && c.br.Buffered() <= h1BufSize {
		// Back to the small buffer after a large header: a connection would
		// otherwise hold MaxHeaderBytes for the rest of its life.
		c.setReader(h1BufSize)
	}
	n, err := c.headerLen()
	if err == bufio.ErrBufferFull && c.br.Size() == h1BufSize {
		// A header over 4 KiB (large cookies, say): read it whole into a larger
		// buffer, so that its framing is checked here too before net/http serves it.
		c.setReader(c.s.opts.MaxHeaderBytes + 4<<10)
		n, err = c.headerLen()
	}
	if err != nil {
		c.mu.Lock()
		timedOut := c.closing
		c.mu.Unlock()
		switch {
		case c.br.Buffered() == 0 || timedOut:
			c.close()
		case err == bufio.ErrBufferFull:
			c.refuse(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request header over %d bytes", c.s.opts.MaxHeaderBytes))
		default:
			// Cut short: nothing to serve.
			c.close()
		}
		return false
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.close()
		return false
	}
	c.busy = true
	c.mu.Unlock()
	c.idle.Stop()
	// Parsing consumes only the header, which is buffered whole, so the buffer is
	// not refilled and these bytes stay valid for a hand-over.
	raw := c.buffered()
	if reason := h1FramingError(raw[:n]); reason != "" {
		c.refuse(http.StatusBadRequest, reason)
		return false
	}
	req, err := http.ReadRequest(c.br)
	if err != nil || !h1Eligible(req) || c.br.Buffered() != len(raw)-n {
		// The header was checked whole: net/http may serve this one request
		// (h1Guard then closes the connection after it).
		infoFrom(c.ctx).h1Checked.Store(true)
		c.handOver(raw)
		return false
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := &h1Response{c: c, header: make(http.Header, 8), remain: -1, close: req.Close}
	req = req.WithContext(context.WithValue(ctx, interimKey{}, interimSender(w)))
	req.RemoteAddr = c.remote
	if req.Body != http.NoBody {
		w.body = &h1ReqBody{rc: req.Body, done: make(chan struct{})}
		w.body.remain.Store(req.ContentLength)
		req.Body = w.body
	}
	w.req = req
	c.s.workers.run(func() { c.run(w) })
	if b := w.body; b != nil {
		// The body is read from this connection's buffer by whoever forwards it:
		// the wait for the next request starts when it has ended.
		select {
		case <-b.done:
		case keep := <-c.done:
			c.done <- keep
		}
		if b.remain.Load() > 0 {
			// Not read to its end (the handler did not need it, or gave up): what
			// is left cannot be told from a next request without reading it, and
			// a read of it may still be under way. The connection ends, which
			// also fails such a read; the response said Connection: close if it
			// went out after this.
			c.pc.Close()
			<-c.done
			cancel()
			return false
		}
	}
	if c.br.Buffered() == 0 {
		// The handler goes first: the read below most likely finds nothing yet.
		runtime.Gosched()
	}
	// Wait for the next request while this one is served: an error is the client
	// going away (or the handler closing the connection), and ends the request.
	_, perr := c.br.Peek(1)
	if perr != nil {
		cancel()
	}
	keep := <-c.done
	cancel()
	if !keep || perr != nil {
		c.close()
		return false
	}
	return true
}

// setReader replaces the read buffer with one of size bytes (a large header's
// MaxHeaderBytes, with the 4 KiB of slack net/http's server allows too, or back to
// h1BufSize), keeping what it holds. Between requests only: nothing else reads it.
func (c *h1ServerConn) setReader(size int) {
	held := bytes.Clone(c.buffered())
	c.mu.Lock() // for tests that look at the size
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(held), c.pc), size)
	c.mu.Unlock()
}

// buffered is what the reader holds and nobody consumed yet.
func (c *h1ServerConn) buffered() []byte {
	b, _ := c.br.Peek(c.br.Buffered())
	return b
}

// h1Eligible says whether h1ServerConn serves r itself: HTTP/1.1 in origin form,
// without a body or with one of declared length, without Expect or Upgrade, with a
// valid Host and valid header fields (else net/http's server takes the connection and
// answers, 400 for what it finds invalid).
func h1Eligible(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Method == http.MethodConnect || r.Method == "PRI" {
		return false
	}
	if r.Body != http.NoBody && (r.ContentLength <= 0 || len(r.TransferEncoding) > 0 || len(r.Trailer) > 0) {
		return false // chunked
	}
	// http.ReadRequest took the Host field out of the header (and refused two): a
	// Host here came from it, unless the target was in absolute form.
	if r.URL.Host != "" || r.Host == "" || !httpguts.ValidHostHeader(r.Host) {
		return false
	}
	for k, vs := range r.Header {
		if k == "Expect" || k == "Upgrade" || !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// handOver gives the connection, with the bytes read and not served, to net/http's
// server for the rest of its life.
func (c *h1ServerConn) handOver(unserved []byte) {
	c.idle.Stop()
	c.s.removeDrainer(c)
	c.pc.Conn.Unread(unserved)
	c.br.Reset(nil)
	if !c.l.push(&infoConn{Conn: c.pc, info: infoFrom(c.ctx)}) {
		c.pc.Close()
	}
}

// refuse answers a request with status (400 for framing h1FramingError refused, 431
// for a header over MaxHeaderBytes) and ends the connection: where the next request
// would start is not known, so nothing more is read as one. The write side is closed first and the input drained for a moment
// (bounded in time and bytes), so that the client reads the answer before a reset
// caused by its unread bytes can destroy it.
func (c *h1ServerConn) refuse(status int, reason string) {
	c.idle.Stop()
	c.s.log.V(1).Info("Refusing request", "client", c.remote, "status", status, "reason", reason)
	c.bw.Write(h1Refusal(status, reason))
	if c.bw.Flush() == nil && c.pc.cc.CloseWrite() == nil {
		c.pc.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, c.pc, lingerBytes)
	}
	c.pc.Close()
}

// A connection closed after an error answer keeps reading for up to lingerTimeout or
// lingerBytes (net/http's server waits 500 ms in the same case).
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
)

// close ends the connection.
func (c *h1ServerConn) close() {
	c.idle.Stop()
	c.pc.Close()
}

// goAway closes the connection when no request is being served, and otherwise after
// the response (Shutdown, and the idle timer).
func (c *h1ServerConn) goAway() {
	c.mu.Lock()
	c.closing = true
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		c.pc.Close()
	}
}

// run serves one request on a pooled goroutine and finishes its response.
func (c *h1ServerConn) run(w *h1Response) {
	keep := false
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.s.log.Error(fmt.Errorf("%v", v), "Handler panicked", "client", c.remote)
			}
			// The response is incomplete: closing the connection tells the client.
			keep = false
		}
		c.mu.Lock()
		c.busy = false
		keep = keep && !c.closing
		c.mu.Unlock()
		if keep {
			c.idle.Reset(h1IdleTimeout)
		} else {
			// Also wakes the connection's goroutine from its read.
			c.pc.Close()
		}
		c.done <- keep
	}()
	c.srv.Handler.ServeHTTP(w, w.req)
	keep = w.finish()
}

// headerLen waits until a whole request header is buffered and returns its length.
// The header ends at the first empty line, with CRLF or bare LF line ends (as
// net/textproto reads them). Once a header has begun and is not whole in what was
// read, the idle timer becomes the header timeout (Options.HeaderReadTimeout): a
// client sending its header byte by byte (slowloris) is disconnected when it ends.
// A header that arrives in one read, the common case, costs no timer change.
func (c *h1ServerConn) headerLen() (int, error) {
	from := 0
	armed := false
	for {
		buf, err := c.br.Peek(max(c.br.Buffered(), 1))
		for i := from; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if i+1 < len(buf) && buf[i+1] == '\n' {
				return i + 2, nil
			}
			if i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n' {
				return i + 3, nil
			}
		}
		if err != nil {
			return 0, err
		}
		if len(buf) == c.br.Size() {
			return 0, bufio.ErrBufferFull
		}
		// The last two bytes may begin an end that the next ones complete.
		from = max(len(buf)-2, 0)
		if !armed {
			c.idle.Reset(c.s.opts.HeaderReadTimeout)
			armed = true
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil && c.br.Buffered() == len(buf) {
			return 0, err
		}
	}
}

// h1ReqBody is a request body of declared length read from the connection. It tells
// the connection's goroutine when it has ended (read to its end, failed or closed),
// so that the goroutine only then reads the connection again.
type h1ReqBody struct {
	rc     io.ReadCloser // http.ReadRequest's body; never closed: that reads it to its end
	remain atomic.Int64  // bytes of the declared length not read yet
	closed atomic.Bool
	done   chan struct{}
	once   sync.Once
}

func (b *h1ReqBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if b.remain.Add(-int64(n)) == 0 || err != nil {
		b.end()
	}
	return n, err
}

func (b *h1ReqBody) Close() error {
	b.closed.Store(true)
	b.end()
	return nil
}

func (b *h1ReqBody) end() { b.once.Do(func() { close(b.done) }) }

// h1Response is the http.ResponseWriter of one request on an h1ServerConn. The head
// is written with the first body bytes, a flush or the end, so that a response
// without a body gets Content-Length: 0; a body of unknown length is chunked.
type h1Response struct {
	c        *h1ServerConn
	req      *http.Request
	header   http.Header
	status   int        // the final status; 0 until WriteHeader
	wrote    bool       // the head is written
	chunked  bool       // the body is chunked (it may carry trailers)
	noBody   bool       // HEAD, 204, 304
	remain   int64      // what a declared Content-Length still expects; -1 without one
	close    bool       // the connection ends after this response
	body     *h1ReqBody // the request's, when it has one
	declared http.Header
	err      error
}

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.sendInterim(code, w.header)
		return
	}
	w.status = code
}

// sendInterim sends an informational response (103 Early Hints, a backend's 100
// Continue) at once.
func (w *h1Response) sendInterim(code int, h http.Header) {
	if w.err == nil {
		w.writeStatusAndFields(code, h)
		w.c.bw.WriteString("\r\n")
		w.noteErr(w.c.bw.Flush())
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	w.head(false)
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if w.noteErr(err) {
			return 0, err
		}
		return len(p), nil
	}
	var over error
	if w.remain >= 0 && int64(len(p)) > w.remain {
		p, over = p[:w.remain], http.ErrContentLength
	}
	n, err := bw.Write(p)
	w.remain -= int64(n)
	if w.noteErr(err) {
		return n, err
	}
	return n, over
}

// FlushError sends what is buffered (http.ResponseController's Flush).
func (w *h1Response) FlushError() error {
	w.head(false)
	if w.err == nil {
		w.noteErr(w.c.bw.Flush())
	}
	return w.err
}

func (w *h1Response) Flush() { _ = w.FlushError() }

// finish ends the response after the handler returned: the head if it has not gone
// out, the last chunk and trailers, one flush. It says whether the connection may
// serve another request.
func (w *h1Response) finish() bool {
	w.head(true)
	bw := w.c.bw
	if w.chunked && w.err == nil {
		bw.WriteString("0\r\n")
		writeFields(bw, trailerFields(w.declared, w.header), nil)
		bw.WriteString("\r\n")
	}
	if w.remain > 0 {
		// Shorter than declared: only closing tells the client it is incomplete.
		w.close = true
	}
	if w.err == nil {
		w.noteErr(bw.Flush())
	}
	return !w.close && w.err == nil
}

// noteErr records a write error; the connection is then closed after the handler.
func (w *h1Response) noteErr(err error) bool {
	if err != nil && w.err == nil {
		w.err = err
		w.close = true
	}
	return err != nil
}

// head writes the status line and header fields once, choosing the framing: the
// declared Content-Length, else chunked, else (ended with nothing written)
// Content-Length: 0.
func (w *h1Response) head(ended bool) {
	if w.wrote {
		return
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.wrote = true
	h := w.header
	delete(h, "Transfer-Encoding")
	w.noBody = w.req.Method == http.MethodHead || w.status == http.StatusNoContent || w.status == http.StatusNotModified
	if _, ok := h["Content-Length"]; ok && contentLength(h) < 0 {
		delete(h, "Content-Length") // not a length: frame the body ourselves
	}
	// Without a body (HEAD, 204, 304), Content-Length describes the body a GET would
	// have had and stays as it is.
	if !w.noBody {
		if w.remain = contentLength(h); w.remain < 0 && ended {
			w.remain = 0
			h["Content-Length"] = []string{"0"}
		} else if w.remain < 0 {
			w.chunked = true
			w.declared = declaredTrailers(h)
		}
	}
	w.c.mu.Lock()
	w.close = w.close || w.c.closing
	w.c.mu.Unlock()
	if w.body != nil && w.body.remain.Load() > 0 {
		// The request body may not be read to its end (see serveNext).
		w.close = true
	}
	if w.close || httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.close = true
		h["Connection"] = []string{"close"}
	}
	if w.err != nil {
		return
	}
	bw := w.c.bw
	w.writeStatusAndFields(w.status, h)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

// writeStatusAndFields writes a status line and header fields (not the empty line).
func (w *h1Response) writeStatusAndFields(code int, h http.Header) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	writeFields(bw, h, nil)
}

// writeFields writes header or trailer fields, except those in skip. Names that are
// not tokens and trailer placeholders (http.TrailerPrefix) are left out; CR and LF in
// values become spaces, as net/http writes them.
func writeFields(bw *bufio.Writer, h http.Header, skip map[string]bool) {
	for k, vs := range h {
		if skip[k] || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
}

// writeField writes one field line.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// httpDate is the Date field's value for now, formatted once per second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.value
	}
	d := &cachedDate{sec: now.Unix(), value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

type cachedDate struct {
	sec   int64
	value string
}

var dateCache atomic.Pointer[cachedDate]
