package discovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
)

// The destination service's one call, weft.destination.v1.Destination/Get
// (proxy/api/apigrpc/destination_service.proto), made over Go's HTTP/2 client as the gRPC
// over HTTP/2 protocol specifies it: a POST with content-type application/grpc, one
// length-prefixed request message, a stream of length-prefixed answers, and the call's
// status in the grpc-status / grpc-message trailers (or in the headers of a
// trailers-only answer).
//
// Why not grpc-go: linking it makes weft-proxy's resident memory grow by several MB
// (code, tables, and its goroutines), past the proxy's 20 MB target, for one
// server-streaming call whose framing fits in a page. The server is grpc-go
// (internal/destination) and the tests talk to a grpc-go server, which keeps the two in
// step.
const getPath = "/weft.destination.v1.Destination/Get"

// maxMessage bounds one answer: a destination with thousands of endpoints is a large
// message, a corrupt length must not make the proxy allocate gigabytes.
const maxMessage = 64 << 20

// gRPC status codes the client distinguishes (google.golang.org/grpc/codes).
const (
	codeOK               = 0
	codeUnknown          = 2
	codeInvalidArgument  = 3
	codePermissionDenied = 7
	codeInternal         = 13
	codeUnimplemented    = 12
	codeUnavailable      = 14
	codeUnauthenticated  = 16
)

var codeNames = map[int]string{0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
	5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted", 9: "FailedPrecondition",
	10: "Aborted", 11: "OutOfRange", 12: "Unimplemented", 13: "Internal", 14: "Unavailable", 15: "DataLoss",
	16: "Unauthenticated"}

// StatusError is a gRPC status the destination service (or the HTTP layer on its
// behalf) ended a call with.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	name := codeNames[e.Code]
	if name == "" {
		name = "code " + strconv.Itoa(e.Code)
	}
	return fmt.Sprintf("rpc error: code = %s desc = %s", name, e.Message)
}

// statusCode is the gRPC code of err: Unknown for errors that carry none (transport
// failures), OK for nil.
func statusCode(err error) int {
	if err == nil {
		return codeOK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return codeUnknown
}

// newTransport makes the HTTP/2 client every stream shares. Its connection pool dials
// one connection to the service (concurrent first requests wait for the same dial) and
// replaces it when it breaks; each dial is a new TLS handshake, which presents the
// certificate the identity store holds at that moment.
func newTransport(opts Options) *http2.Transport {
	cfg := clientTLS(opts.Identity, opts.ServerName)
	cfg.NextProtos = []string{"h2"}
	t := &http2.Transport{
		TLSClientConfig: cfg,
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			// A handshake may take a moment on a loaded node, but an unreachable
			// service must fail the attempt so that the stream's backoff applies.
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return dialTLS(ctx, network, addr, cfg)
		},
		// The message size, not a header list, is what grows with a destination.
		MaxHeaderListSize: 1 << 20,
		// Once the application stopped using every destination, the connection
		// (and its pings) need not stay.
		IdleConnTimeout: 5 * time.Minute,
	}
	if opts.KeepaliveInterval > 0 {
		// A ping after KeepaliveInterval without a frame from the server; the
		// connection is closed (and its streams fail, and resubscribe) when the ping
		// goes unanswered for KeepaliveTimeout.
		t.ReadIdleTimeout = opts.KeepaliveInterval
		t.PingTimeout = opts.KeepaliveTimeout
	}
	return t
}

// getStream is one open Get call.
type getStream struct {
	resp *http.Response
	r    *bufio.Reader
	hdr  [5]byte
	buf  []byte
}

// openGet starts a Get call for req. The returned stream's Recv yields the answers; it
// is closed by cancelling ctx or by Close.
func openGet(ctx context.Context, t http.RoundTripper, addr string, req *api.GetDestination) (*getStream, error) {
	msg, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg))) // body[0] = 0: not compressed
	body = append(body, msg...)
	u := url.URL{Scheme: "https", Host: addr, Path: getPath}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/grpc")
	hr.Header.Set("Te", "trailers")
	hr.Header.Set("User-Agent", "weft-proxy")
	resp, err := t.RoundTrip(hr)
	if err != nil {
		// Not connected, refused, handshake failed: the service is unavailable to us.
		return nil, &StatusError{Code: codeUnavailable, Message: err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &StatusError{Code: httpStatusCode(resp.StatusCode), Message: "HTTP status " + strconv.Itoa(resp.StatusCode)}
	}
	// A trailers-only answer: the call ended before any message. Even with status OK
	// that is no stream to follow (returning none with a nil error crashed the caller).
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		resp.Body.Close()
		if err := parseStatus(s, resp.Header.Get("Grpc-Message")); err != nil {
			return nil, err
		}
		return nil, &StatusError{Code: codeInternal, Message: "the destination service ended the call before any answer"}
	}
	return &getStream{resp: resp, r: bufio.NewReaderSize(resp.Body, 4096)}, nil
}

// Recv reads the next answer. At the end of the stream it returns the call's status as
// a *StatusError, or io.EOF when the server ended it with OK.
func (s *getStream) Recv() (*api.DestinationUpdate, error) {
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, s.status()
		}
		return nil, s.readErr(err)
	}
	if s.hdr[0] != 0 {
		// No grpc-accept-encoding was sent, so the server may not compress.
		return nil, &StatusError{Code: codeInternal, Message: "compressed message from the destination service"}
	}
	n := binary.BigEndian.Uint32(s.hdr[1:])
	if n > maxMessage {
		return nil, &StatusError{Code: codeInternal, Message: fmt.Sprintf("message of %d bytes exceeds %d", n, maxMessage)}
	}
	b, err := readMessage(s.r, int(n), s.buf)
	s.buf = b
	if err != nil {
		return nil, s.readErr(err)
	}
	u := &api.DestinationUpdate{}
	if err := proto.Unmarshal(b, u); err != nil {
		return nil, &StatusError{Code: codeInternal, Message: fmt.Sprintf("decode answer: %v", err)}
	}
	// A large snapshot's buffer is not kept for the stream's lifetime.
	if cap(s.buf) > 64<<10 {
		s.buf = nil
	}
	return u, nil
}

// readMessage reads an n-byte message into buf's storage, or into storage that grows
// (doubling, from 64 KiB) as the bytes arrive: a length prefix alone, which may claim
// up to maxMessage, does not cost its size in memory before the bytes exist. Memory
// stays within twice what was received, plus 64 KiB.
func readMessage(r io.Reader, n int, buf []byte) ([]byte, error) {
	if cap(buf) >= n {
		b := buf[:n]
		_, err := io.ReadFull(r, b)
		return b, err
	}
	const step = 64 << 10
	b := buf[:0]
	for len(b) < n {
		want := min(n-len(b), max(len(b), step))
		b = slices.Grow(b, want)
		m, err := io.ReadFull(r, b[len(b):len(b)+want])
		b = b[:len(b)+m]
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// status is the call's end: the trailers are readable once the body is at EOF.
func (s *getStream) status() error {
	code := s.resp.Trailer.Get("Grpc-Status")
	if code == "" {
		return &StatusError{Code: codeInternal, Message: "stream ended without grpc-status"}
	}
	// parseStatus, not a comparison with "0": "00" is OK too, and Recv must never
	// return neither an update nor an error (found by FuzzRecv).
	if err := parseStatus(code, s.resp.Trailer.Get("Grpc-Message")); err != nil {
		return err
	}
	return io.EOF
}

// readErr wraps a failure to read the body: the connection broke, the stream was reset,
// or the caller cancelled.
func (s *getStream) readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &StatusError{Code: codeInternal, Message: "stream ended inside a message"}
	}
	return &StatusError{Code: codeUnavailable, Message: err.Error()}
}

func (s *getStream) Close() { s.resp.Body.Close() }

func parseStatus(code, message string) error {
	n, err := strconv.Atoi(code)
	if err != nil {
		return &StatusError{Code: codeUnknown, Message: fmt.Sprintf("malformed grpc-status %q", code)}
	}
	if m, err := url.PathUnescape(message); err == nil {
		message = m
	}
	if n == codeOK {
		return nil
	}
	return &StatusError{Code: n, Message: message}
}

// httpStatusCode maps an HTTP status without a gRPC status to a gRPC code, as the gRPC
// over HTTP/2 specification does.
func httpStatusCode(h int) int {
	switch h {
	case http.StatusBadRequest:
		return codeInternal
	case http.StatusUnauthorized:
		return codeUnauthenticated
	case http.StatusForbidden:
		return codePermissionDenied
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codeUnavailable
	}
	return codeUnknown
}
