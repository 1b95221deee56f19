package grpcwire

import (
	"net/http"
	"strconv"
	"strings"
)

// Status is the status a call ended with. It is an error, so a non-OK status travels as
// one; Err turns an OK status into a nil error.
type Status struct {
	Code    Code
	Message string
}

func (s *Status) Error() string {
	return "rpc error: code = " + s.Code.String() + " desc = " + s.Message
}

// Err is nil for OK and s otherwise.
func (s *Status) Err() error {
	if s == nil || s.Code == OK {
		return nil
	}
	return s
}

// Header names as http.Header canonicalises them.
const (
	HeaderStatus  = "Grpc-Status"
	HeaderMessage = "Grpc-Message"
	HeaderTimeout = "Grpc-Timeout"
)

// maxQuotedStatus is how much of a malformed grpc-status a Status's message repeats.
const maxQuotedStatus = 32

// StatusFromHeader reads grpc-status and grpc-message from one header block (the
// trailers, or the headers of a trailers-only answer). ok is false when the block has
// no grpc-status; a malformed one is an Unknown status that says so, never OK.
func StatusFromHeader(h http.Header) (st *Status, ok bool) {
	v := h.Get(HeaderStatus)
	if v == "" {
		return nil, false
	}
	c, valid := ParseCode(v)
	if !valid {
		// At most maxQuotedStatus bytes of it: the value is the peer's, and quoting
		// can make each byte four (found by FuzzRecv with a 29 KB grpc-status).
		if len(v) > maxQuotedStatus {
			v = v[:maxQuotedStatus] + "..."
		}
		return &Status{Code: Unknown, Message: "malformed grpc-status " + strconv.Quote(v)}, true
	}
	return &Status{Code: c, Message: DecodeMessage(h.Get(HeaderMessage))}, true
}

// ResponseStatus is the status of a finished response: its trailers, or, for a
// trailers-only answer (the call ended in its only HEADERS frame), its headers. The
// trailers are complete only once the body was read to EOF. ok is false when neither
// carries a grpc-status.
func ResponseStatus(resp *http.Response) (st *Status, ok bool) {
	if st, ok := StatusFromHeader(resp.Trailer); ok {
		return st, true
	}
	return StatusFromHeader(resp.Header)
}

// SetTrailersOnly makes h the header block of a trailers-only answer ending the call
// with code and msg: the caller writes HTTP 200 with it and no body.
func SetTrailersOnly(h http.Header, code Code, msg string) {
	h.Set("Content-Type", "application/grpc")
	h.Set(HeaderStatus, strconv.FormatUint(uint64(code), 10))
	h.Set(HeaderMessage, EncodeMessage(msg))
}

// DecodeMessage undoes grpc-message's percent-encoding. A malformed escape is kept as
// it is: the message is for humans, and a peer's mistake must not hide it.
func DecodeMessage(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) {
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, v[i])
	}
	return string(b)
}

// EncodeMessage percent-encodes a grpc-message value: every byte outside printable
// ASCII (0x20-0x7E), and '%' itself, as the specification requires, so that any UTF-8
// text survives an HTTP/2 header field.
func EncodeMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	need := false
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return msg
	}
	b := make([]byte, 0, len(msg)+8)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
