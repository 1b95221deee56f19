package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
)

// HTTP/1.1 message framing is where request smuggling lives: two parties that read a
// request's length differently disagree on where the next request starts. The proxy
// therefore ends a connection at the first request whose body framing is malformed or
// ambiguous, so that nothing after it on that connection is ever taken for a request:
//
//   - every HTTP/1.1 connection the proxy serves (app-facing ports and weft.h1) starts
//     in Weft's HTTP/1.1 server, which reads each request header whole (up to
//     MaxHeaderBytes) and checks it with h1FramingError before anything is forwarded
//     (400 and close);
//   - a request it does not serve itself (chunked, Expect, Upgrade, HTTP/1.0) goes,
//     checked, to net/http's server with the connection, for that one request: its
//     response says Connection: close (h1Guard). net/http removes Content-Length when
//     Transfer-Encoding is present, so a header it read alone could not be checked;
//     none is;
//   - such a request gets its body wrapped in a guardedBody: a body that fails (a bad
//     chunk size, chunk data longer than declared, a cut) is answered 400 when nothing
//     was answered yet, and the connection ends either way (net/http would otherwise
//     keep it: EnableFullDuplex skips its close-after-a-corrupt-body check).

// h1FramingError checks the raw header of a request (request line to the empty line)
// for framing that RFC 9112 forbids or calls ambiguous, and says what is wrong, or "":
//   - a field line folded onto the next (obs-fold): §5.2 lets a server reject it with
//     400, and a folded Transfer-Encoding is read by some servers and not by others;
//   - Transfer-Encoding together with Content-Length: §6.1 says the connection must be
//     closed, §6.3 calls it a likely smuggling attempt;
//   - Transfer-Encoding in an HTTP/1.0 request: §6.1 says to treat the framing as
//     faulty.
func h1FramingError(hdr []byte) string {
	line, rest, _ := bytes.Cut(hdr, []byte{'\n'})
	http10 := bytes.HasSuffix(bytes.TrimSuffix(line, []byte{'\r'}), []byte("HTTP/1.0"))
	var te, cl bool
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 || line[0] == '\r' {
			break // the empty line ends the header
		}
		switch line[0] {
		case ' ', '\t':
			return "obsolete line folding in the request header"
		case 't', 'T':
			te = te || fieldIs(line, "transfer-encoding")
		case 'c', 'C':
			cl = cl || fieldIs(line, "content-length")
		}
	}
	switch {
	case te && cl:
		return "request has both Transfer-Encoding and Content-Length"
	case te && http10:
		return "Transfer-Encoding in an HTTP/1.0 request"
	}
	return ""
}

// fieldIs says whether a field line's name is name (lower case), compared without
// regard to case. A name followed by whitespace before the colon is not a match; the
// HTTP server refuses such a line with 400 (RFC 9112 §5.1).
func fieldIs(line []byte, name string) bool {
	return len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name))
}

// h1Refusal is the answer to a request the proxy will not read on (see refuse): the
// status with Weft-Proxy-Error saying why, and Connection: close.
func h1Refusal(status int, reason string) []byte {
	fix := "send a single, well-formed message framing (RFC 9112 §6)"
	if status == http.StatusRequestHeaderFieldsTooLarge {
		fix = "send fewer or smaller header fields"
	}
	body := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason + "; " + fix + "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		hdrError + ": " + reason + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// guardedBody wraps the body of an HTTP/1.x request net/http's server read, and notes how
// it ended.
type guardedBody struct {
	rc    io.ReadCloser
	state atomic.Int32 // bodyOpen, bodyEOF or bodyFailed
	err   atomic.Pointer[error]
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyFailed
)

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.state.CompareAndSwap(bodyOpen, bodyEOF)
	} else if err != nil && b.state.CompareAndSwap(bodyOpen, bodyFailed) {
		b.err.Store(&err)
	}
	return n, err
}

func (b *guardedBody) Close() error { return b.rc.Close() }

// failed is the error that ended the body, or nil.
func (b *guardedBody) failed() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// bodyOf is r's guardedBody, or nil.
func bodyOf(r *http.Request) *guardedBody {
	b, _ := r.Body.(*guardedBody)
	return b
}

// errMalformedBody marks a request that failed because its own body did.
var errMalformedBody = errors.New("malformed request body")

// h1Guard prepares an HTTP/1.x request that net/http's server read (see the top of
// this file): its body is wrapped, and its response ends the connection (for an
// Upgrade, a response other than 101: see newRouter and proxyError). A request
// whose header Weft's server did not check first is refused: no path should lead
// there, and net/http alone cannot tell an ambiguous framing.
func h1Guard(w http.ResponseWriter, r *http.Request) bool {
	if _, weft := w.(*h1Response); weft {
		return true // Weft's HTTP/1.1 server checked the header and frames by length
	}
	if !isUpgrade(r) {
		// A 101 response must not carry it: the connection lives on as the
		// upgraded protocol.
		w.Header()["Connection"] = []string{"close"}
	}
	if !infoFrom(r.Context()).h1Checked.Swap(false) {
		w.Header()["Connection"] = []string{"close"}
		w.Header().Set(hdrError, "request header not checked")
		w.WriteHeader(http.StatusBadRequest)
		return false
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &guardedBody{rc: r.Body}
	}
	return true
}

// closeUnlessBodyEnded adds Connection: close to a response whose request body has
// not ended cleanly: the rest of it cannot be told from a next request without reading
// it, and it may be malformed. Called before the response head is written.
func closeUnlessBodyEnded(w http.ResponseWriter, r *http.Request) {
	if b := bodyOf(r); b != nil && b.state.Load() != bodyEOF {
		w.Header()["Connection"] = []string{"close"}
	}
}
