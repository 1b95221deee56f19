package discovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/grpcwire"
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

// StatusError is a gRPC status the destination service (or the HTTP layer on its
// behalf) ended a call with.
type StatusError = grpcwire.Status

// statusCode is the gRPC code of err: Unknown for errors that carry none (transport
// failures), OK for nil.
func statusCode(err error) grpcwire.Code {
	if err == nil {
		return grpcwire.OK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return grpcwire.Unknown
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

// call is one open server-streaming call (Destination/Get, InboundPolicies/Watch).
type call struct {
	resp *http.Response
	r    *grpcwire.Reader
}

// openCall starts a server-streaming call of path with req. max bounds each answer.
// The returned call's next reads the answers; it is closed by cancelling ctx or by
// close.
func openCall(ctx context.Context, t http.RoundTripper, addr, path string, req proto.Message, max int) (*call, error) {
	msg, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	body := grpcwire.AppendFrame(nil, msg)
	u := url.URL{Scheme: "https", Host: addr, Path: path}
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
		return nil, &StatusError{Code: grpcwire.Unavailable, Message: err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &StatusError{Code: grpcwire.FromHTTPStatus(resp.StatusCode), Message: "HTTP status " + strconv.Itoa(resp.StatusCode)}
	}
	// A trailers-only answer: the call ended before any message. Even with status OK
	// that is no stream to follow (returning none with a nil error crashed the caller).
	if st, ok := grpcwire.StatusFromHeader(resp.Header); ok {
		resp.Body.Close()
		if err := st.Err(); err != nil {
			return nil, err
		}
		return nil, &StatusError{Code: grpcwire.Internal, Message: "the destination service ended the call before any answer"}
	}
	return newCall(resp, max), nil
}

func newCall(resp *http.Response, max int) *call {
	return &call{resp: resp, r: grpcwire.NewReader(bufio.NewReaderSize(resp.Body, 4096), max)}
}

// next reads the next answer into m. At the end of the stream it returns the call's
// status as a *StatusError, or io.EOF when the server ended it with OK.
func (s *call) next(m proto.Message) error {
	b, err := s.r.Next()
	switch {
	case errors.Is(err, io.EOF):
		return s.status()
	case errors.Is(err, grpcwire.ErrCompressed), errors.Is(err, grpcwire.ErrTooLarge):
		return &StatusError{Code: grpcwire.Internal, Message: err.Error()}
	case err != nil:
		return s.readErr(err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return &StatusError{Code: grpcwire.Internal, Message: fmt.Sprintf("decode answer: %v", err)}
	}
	return nil
}

// status is the call's end: the trailers are readable once the body is at EOF.
func (s *call) status() error {
	st, ok := grpcwire.StatusFromHeader(s.resp.Trailer)
	if !ok {
		return &StatusError{Code: grpcwire.Internal, Message: "stream ended without grpc-status"}
	}
	// The status's code, not a comparison with "0": "00" is OK too, and Recv must never
	// return neither an update nor an error (found by FuzzRecv).
	if err := st.Err(); err != nil {
		return err
	}
	return io.EOF
}

// readErr wraps a failure to read the body: the connection broke, the stream was reset,
// or the caller cancelled.
func (s *call) readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &StatusError{Code: grpcwire.Internal, Message: "stream ended inside a message"}
	}
	return &StatusError{Code: grpcwire.Unavailable, Message: err.Error()}
}

func (s *call) close() { s.resp.Body.Close() }

// getStream is one open Get call.
type getStream struct{ c *call }

// openGet starts a Get call for req. The returned stream's Recv yields the answers; it
// is closed by cancelling ctx or by Close.
func openGet(ctx context.Context, t http.RoundTripper, addr string, req *api.GetDestination) (*getStream, error) {
	c, err := openCall(ctx, t, addr, getPath, req, maxMessage)
	if err != nil {
		return nil, err
	}
	return &getStream{c}, nil
}

// newGetStream reads the answers of a call that began with resp.
func newGetStream(resp *http.Response) *getStream {
	return &getStream{newCall(resp, maxMessage)}
}

// Recv reads the next answer. At the end of the stream it returns the call's status as
// a *StatusError, or io.EOF when the server ended it with OK.
func (s *getStream) Recv() (*api.DestinationUpdate, error) {
	u := &api.DestinationUpdate{}
	if err := s.c.next(u); err != nil {
		return nil, err
	}
	return u, nil
}

func (s *getStream) Close() { s.c.close() }
