package tap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/internal/peertls"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/identity"
)

// ObservePath is the one call the tap server answers,
// weft.tap.v1.Tap/Observe (proxy/api/apigrpc/tap_service.proto), served as the gRPC
// over HTTP/2 protocol specifies it with net/http's HTTP/2 server: the proxy does not
// link grpc-go (see internal/grpcwire for why), and the control plane's client is
// grpc-go, which the tests use too.
const ObservePath = "/weft.tap.v1.Tap/Observe"

// Server defaults (docs/proxy.md, "Tap").
const (
	// DefaultHandshakeTimeout bounds a connection's TLS handshake (and an HTTP/2
	// preface): a client that connects and says nothing holds a slot that long.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultWriteTimeout bounds one write of events: a reader that stops reading
	// (HTTP/2 flow control) that long loses its stream, which frees the slot.
	DefaultWriteTimeout = 10 * time.Second
	// maxConns bounds the tap port's connections, authenticated or not; more are
	// closed at once. The control plane needs one per proxy.
	maxConns = 16
	// maxRequest bounds the ObserveRequest message.
	maxRequest = 16 << 10
	// requestTimeout bounds reading the ObserveRequest.
	requestTimeout = 10 * time.Second
	// idleTimeout closes a connection without a stream after this long.
	idleTimeout = 2 * time.Minute
	// writeBatch is how many queued events one flush carries at most.
	writeBatch = 32
)

// Server serves the tap over mTLS to one client identity.
type Server struct {
	Tap *Tap
	// Identity holds the proxy's certificate (presented, renewals included) and the
	// trust roots a client's certificate must chain to.
	Identity *identity.Store
	// ClientID is the only SPIFFE ID that may tap (WEFT_TAP_IDENTITY, the control
	// plane's tap identity). Empty: nobody may.
	ClientID string
	Log      logr.Logger
	// HandshakeTimeout and WriteTimeout: zero takes the defaults above.
	HandshakeTimeout, WriteTimeout time.Duration

	mu  sync.Mutex
	srv *http.Server // set by Serve
}

// Serve accepts connections on ln until Shutdown. Each connection must complete TLS
// 1.3 with a client certificate that chains to the trust roots and carries ClientID
// (identity.Store.ServerConfigFor): anyone else is refused in the handshake, before
// the HTTP/2 server reads a byte of theirs.
func (s *Server) Serve(ln net.Listener) error {
	hto := s.HandshakeTimeout
	if hto <= 0 {
		hto = DefaultHandshakeTimeout
	}
	var protos http.Protocols
	protos.SetHTTP2(true) // over TLS only: no h2c, no HTTP/1.1
	cfg := s.Identity.ServerConfigFor(s.ClientID, "h2")
	srv := &http.Server{
		Handler:   s,
		TLSConfig: cfg,
		Protocols: &protos,
		// net/http bounds the TLS handshake by the smallest of these; ReadHeaderTimeout
		// is it here, and IdleTimeout ends a connection without a stream.
		ReadHeaderTimeout: hto,
		IdleTimeout:       idleTimeout,
		// Handshake failures (refused clients) are routine here, not errors.
		ErrorLog: log.New(logWriter{s.Log.V(1)}, "", 0),
		HTTP2: &http.HTTP2Config{
			// Above MaxStreams, so that a call over the limit reaches the handler
			// and is refused (RESOURCE_EXHAUSTED) rather than queued by the client.
			MaxConcurrentStreams: 2 * MaxStreams,
			// A control plane that vanished without closing (node gone) is noticed
			// by an unanswered ping, and its streams' slots freed.
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
			MaxReceiveBufferPerStream:     maxRequest,
			MaxReceiveBufferPerConnection: 4 * maxRequest,
		},
	}
	s.mu.Lock()
	closed := s.srv != nil // Shutdown came first
	if !closed {
		s.srv = srv
	}
	s.mu.Unlock()
	if closed {
		ln.Close()
		return nil
	}
	err := srv.ServeTLS(&limitListener{Listener: ln, max: maxConns}, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends every stream (Tap.Close) and the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Tap.Close()
	s.mu.Lock()
	srv := s.srv
	if srv == nil {
		s.srv = &http.Server{} // Serve, called later, returns at once
	}
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// ServeHTTP serves one Observe call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != ObservePath || r.Method != http.MethodPost {
		answer(w, grpcwire.Unimplemented, "unknown method")
		return
	}
	// The handshake already held the client to ClientID; checked again here so that
	// no change to the TLS configuration can open the stream to someone else. The
	// message is the same for every refusal: it tells a caller nothing about who
	// may tap.
	if !s.authorized(r) {
		s.Tap.stats.refused[refusedIdentity].Add(1)
		answer(w, grpcwire.PermissionDenied, "permission denied")
		return
	}
	rc := http.NewResponseController(w)
	req, err := readRequest(r, rc)
	if err != nil {
		s.Tap.stats.refused[refusedInvalid].Add(1)
		answer(w, grpcwire.InvalidArgument, err.Error())
		return
	}
	m, err := compileMatch(req.GetMatch())
	if err != nil {
		s.Tap.stats.refused[refusedInvalid].Add(1)
		answer(w, grpcwire.InvalidArgument, err.Error())
		return
	}
	st := newStream(m, eventsPerSecond(req.GetMaxEventsPerSecond()), s.Tap.now())
	if !s.Tap.add(st) {
		s.Tap.stats.refused[refusedLimit].Add(1)
		answer(w, grpcwire.ResourceExhausted, fmt.Sprintf("too many tap streams: at most %d at once", MaxStreams))
		return
	}
	defer s.Tap.remove(st)
	s.Tap.stats.opened.Add(1)
	s.Log.V(1).Info("Tap stream opened", "match", req.GetMatch().String(), "maxEventsPerSecond", eventsPerSecond(req.GetMaxEventsPerSecond()))
	err = s.stream(w, r, rc, st)
	s.Log.V(1).Info("Tap stream ended", "reason", err)
}

// authorized says whether the connection's verified client certificate is ClientID.
func (s *Server) authorized(r *http.Request) bool {
	if s.ClientID == "" || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	id, err := peertls.SPIFFEID(r.TLS.PeerCertificates[0])
	return err == nil && id == s.ClientID
}

// readRequest reads the call's one ObserveRequest, within requestTimeout.
func readRequest(r *http.Request, rc *http.ResponseController) (*api.ObserveRequest, error) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return nil, errors.New("content-type is not application/grpc")
	}
	_ = rc.SetReadDeadline(time.Now().Add(requestTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	b, err := grpcwire.NewReader(r.Body, maxRequest).Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no ObserveRequest in the call")
		}
		return nil, fmt.Errorf("reading the ObserveRequest: %w", err)
	}
	req := &api.ObserveRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("decoding the ObserveRequest: %w", err)
	}
	return req, nil
}

// stream writes st's events until the caller cancels, a write fails or times out,
// or the tap closes; the call then ends with OK.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, st *stream) error {
	wto := s.WriteTimeout
	if wto <= 0 {
		wto = DefaultWriteTimeout
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Trailer", grpcwire.HeaderStatus+", "+grpcwire.HeaderMessage)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 4096)
	var msg []byte
	end := func(err error) error {
		h.Set(grpcwire.HeaderStatus, "0")
		h.Set(grpcwire.HeaderMessage, "")
		return err
	}
	for {
		var b []byte
		select {
		case b = <-st.queue:
		case <-r.Context().Done():
			return end(r.Context().Err())
		case <-s.Tap.closing:
			return end(errors.New("proxy shutting down"))
		}
		_ = rc.SetWriteDeadline(time.Now().Add(wto))
		for n := 0; ; n++ {
			msg = appendEvent(msg[:0], b, st.dropped.Swap(0))
			if _, err := bw.Write(msg); err != nil {
				return err
			}
			s.Tap.stats.sent.Add(1)
			if n+1 == writeBatch {
				break
			}
			select {
			case b = <-st.queue:
				continue
			default:
			}
			break
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
	}
}

// appendEvent appends one gRPC message: the encoded event and, when dropped is not
// zero, its dropped field. Protobuf allows a field after the others (the last one
// read wins), so the event encoded once for every stream gets each stream's count
// without being encoded again.
func appendEvent(dst, event []byte, dropped uint64) []byte {
	n := len(event)
	if dropped != 0 {
		n += protowire.SizeTag(9) + protowire.SizeVarint(dropped)
	}
	dst = append(dst, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	dst = append(dst, event...)
	if dropped != 0 {
		dst = protowire.AppendTag(dst, 9, protowire.VarintType)
		dst = protowire.AppendVarint(dst, dropped)
	}
	return dst
}

// answer ends a call before any message: a trailers-only response.
func answer(w http.ResponseWriter, code grpcwire.Code, msg string) {
	grpcwire.SetTrailersOnly(w.Header(), code, msg)
	w.WriteHeader(http.StatusOK)
}

// logWriter passes net/http's server log to logr.
type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// limitListener closes connections beyond max at once (rather than leaving them in
// the kernel's backlog, where they would delay the control plane's).
type limitListener struct {
	net.Listener
	max  int32
	open atomic.Int32
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once atomic.Bool
}

func (c *limitConn) Close() error {
	if c.once.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}
