// Package detect finds out what protocol a client speaks from its first bytes.
//
// Detection only reads; the bytes read are kept and replayed by Conn, so whatever
// handles the connection afterwards sees the stream from its first byte.
package detect

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// Kind is a detected protocol.
type Kind uint8

const (
	// Opaque is anything not recognised: forwarded as TCP.
	Opaque Kind = iota
	// HTTP1 is an HTTP/1.x request line.
	HTTP1
	// HTTP2 is the HTTP/2 prior-knowledge connection preface (h2c, gRPC without TLS).
	HTTP2
	// TLS is a TLS ClientHello; Result.ALPN and Result.SNI say more.
	TLS
)

func (k Kind) String() string {
	switch k {
	case HTTP1:
		return "http1"
	case HTTP2:
		return "http2"
	case TLS:
		return "tls"
	}
	return "opaque"
}

// Result is what detection found.
type Result struct {
	Kind     Kind
	TimedOut bool     // no decision before the deadline: Kind is Opaque
	ALPN     []string // TLS only: the ClientHello's ALPN protocols
	SNI      string   // TLS only: the ClientHello's server name
}

// MaxPeek bounds how many bytes detection buffers. A TLS ClientHello with a
// post-quantum key share is ~1.8 KiB; 16 KiB is a full TLS record.
const MaxPeek = 16*1024 + 5

// Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Classify decides what buf is. done is false when more bytes are needed to decide.
// It is a pure function of the bytes, so it is fuzzed directly.
func Classify(buf []byte) (r Result, done bool) {
	if len(buf) == 0 {
		return Result{}, false
	}
	// TLS record: handshake(22), legacy version 3.x (RFC 8446 §5.1).
	if buf[0] == 0x16 {
		if len(buf) < 3 {
			return Result{}, false
		}
		if buf[1] != 0x03 {
			return Result{Kind: Opaque}, true
		}
		hello, complete, ok := parseClientHello(buf)
		if !ok {
			return Result{Kind: Opaque}, true
		}
		if !complete {
			if len(buf) >= MaxPeek {
				return Result{Kind: TLS}, true
			}
			return Result{}, false
		}
		return Result{Kind: TLS, ALPN: hello.alpn, SNI: hello.sni}, true
	}
	// HTTP/2 preface. Checked before HTTP/1 because it also looks like a request line.
	n := min(len(buf), len(Preface))
	if string(buf[:n]) == Preface[:n] {
		if n == len(Preface) {
			return Result{Kind: HTTP2}, true
		}
		return Result{}, false
	}
	return classifyHTTP1(buf)
}

// classifyHTTP1 recognises "METHOD SP request-target SP HTTP/1.x CRLF"
// (RFC 9112 §3). The method must be a token; the request line must end with the
// version. A long request line that has not ended within MaxPeek bytes is accepted as
// HTTP/1 when everything seen so far fits the grammar.
func classifyHTTP1(buf []byte) (Result, bool) {
	i := 0
	for ; i < len(buf) && i < 32; i++ {
		c := buf[i]
		if c == ' ' {
			break
		}
		if !isTokenChar(c) {
			return Result{Kind: Opaque}, true
		}
	}
	if i == 32 || (i < len(buf) && i == 0) {
		return Result{Kind: Opaque}, true
	}
	if i == len(buf) {
		return Result{}, false
	}
	// buf[i] == ' ': the target runs to the next space.
	rest := buf[i+1:]
	eol := bytes.IndexByte(rest, '\n')
	if eol < 0 {
		if bytes.IndexByte(rest, '\r') >= 0 && bytes.IndexByte(rest, '\r') != len(rest)-1 {
			return Result{Kind: Opaque}, true
		}
		if len(buf) >= MaxPeek {
			return Result{Kind: HTTP1}, true
		}
		return Result{}, false
	}
	line := bytes.TrimSuffix(rest[:eol], []byte("\r"))
	sp := bytes.LastIndexByte(line, ' ')
	if sp <= 0 {
		return Result{Kind: Opaque}, true
	}
	v := line[sp+1:]
	if len(v) == 8 && string(v[:7]) == "HTTP/1." && v[7] >= '0' && v[7] <= '9' {
		return Result{Kind: HTTP1}, true
	}
	return Result{Kind: Opaque}, true
}

// isTokenChar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Detect reads from c until Classify decides or the timeout passes. It returns the
// result and a Conn that replays the bytes read. A timeout yields Opaque with
// TimedOut set; a read error (EOF before any decision) is returned with the bytes read
// so far still replayable.
func Detect(c net.Conn, timeout time.Duration) (Result, *Conn, error) {
	pc := &Conn{Conn: c}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Result{}, pc, err
	}
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), MaxPeek))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		pc.peeked = buf
		if n > 0 {
			if r, done := Classify(buf); done {
				return r, pc, nil
			}
			if len(buf) >= MaxPeek {
				return Result{Kind: Opaque}, pc, nil
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Result{Kind: Opaque, TimedOut: true}, pc, nil
			}
			return Result{Kind: Opaque}, pc, err
		}
	}
}

// Conn replays the bytes read during detection before reading from the connection.
type Conn struct {
	net.Conn
	peeked []byte
}

// Peeked returns the bytes read during detection that have not been consumed yet.
func (c *Conn) Peeked() []byte { return c.peeked }

// TakePeeked returns the unconsumed detection bytes and forgets them, for callers that
// forward them themselves and then read from the underlying connection.
func (c *Conn) TakePeeked() []byte {
	p := c.peeked
	c.peeked = nil
	return p
}

// Unread puts p back before the bytes still to be read, for a reader that read
// ahead and hands the connection on.
func (c *Conn) Unread(p []byte) {
	if len(p) > 0 {
		c.peeked = append(append(make([]byte, 0, len(p)+len(c.peeked)), p...), c.peeked...)
	}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		if len(c.peeked) == 0 {
			c.peeked = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}
