// Package grpcwire is the one home of the gRPC over HTTP/2 wire contract that both
// planes speak by hand: status codes, the 5-byte length-prefixed message framing with a
// size limit, the call status from headers or trailers (trailers-only answers included),
// and the grpc-timeout header.
//
// Why by hand: the proxy does not link grpc-go (it would add several MB of resident
// memory against a 20 MB target), yet it makes gRPC calls (identity, destination) and
// classifies gRPC responses it forwards. Four copies of these rules had drifted apart
// (one read grpc-status "00" as an error, one read a trailers-only OK as a stream); the
// rules now live here, and the protocol document they follow is
// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
//
// It imports only the standard library so that every package of the proxy, the
// protocol packages included, may use it.
package grpcwire

import (
	"strconv"
)

// Code is a gRPC status code (the numbers are fixed by the gRPC specification and match
// google.golang.org/grpc/codes).
type Code uint32

const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated"}

// String is the code's name as grpc-go prints it, or "Code(n)" for a number outside the
// specification (a peer may send any number; it is kept, not clamped).
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// ParseCode reads a grpc-status value. The specification's grammar is 1*DIGIT, so "00"
// is OK (FuzzRecv found a copy that compared with "0" and took "00" for an error), and a
// sign, a space or a number beyond 32 bits is malformed: ok is false.
func ParseCode(v string) (Code, bool) {
	if v == "" {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return Code(n), true
}

// FromHTTPStatus maps the HTTP status of a response that carries no grpc-status to a
// gRPC code, as the specification's "HTTP to gRPC Status Code Mapping" table does.
func FromHTTPStatus(status int) Code {
	switch status {
	case 400:
		return Internal
	case 401:
		return Unauthenticated
	case 403:
		return PermissionDenied
	case 404:
		return Unimplemented
	case 429, 502, 503, 504:
		return Unavailable
	}
	return Unknown
}
