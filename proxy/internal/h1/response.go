package h1

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"golang.org/x/net/http/httpguts"
)

// requestBody is a request body of declared length read from the connection. It tells
// the connection's goroutine when it has ended (read to its end, failed or closed),
// so that the goroutine only then reads the connection again.
type requestBody struct {
	rc     io.ReadCloser // http.ReadRequest's body; never closed: that reads it to its end
	remain atomic.Int64  // bytes of the declared length not read yet
	closed atomic.Bool
	done   chan struct{}
	once   sync.Once
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if b.remain.Add(-int64(n)) == 0 || err != nil {
		b.end()
	}
	return n, err
}

func (b *requestBody) Close() error {
	b.closed.Store(true)
	b.end()
	return nil
}

func (b *requestBody) end() { b.once.Do(func() { close(b.done) }) }

// response is the http.ResponseWriter of one request on an serverConn. The head
// is written with the first body bytes, a flush or the end, so that a response
// without a body gets Content-Length: 0; a body of unknown length is chunked.
type response struct {
	c        *serverConn
	req      *http.Request
	header   http.Header
	status   int          // the final status; 0 until WriteHeader
	wrote    bool         // the head is written
	chunked  bool         // the body is chunked (it may carry trailers)
	noBody   bool         // HEAD, 204, 304
	remain   int64        // what a declared Content-Length still expects; -1 without one
	close    bool         // the connection ends after this response
	body     *requestBody // the request's, when it has one
	declared http.Header
	err      error
	// ctx is the request's context: it carries w as the request's InterimSender
	// without an allocation of its own.
	ctx httpmsg.SenderContext
}

func (w *response) Header() http.Header { return w.header }

// RunTask runs the handler of w's request (the server's Run calls it).
func (w *response) RunTask() { w.c.run(w) }

func (w *response) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.SendInterim(code, w.header)
		return
	}
	w.status = code
}

// SendInterim sends an informational response (103 Early Hints, a backend's 100
// Continue) at once.
func (w *response) SendInterim(code int, h http.Header) {
	if w.err == nil {
		w.writeStatusAndFields(code, h)
		w.c.bw.WriteString("\r\n")
		w.noteErr(w.c.bw.Flush())
	}
}

func (w *response) Write(p []byte) (int, error) {
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
func (w *response) FlushError() error {
	w.head(false)
	if w.err == nil {
		w.noteErr(w.c.bw.Flush())
	}
	return w.err
}

func (w *response) Flush() { _ = w.FlushError() }

// finish ends the response after the handler returned: the head if it has not gone
// out, the last chunk and trailers, one flush. It says whether the connection may
// serve another request.
func (w *response) finish() bool {
	w.head(true)
	bw := w.c.bw
	if w.chunked && w.err == nil {
		bw.WriteString("0\r\n")
		writeFields(bw, httpmsg.TrailerFields(w.declared, w.header), nil)
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
func (w *response) noteErr(err error) bool {
	if err != nil && w.err == nil {
		w.err = err
		w.close = true
	}
	return err != nil
}

// head writes the status line and header fields once, choosing the framing: the
// declared Content-Length, else chunked, else (ended with nothing written)
// Content-Length: 0.
func (w *response) head(ended bool) {
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
	if _, ok := h["Content-Length"]; ok && httpmsg.ContentLength(h) < 0 {
		delete(h, "Content-Length") // not a length: frame the body ourselves
	}
	// Without a body (HEAD, 204, 304), Content-Length describes the body a GET would
	// have had and stays as it is.
	if !w.noBody {
		if w.remain = httpmsg.ContentLength(h); w.remain < 0 && ended {
			w.remain = 0
			h["Content-Length"] = []string{"0"}
		} else if w.remain < 0 {
			w.chunked = true
			w.declared = httpmsg.DeclaredTrailers(h)
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
func (w *response) writeStatusAndFields(code int, h http.Header) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	writeFields(bw, h, nil)
}
