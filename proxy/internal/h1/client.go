package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http/httpguts"
)

// Client is a plain HTTP/1.1 client for the common case: a request without a body
// whose method may be repeated (GET, HEAD, OPTIONS, TRACE). It writes the request and
// reads the response on the caller's goroutine. http.Transport instead hands every
// request to a writer goroutine and every response over from a reader goroutine,
// which keeps reading idle connections; that costs several goroutine switches and an
// extra read system call per request, a large share of a proxy's work for small
// requests. Everything else (bodies, Upgrade, other methods) stays with
// http.Transport: see CanCarry.
//
// Connections are kept alive and pooled per address. Without a reader on idle
// connections, a connection the server closed while idle is only noticed when it is
// used; the request is then sent again on a new connection, which is safe because
// only repeatable requests without a body come here (http.Transport retries the same
// requests in the same case).
type Client struct {
	// Dial opens a connection to addr (the proxy counts it into its TCP metrics).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// IdleTimeout closes pooled connections unused for this long (Sweep, or when
	// taken from the pool).
	IdleTimeout time.Duration
	// MaxIdle bounds the pooled connections per address.
	MaxIdle int

	mu     sync.Mutex
	idle   map[string][]*clientConn
	closed bool
}

// clientConn is one pooled connection.
type clientConn struct {
	c        net.Conn
	lr       limitedReader
	br       *bufio.Reader
	bw       *bufio.Writer
	addr     string
	lastUsed time.Time
}

// maxResponseHeaderBytes bounds a response's header like http.Transport's default.
const maxResponseHeaderBytes = 10 << 20

// limitedReader limits how much the response header may take; the limit is lifted
// for the body.
type limitedReader struct {
	r io.Reader
	n int64
}

var errHeaderTooLarge = errors.New("response header too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// CanCarry says whether Client may carry r.
func CanCarry(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	// Upgrade (WebSocket and the like) needs http.Transport's 101 handling.
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	return len(r.Trailer) == 0 && r.URL.Scheme == "http"
}

func (h *Client) get(addr string) *clientConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		conns := h.idle[addr]
		if len(conns) == 0 {
			return nil
		}
		// Most recently used first: it is the least likely to have been closed.
		pc := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		h.idle[addr] = conns[:len(conns)-1]
		if h.IdleTimeout > 0 && time.Since(pc.lastUsed) > h.IdleTimeout {
			pc.c.Close()
			continue
		}
		return pc
	}
}

func (h *Client) put(pc *clientConn) {
	pc.lastUsed = time.Now()
	h.mu.Lock()
	if h.closed || len(h.idle[pc.addr]) >= h.MaxIdle {
		h.mu.Unlock()
		pc.c.Close()
		return
	}
	if h.idle == nil {
		h.idle = map[string][]*clientConn{}
	}
	h.idle[pc.addr] = append(h.idle[pc.addr], pc)
	h.mu.Unlock()
}

// Sweep closes the pooled connections unused for longer than the idle timeout and
// forgets addresses without any (endpoints that went away), and returns how many
// connections stay pooled. Without it, a connection is found expired only when its
// address is used again, which a departed endpoint never is.
func (h *Client) Sweep(now time.Time) int {
	var stale []*clientConn
	n := 0
	h.mu.Lock()
	for addr, conns := range h.idle {
		kept := conns[:0]
		for _, pc := range conns {
			if now.Sub(pc.lastUsed) > h.IdleTimeout {
				stale = append(stale, pc)
			} else {
				kept = append(kept, pc)
			}
		}
		clear(conns[len(kept):])
		if len(kept) == 0 {
			delete(h.idle, addr)
		} else {
			h.idle[addr] = kept
		}
		n += len(kept)
	}
	h.mu.Unlock()
	for _, pc := range stale {
		pc.c.Close()
	}
	return n
}

// Pooled is the number of pooled connections.
func (h *Client) Pooled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, cs := range h.idle {
		n += len(cs)
	}
	return n
}

// CloseIdle closes the pooled connections; with final, later ones are closed
// instead of pooled.
func (h *Client) CloseIdle(final bool) {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	h.closed = h.closed || final
	h.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			pc.c.Close()
		}
	}
}

func (h *Client) newConn(ctx context.Context, addr string) (*clientConn, error) {
	c, err := h.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &clientConn{c: c, addr: addr}
	pc.lr.r = c
	pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
	pc.bw = bufio.NewWriterSize(c, 4<<10)
	return pc, nil
}

// RoundTrip sends r, which CanCarry accepted.
func (h *Client) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	addr := r.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "80")
	}
	for {
		pc := h.get(addr)
		reused := pc != nil
		if !reused {
			var err error
			if pc, err = h.newConn(ctx, addr); err != nil {
				return nil, err
			}
		}
		resp, err := h.roundTrip(ctx, pc, r)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A pooled connection the server closed while idle fails before any byte of
		// a response arrives; send the request again on a new connection.
		var stale *staleConnError
		if reused && errors.As(err, &stale) {
			continue
		}
		return nil, err
	}
}

// staleConnError is a failure on a reused connection before any response byte.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

func (h *Client) roundTrip(ctx context.Context, pc *clientConn, r *http.Request) (*http.Response, error) {
	// Cancelling the request's context interrupts blocked reads and writes, also
	// while the caller reads the body; stop is called when the body is done.
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		return nil, err
	}
	if !writeRequestHead(pc.bw, r) {
		if err := r.Write(pc.bw); err != nil {
			return fail(&staleConnError{fmt.Errorf("write request: %w", err)})
		}
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(&staleConnError{fmt.Errorf("write request: %w", err)})
	}
	num1xx := 0
	for {
		pc.lr.n = maxResponseHeaderBytes
		if _, err := pc.br.Peek(1); err != nil {
			return fail(&staleConnError{fmt.Errorf("read response: %w", err)})
		}
		resp, err := http.ReadResponse(pc.br, r)
		if err != nil {
			return fail(fmt.Errorf("read response: %w", err))
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// Informational responses go to the trace (ReverseProxy forwards them)
			// and the final response follows.
			num1xx++
			if num1xx > httpmsg.Max1xxResponses {
				return fail(errors.New("too many 1xx informational responses"))
			}
			if err := httpmsg.PassInterim(ctx, resp.StatusCode, resp.Header); err != nil {
				return fail(err)
			}
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("unexpected 101 response to a request without Upgrade"))
		}
		pc.lr.n = math.MaxInt64
		keep := !resp.Close && !r.Close
		if resp.Body == http.NoBody {
			h.finish(pc, stop, keep)
			return resp, nil
		}
		resp.Body = &responseBody{rc: resp.Body, ctx: ctx, h: h, pc: pc, stop: stop, keep: keep}
		return resp, nil
	}
}

// finish returns pc to the pool or closes it once its response is complete.
func (h *Client) finish(pc *clientConn, stop func() bool, keep bool) {
	if !stop() {
		// The context was cancelled meanwhile and the deadline may be set.
		keep = false
	}
	if keep && pc.br.Buffered() == 0 {
		h.put(pc)
		return
	}
	// Bytes after the response (a misbehaving server) or no keep-alive.
	pc.c.Close()
}

// responseBody releases the connection when the body has been read to the end, and closes
// it when the reader gives up early (like http.Transport).
// Read is called by one goroutine at a time; Close may come from another one to
// abort a blocked Read.
type responseBody struct {
	rc   io.ReadCloser
	ctx  context.Context
	h    *Client
	pc   *clientConn
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		if b.done.CompareAndSwap(false, true) {
			b.h.finish(b.pc, b.stop, b.keep)
		}
	} else if err != nil {
		b.abort()
		if b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.abort()
	return nil
}

func (b *responseBody) abort() {
	if b.done.CompareAndSwap(false, true) {
		b.stop()
		b.pc.c.Close()
	}
}

var errBodyClosed = errors.New("read on closed response body")

// writeRequestHead writes the head of a request Client carries (no body) as
// Request.Write would, without its formatting and body machinery. It returns false,
// having written nothing, when r needs Request.Write: a host to convert or clean up,
// or control characters in the target (which Request.Write refuses).
func writeRequestHead(bw *bufio.Writer, r *http.Request) bool {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= utf8.RuneSelf || c == '%' {
			return false // punycode, or an IPv6 zone to remove
		}
	}
	target := r.URL.RequestURI()
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	if !httpguts.ValidHostHeader(host) {
		return false
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	ua := "Go-http-client/1.1"
	if vs, ok := r.Header["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			ua = vs[0]
		}
	}
	if ua != "" {
		writeField(bw, "User-Agent", ua)
	}
	writeFields(bw, r.Header, requestHeadSkip)
	bw.WriteString("\r\n")
	return true
}

// requestHeadSkip are the fields writeRequestHead writes itself or never.
var requestHeadSkip = map[string]bool{"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true}
