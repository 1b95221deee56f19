package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http/httpguts"
)

// serverConn serves an HTTP/1.1 connection (an app's, or weft.h1 from a peer proxy)
// for the common case:
// requests without a body or with one of declared length, without Expect or Upgrade.
// net/http's server starts a goroutine per request that reads ahead (to notice a
// client that goes away) and interrupts it with a read deadline when the response is
// done: one more read system call that finds nothing, one more wake-up and two
// deadline changes per request. Here the connection's own goroutine does that read:
// once a request (and its body) has been read, it waits for the next one, and an error
// on that read is the client going away, which cancels the request.
//
// A request whose framing is ambiguous, or whose header is over MaxHeaderBytes, it
// refuses itself (400, 431) and ends the connection. At the first request it does not
// take (chunked, Expect, Upgrade, HTTP/1.0), it hands the connection with the bytes it
// read to ServeConnOpts.HandOver: net/http's server, for that one request.
type serverConn struct {
	s        *Server
	pc       Conn
	handler  http.Handler
	handOver func(net.Conn)  // takes the connection at a request this server does not serve
	ctx      context.Context // the base of every request's context
	remote   string
	br       *bufio.Reader
	bw       *bufio.Writer
	done     chan bool // a handler finished; whether the connection may be kept
	idle     *time.Timer

	mu      sync.Mutex
	busy    bool // a request is being served
	closing bool // shutting down: close when idle
}

const (
	// idleTimeout closes a keep-alive connection without requests for this long
	// (net/http's IdleTimeout in the proxy's http.Server).
	idleTimeout = 5 * time.Minute
	// bufSize is the read and write buffer of a connection; a request header that
	// does not fit is read into a buffer of Server.MaxHeaderBytes, once.
	bufSize = 4 << 10
)

// Server serves HTTP/1.1 connections. Its contract with the rest of the proxy is the
// http.Handler of each connection, the fields below, and ServeConnOpts.HandOver.
type Server struct {
	// Run runs a request's handler. The proxy passes a pool of goroutines whose
	// grown stacks are reused; nil starts a goroutine per request.
	Run func(httpmsg.Task)
	// Log receives what any client can cause (Info: give it a debug-level logger)
	// and handler panics (Error). nil logs nothing.
	Log Logger
	// Drain, when set, registers every connection for graceful shutdown: Drain's
	// owner calls GoAway, and the connection closes once no request is being
	// served. A connection Drain refuses (shutting down already) is closed at once.
	Drain Draining
	// HeaderReadTimeout bounds how long a client may take to send a request header
	// once it started one; a slower client (slowloris) is disconnected.
	HeaderReadTimeout time.Duration
	// MaxHeaderBytes bounds a request header; a larger one gets 431. A header over
	// bufSize is read into a buffer of this size plus 4 KiB, then the connection
	// returns to bufSize.
	MaxHeaderBytes int
}

// Logger is what the protocol packages log to; logr.Logger satisfies it.
type Logger interface {
	Info(msg string, keysAndValues ...any)
	Error(err error, msg string, keysAndValues ...any)
}

// Draining is a registry of connections that graceful shutdown asks to finish.
type Draining interface {
	// Add registers c; false when shutting down already.
	Add(c interface{ GoAway() }) bool
	Remove(c interface{ GoAway() })
}

// Conn is a connection the server reads requests from: a TCP or TLS connection
// behind protocol detection, which can give back bytes read ahead (for a hand-over)
// and half-close (so that a refused client reads its answer before the close).
type Conn interface {
	net.Conn
	// Unread puts p back in front of what the connection reads next.
	Unread(p []byte)
	CloseWrite() error
}

// ServeConnOpts are one connection's own: what its requests' handler is and sees.
type ServeConnOpts struct {
	// Context is the parent of every request's context; it carries what the caller
	// learned about the connection, and should carry http.ServerContextKey:
	// httputil.ReverseProxy aborts a response whose body fails midway
	// (panic(http.ErrAbortHandler), which ends the connection here) only when it
	// believes a server will recover the panic; else a truncated body ends cleanly.
	Context context.Context
	// Handler serves the requests this server reads itself.
	Handler http.Handler
	// HandOver takes the connection, positioned at a request this server read and
	// checked whole (framingError) but does not serve itself (chunked, Expect,
	// Upgrade, HTTP/1.0, absolute form): net/http's server serves that one request
	// (see framing.go). It owns the connection from then on.
	HandOver func(net.Conn)
}

// ServeConn serves pc until it closes or is handed over.
func (s *Server) ServeConn(pc Conn, opts ServeConnOpts) {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	c := &serverConn{
		s: s, pc: pc, handler: opts.Handler, handOver: opts.HandOver, ctx: ctx, remote: pc.RemoteAddr().String(),
		br: bufio.NewReaderSize(pc, bufSize), bw: bufio.NewWriterSize(pc, bufSize),
		done: make(chan bool, 1),
	}
	if s.Drain != nil {
		if !s.Drain.Add(c) {
			pc.Close()
			return
		}
		defer s.Drain.Remove(c)
	}
	c.idle = time.AfterFunc(idleTimeout, c.GoAway)
	for c.serveNext() {
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

// run starts a request's handler.
func (s *Server) run(t httpmsg.Task) {
	if s.Run != nil {
		s.Run(t)
		return
	}
	go t.RunTask()
}

// serveNext reads and serves one request; false when the connection is closed or
// handed over.
func (c *serverConn) serveNext() bool {
	if c.br.Size() > bufSize && c.br.Buffered() <= bufSize {
		// Back to the small buffer after a large header: a connection would
		// otherwise hold MaxHeaderBytes for the rest of its life.
		c.setReader(bufSize)
	}
	n, err := c.headerLen()
	if errors.Is(err, bufio.ErrBufferFull) && c.br.Size() == bufSize {
		// A header over 4 KiB (large cookies, say): read it whole into a larger
		// buffer, so that its framing is checked here too before net/http serves it.
		c.setReader(c.s.MaxHeaderBytes + 4<<10)
		n, err = c.headerLen()
	}
	if err != nil {
		c.mu.Lock()
		timedOut := c.closing
		c.mu.Unlock()
		switch {
		case c.br.Buffered() == 0 || timedOut:
			c.close()
		case errors.Is(err, bufio.ErrBufferFull):
			c.refuse(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request header over %d bytes", c.s.MaxHeaderBytes))
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
	if reason := framingError(raw[:n]); reason != "" {
		c.refuse(http.StatusBadRequest, reason)
		return false
	}
	req, err := http.ReadRequest(c.br)
	if err != nil || !eligible(req) || c.br.Buffered() != len(raw)-n {
		// The header was checked whole: net/http may serve this one request
		// (Guard then closes the connection after it).
		c.giveAway(raw)
		return false
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := &response{c: c, header: make(http.Header, 8), remain: -1, close: req.Close}
	w.ctx = httpmsg.SenderContext{Context: ctx, Sender: w}
	req = req.WithContext(&w.ctx)
	req.RemoteAddr = c.remote
	if req.Body != http.NoBody {
		w.body = &requestBody{rc: req.Body, done: make(chan struct{})}
		w.body.remain.Store(req.ContentLength)
		req.Body = w.body
	}
	w.req = req
	c.s.run(w) // w.RunTask: c.run(w)
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
// bufSize), keeping what it holds. Between requests only: nothing else reads it.
func (c *serverConn) setReader(size int) {
	held := bytes.Clone(c.buffered())
	c.mu.Lock() // for tests that look at the size
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(held), c.pc), size)
	c.mu.Unlock()
}

// buffered is what the reader holds and nobody consumed yet.
func (c *serverConn) buffered() []byte {
	b, _ := c.br.Peek(c.br.Buffered())
	return b
}

// eligible says whether serverConn serves r itself: HTTP/1.1 in origin form,
// without a body or with one of declared length, without Expect or Upgrade, with a
// valid Host and valid header fields (else net/http's server takes the connection and
// answers, 400 for what it finds invalid).
func eligible(r *http.Request) bool {
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

// giveAway gives the connection, with the bytes read and not served, to
// ServeConnOpts.HandOver (net/http's server) for the rest of its life.
func (c *serverConn) giveAway(unserved []byte) {
	c.idle.Stop()
	if c.s.Drain != nil {
		c.s.Drain.Remove(c)
	}
	c.pc.Unread(unserved)
	c.br.Reset(nil)
	c.handOver(c.pc)
}

// refuse answers a request with status (400 for framing framingError refused, 431
// for a header over MaxHeaderBytes) and ends the connection: where the next request
// would start is not known, so nothing more is read as one. The write side is closed
// first and the input drained for a moment (bounded in time and bytes), so that the
// client reads the answer before a reset caused by its unread bytes can destroy it.
func (c *serverConn) refuse(status int, reason string) {
	c.idle.Stop()
	c.s.logInfo("Refusing request", "client", c.remote, "status", status, "reason", reason)
	c.bw.Write(refusal(status, reason))
	if c.bw.Flush() == nil && c.pc.CloseWrite() == nil {
		c.pc.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.CopyN(io.Discard, c.pc, lingerBytes) // best effort: the answer is out
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
func (c *serverConn) close() {
	c.idle.Stop()
	c.pc.Close()
}

// GoAway closes the connection when no request is being served, and otherwise after
// the response (Shutdown, and the idle timer).
func (c *serverConn) GoAway() {
	c.mu.Lock()
	c.closing = true
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		c.pc.Close()
	}
}

// run serves one request on a pooled goroutine and finishes its response.
func (c *serverConn) run(w *response) {
	keep := false
	defer func() {
		if v := recover(); v != nil {
			if err, _ := v.(error); !errors.Is(err, http.ErrAbortHandler) {
				c.s.logError(fmt.Errorf("%v", v), "Handler panicked", "client", c.remote)
			}
			// The response is incomplete: closing the connection tells the client.
			keep = false
		}
		c.mu.Lock()
		c.busy = false
		keep = keep && !c.closing
		c.mu.Unlock()
		if keep {
			c.idle.Reset(idleTimeout)
		} else {
			// Also wakes the connection's goroutine from its read.
			c.pc.Close()
		}
		c.done <- keep
	}()
	c.handler.ServeHTTP(w, w.req)
	keep = w.finish()
}

// headerLen waits until a whole request header is buffered and returns its length.
// The header ends at the first empty line, with CRLF or bare LF line ends (as
// net/textproto reads them). Once a header has begun and is not whole in what was
// read, the idle timer becomes the header timeout (Options.HeaderReadTimeout): a
// client sending its header byte by byte (slowloris) is disconnected when it ends.
// A header that arrives in one read, the common case, costs no timer change.
func (c *serverConn) headerLen() (int, error) {
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
			c.idle.Reset(c.s.HeaderReadTimeout)
			armed = true
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil && c.br.Buffered() == len(buf) {
			return 0, err
		}
	}
}
