package h1

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/weftmesh/weft/proxy/internal/httpmsg"
)

// HTTP/1.1 message framing is where request smuggling lives: two parties that read a
// request's length differently disagree on where the next request starts. The proxy
// therefore ends a connection at the first request whose body framing is malformed or
// ambiguous, so that nothing after it on that connection is ever taken for a request:
//
//   - every HTTP/1.1 connection the proxy serves (app-facing ports and weft.h1) starts
//     in Weft's HTTP/1.1 server, which reads each request header whole (up to
//     MaxHeaderBytes) and checks it with framingError before anything is forwarded
//     (400 and close);
//   - a request it does not serve itself (chunked, Expect, Upgrade, HTTP/1.0) goes,
//     checked, to net/http's server with the connection, for that one request: its
//     response says Connection: close (Guard). net/http removes Content-Length when
//     Transfer-Encoding is present, so a header it read alone could not be checked;
//     none is;
//   - such a request gets its body wrapped in a GuardedBody: a body that fails (a bad
//     chunk size, chunk data longer than declared, a cut) is answered 400 when nothing
//     was answered yet, and the connection ends either way (net/http would otherwise
//     keep it: EnableFullDuplex skips its close-after-a-corrupt-body check).

// framingError checks the raw header of a request (request line to the empty line)
// for framing that RFC 9112 forbids or calls ambiguous, and says what is wrong, or "":
//   - a field line folded onto the next (obs-fold): §5.2 lets a server reject it with
//     400, and a folded Transfer-Encoding is read by some servers and not by others;
//   - Transfer-Encoding together with Content-Length: §6.1 says the connection must be
//     closed, §6.3 calls it a likely smuggling attempt;
//   - Transfer-Encoding in an HTTP/1.0 request: §6.1 says to treat the framing as
//     faulty.
func framingError(hdr []byte) string {
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

// refusal is the answer to a request the proxy will not read on (see refuse): the
// status with Weft-Proxy-Error saying why, and Connection: close.
func refusal(status int, reason string) []byte {
	fix := "send a single, well-formed message framing (RFC 9112 §6)"
	if status == http.StatusRequestHeaderFieldsTooLarge {
		fix = "send fewer or smaller header fields"
	}
	body := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason + "; " + fix + "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		httpmsg.HeaderProxyError + ": " + reason + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// GuardedBody wraps the body of an HTTP/1.x request net/http's server read, and notes how
// it ended.
type GuardedBody struct {
	rc    io.ReadCloser
	state atomic.Int32 // bodyOpen, bodyEOF or bodyFailed
	err   atomic.Pointer[error]
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyFailed
)

func (b *GuardedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.state.CompareAndSwap(bodyOpen, bodyEOF)
	} else if err != nil && b.state.CompareAndSwap(bodyOpen, bodyFailed) {
		b.err.Store(&err)
	}
	return n, err
}

func (b *GuardedBody) Close() error { return b.rc.Close() }

// Ended says whether the body was read to its end without error.
func (b *GuardedBody) Ended() bool { return b.state.Load() == bodyEOF }

// Failed is the error that ended the body, or nil.
func (b *GuardedBody) Failed() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// BodyOf is r's GuardedBody, or nil.
func BodyOf(r *http.Request) *GuardedBody {
	b, _ := r.Body.(*GuardedBody)
	return b
}

// ErrMalformedBody marks a request that failed because its own body did.
var ErrMalformedBody = errors.New("malformed request body")

// Guard prepares an HTTP/1.x request that net/http's server read (see the top of
// this file): its body is wrapped, and its response ends the connection (for an
// Upgrade, a response other than 101: the pipeline closes the others). checked
// returns the note of r's connection that Server checked this request's header whole
// before it handed the connection over; Guard takes the note (one request per note),
// and asks for it only for a request net/http read. A request whose header Weft's
// server did not check first is refused: no path should lead there, and net/http
// alone cannot tell an ambiguous framing.
func Guard(w http.ResponseWriter, r *http.Request, checked func(*http.Request) *atomic.Bool) bool {
	if ServedHere(w) {
		return true // Weft's HTTP/1.1 server checked the header and frames by length
	}
	if !IsUpgrade(r) {
		// A 101 response must not carry it: the connection lives on as the
		// upgraded protocol.
		w.Header()["Connection"] = []string{"close"}
	}
	if !checked(r).Swap(false) {
		w.Header()["Connection"] = []string{"close"}
		w.Header().Set(httpmsg.HeaderProxyError, "request header not checked")
		w.WriteHeader(http.StatusBadRequest)
		return false
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &GuardedBody{rc: r.Body}
	}
	return true
}

// ServedHere reports whether w is the ResponseWriter of Weft's HTTP/1.1 server, which
// read and checked the request itself, rather than net/http's.
func ServedHere(w http.ResponseWriter) bool {
	_, weft := w.(*response)
	return weft
}

// CloseUnlessBodyEnded adds Connection: close to a response whose request body has
// not ended cleanly: the rest of it cannot be told from a next request without reading
// it, and it may be malformed. Called before the response head is written.
func CloseUnlessBodyEnded(w http.ResponseWriter, r *http.Request) {
	if b := BodyOf(r); b != nil && !b.Ended() {
		w.Header()["Connection"] = []string{"close"}
	}
}

// IsUpgrade says whether r asks to switch protocols (RFC 9110 §7.8): only an
// HTTP/1.x request can.
func IsUpgrade(r *http.Request) bool {
	_, ok := r.Header["Upgrade"]
	return ok && r.ProtoMajor == 1
}
