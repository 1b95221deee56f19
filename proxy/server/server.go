// Package server is where the proxy's data path starts and ends: the outbound and
// inbound listeners, what happens to each accepted connection (the connection limit,
// the original destination, protocol detection, mTLS from peer proxies, then an HTTP
// server or the opaque TCP relay) and graceful shutdown. What an HTTP request goes
// through is proxy/pipeline; how an endpoint is reached, proxy/transport; the HTTP
// protocols themselves, proxy/internal/h1 and proxy/internal/h2; what a destination
// is, proxy/destination. See docs/architecture.md.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/inboundpolicy"
	"github.com/weftmesh/weft/proxy/internal/h1"
	"github.com/weftmesh/weft/proxy/internal/h2"
	"github.com/weftmesh/weft/proxy/internal/netconn"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/origdst"
	"github.com/weftmesh/weft/proxy/pipeline"
	"github.com/weftmesh/weft/proxy/tracing"
	"github.com/weftmesh/weft/proxy/transport"
)

// Options configure a Server.
type Options struct {
	Log logr.Logger
	// Identity holds this proxy's certificate and roots. Nil disables identity:
	// meshed endpoints cannot be reached and inbound accepts plaintext only.
	Identity *identity.Store
	Metrics  *metrics.Registry
	// ConnectTimeout bounds dialling an endpoint or a peer proxy. Default 3s.
	ConnectTimeout time.Duration
	// OriginalDst, when set, replaces the SO_ORIGINAL_DST lookup. It is a test hook
	// for running proxies on loopback without iptables; the configuration's
	// originalDstOverride fields take precedence over it.
	OriginalDst func(dir metrics.Direction, c *net.TCPConn) (netip.AddrPort, error)
	// Source tells the outbound side the configuration of each destination (routes,
	// backends, endpoints). Nil means the static configuration's destinations,
	// converted by destination.NewStaticSource and replaced by SetConfig; the
	// destination service's client (proxy/discovery) is the other implementation.
	Source destination.Source
	// HeaderReadTimeout bounds how long a client may take to send a request header
	// once it started one, on every HTTP/1.1 server of the proxy (Weft's own, and
	// net/http's ReadHeaderTimeout); a slower client (slowloris) is disconnected.
	// Default 10s.
	HeaderReadTimeout time.Duration
	// MaxHeaderBytes bounds an HTTP/1.1 request header; larger ones get 431.
	// Weft's HTTP/1.1 server reads one over 4 KiB into a buffer of this size plus
	// 4 KiB, then returns to 4 KiB. Default 64 KiB.
	MaxHeaderBytes int
	// WriteTimeout bounds one write to any connection of the data path that is
	// not spliced (apps, clients, peer proxies): a peer that stops reading for this
	// long gets its connection closed instead of pinning the goroutines that write
	// to it. It is not a limit on how long a response may stream. Default 5m.
	WriteTimeout time.Duration
	// IdleConnTimeout closes connections to backends and peer proxies that carried
	// nothing for this long, and forgets peer proxies not used for this long; a
	// sweep every IdleConnTimeout/2 does it, so file descriptors and memory return
	// to baseline after endpoints go away. Default 90s.
	IdleConnTimeout time.Duration
	// Balance tunes every backend's load balancer (zero: the defaults of package
	// balance: P2C over peak-EWMA, default RTT 30ms, decay 10s, ejection after 7
	// consecutive failures for 1s doubling to 60s).
	Balance balance.Options
	// ProxyPorts are the proxy's ports the Server does not listen on itself (admin,
	// tap). The inbound side never forwards to them, nor to the ports of the
	// listeners given to ServeInbound and ServeOutbound, on any address.
	ProxyPorts []uint16
	// UnsafeLoopbackApps lets the inbound side forward to loopback addresses. Only
	// for tests and local demos that run apps on 127.0.0.1: with it, any client of
	// the inbound port reaches every localhost-only service of the host. weft-proxy
	// sets it only from --unsafe-loopback-apps, which the injector never passes.
	UnsafeLoopbackApps bool
	// MeshTLS says how outbound connections to addresses the Source has not described
	// go out (transport.Fallback): the TLS mode, the cluster networks (where a peer
	// proxy is probed for first) and the peers' inbound port. The zero value has no
	// cluster networks: such connections go out in plaintext, as in static mode.
	MeshTLS transport.FallbackOptions
	// Mirror bounds the copies RequestMirror filters make: their deadline and how
	// many may be in flight per mirror backend and in all (zero fields: the defaults
	// of pipeline.MirrorOptions, 5s, 32 and 128).
	Mirror pipeline.MirrorOptions
	// Tracing bounds the span export (queue, batch, timeouts; zero fields: the
	// defaults of tracing.Options). Tracing itself is on while the pod's inbound
	// policy carries the Mesh's tracing configuration (SetInboundPolicy).
	Tracing tracing.Options
}

// Defaults of Options; docs/proxy.md lists them.
const (
	// A request header is a few hundred bytes; 10 s is ample on any network and
	// bounds a slowloris client to one goroutine and buffer per 10 s.
	defaultHeaderReadTimeout = 10 * time.Second
	// Envoy's default limit is 60 KiB; net/http's 1 MiB would let each connection
	// hold 1 MiB of header.
	defaultMaxHeaderBytes = 64 << 10
	// Like Envoy's stream idle timeout: long enough for a client that pauses
	// reading a stream, short enough that one that never reads goes away.
	defaultWriteTimeout    = 5 * time.Minute
	defaultIdleConnTimeout = 90 * time.Second
)

// destIdle is how long a compiled destination (routes, balancers, budget) is kept
// without requests: between one and two periods.
const destIdle = time.Minute

// state is one configuration with what is derived from it; swapped atomically.
type state struct {
	pipeline.Snapshot
	serverTLS *tls.Config
}

// Server is one proxy's data path. Create with New, then ServeOutbound and
// ServeInbound on listeners; Shutdown drains.
type Server struct {
	opts Options
	log  logr.Logger
	st   atomic.Pointer[state]

	// outHTTP and inHTTP are net/http's servers, for the connections Weft's
	// HTTP/1.1 server hands over (one request each), fed through outCh and inCh.
	outHTTP, inHTTP *http.Server
	outCh, inCh     *chanListener
	h1              *h1.Server // every HTTP/1.1 connection starts here
	h2              *h2.Server // weft.h2 and h2c connections
	pipe            *pipeline.Pipeline
	out, in         *transport.Plain
	mesh            *transport.Mesh
	fallback        *transport.Fallback
	relay           *inboundpolicy.Targets
	policy          *inboundpolicy.Checker
	dests           *destination.Cache
	workers         *workerPool   // runs the handlers of HTTP/2 streams and HTTP/1.1 requests
	stop            chan struct{} // closed by Shutdown: stops background work

	// tracer reports spans while the inbound policy (before the control plane's:
	// the configuration file) configures tracing.
	tracer *tracing.Tracer
	// policyFromControlPlane: SetInboundPolicy was called; the file's tracing no
	// longer applies. Guarded by tracingMu, which orders the two sources' updates.
	tracingMu              sync.Mutex
	policyFromControlPlane bool

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*netconn.Counted]struct{}
	drainers  map[drainer]struct{} // connections Shutdown asks to finish (HTTP/2 GOAWAY, HTTP/1.1 close when idle)
	connsDone chan struct{}        // closed when conns drains to zero while shutting down
	closing   bool
	serveWG   sync.WaitGroup

	active [2]atomic.Int64 // accepted connections open, by metrics.Direction
}

// New creates a Server with the given configuration (nil means an empty one).
func New(cfg *config.Config, opts Options) *Server {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 3 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.HeaderReadTimeout <= 0 {
		opts.HeaderReadTimeout = defaultHeaderReadTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = defaultIdleConnTimeout
	}
	s := &Server{opts: opts, log: opts.Log, conns: map[*netconn.Counted]struct{}{}, drainers: map[drainer]struct{}{}, workers: newWorkerPool()}
	s.relay = inboundpolicy.NewTargets(opts.UnsafeLoopbackApps)
	for _, p := range opts.ProxyPorts {
		s.relay.AddOwnPort(p)
	}
	s.policy = &inboundpolicy.Checker{Targets: s.relay, Log: s.log, Metrics: opts.Metrics}
	tro := opts.Tracing
	if tro.Log.GetSink() == nil {
		tro.Log = s.log.WithName("tracing")
	}
	s.tracer = tracing.New(tro)
	opts.Metrics.AddCollector(s.tracer.WriteMetrics)
	if cfg == nil {
		cfg = &config.Config{}
		cfg.ApplyDefaults()
	}
	s.SetConfig(cfg)
	to := transport.Options{ConnectTimeout: opts.ConnectTimeout, WriteTimeout: opts.WriteTimeout,
		IdleConnTimeout: opts.IdleConnTimeout, Metrics: opts.Metrics, Identity: opts.Identity}
	s.out = transport.NewPlain(to, metrics.Outbound)
	s.in = transport.NewPlain(to, metrics.Inbound)
	s.mesh = transport.NewMesh(to)
	s.fallback = transport.NewFallback(opts.MeshTLS, s.mesh)
	opts.Metrics.AddCollector(func(w io.Writer) { _ = s.fallback.WriteMetrics(w) })
	s.dests = destination.NewCache(s.log, opts.Balance, opts.Metrics)
	opts.Metrics.AddCollector(s.dests.WriteMetrics)
	errorLog := log.New(logWriter{s.log.V(1)}, "", 0)
	s.pipe = pipeline.New(pipeline.Options{
		Log: s.log, Metrics: opts.Metrics, Source: opts.Source,
		Snapshot: func() *pipeline.Snapshot { return &s.state().Snapshot },
		Dests:    s.dests, Out: s.out, In: s.in, Mesh: s.mesh, Fallback: s.fallback, Policy: s.policy, ErrorLog: errorLog,
		Mirror: opts.Mirror, Tracer: s.tracer,
	})
	s.outCh = newChanListener(&net.TCPAddr{})
	s.inCh = newChanListener(&net.TCPAddr{})
	s.outHTTP = s.newHTTPServer(http.HandlerFunc(s.pipe.ServeOutbound), errorLog)
	s.inHTTP = s.newHTTPServer(http.HandlerFunc(s.pipe.ServeInbound), errorLog)
	drain := drainRegistry{s}
	s.h1 = &h1.Server{Run: s.workers.run, Log: s.log.V(1), Drain: drain,
		HeaderReadTimeout: opts.HeaderReadTimeout, MaxHeaderBytes: opts.MaxHeaderBytes}
	s.h2 = &h2.Server{Run: s.workers.run, Log: s.log.V(1), Drain: drain}
	s.stop = make(chan struct{})
	go s.dests.SweepEvery(destIdle, s.stop)
	go s.sweepPoolsEvery(s.opts.IdleConnTimeout, s.stop)
	for _, pair := range []struct {
		srv *http.Server
		l   *chanListener
	}{{s.outHTTP, s.outCh}, {s.inHTTP, s.inCh}} {
		s.serveWG.Add(1)
		go func() {
			defer s.serveWG.Done()
			_ = pair.srv.Serve(pair.l)
		}()
	}
	return s
}

func (s *Server) newHTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	// Only connections Weft's HTTP/1.1 server handed over reach net/http's server,
	// for one request each (proxy/internal/h1); HTTP/2 is served by proxy/internal/h2.
	var protos http.Protocols
	protos.SetHTTP1(true)
	return &http.Server{
		Handler:   h,
		Protocols: &protos,
		// Apps and peers hold idle keep-alive connections; bound how long.
		IdleTimeout: 5 * time.Minute,
		// A header must arrive within the timeout once it started; bounded in size.
		ReadHeaderTimeout: s.opts.HeaderReadTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*infoConn); ok {
				return pipeline.WithConnInfo(ctx, ic.info)
			}
			return ctx
		},
		ErrorLog: errorLog,
	}
}

type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Info(string(p))
	return len(p), nil
}

// SetConfig installs a new configuration; connections accepted afterwards use it.
func (s *Server) SetConfig(cfg *config.Config) {
	ix := config.NewIndex(cfg)
	st := &state{Snapshot: pipeline.Snapshot{Index: ix, Static: destination.NewStatic(cfg)}}
	if s.opts.Identity != nil {
		st.serverTLS = s.opts.Identity.ServerConfig(requiresClientCert(cfg))
	}
	s.st.Store(st)
	// The configuration's policy applies until the control plane sends the pod's.
	s.policy.SetBootstrap(inboundpolicy.Compile(inboundpolicy.Bootstrap(&cfg.Inbound)))
	// So does its tracing.
	s.tracingMu.Lock()
	if !s.policyFromControlPlane {
		s.tracer.Update(staticTracing(cfg.Tracing))
	}
	s.tracingMu.Unlock()
}

// staticTracing is the configuration file's tracing as the control plane sends it.
func staticTracing(t *config.Tracing) *api.Tracing {
	if t == nil {
		return nil
	}
	return &api.Tracing{Collector: t.Collector, SamplingPerMillion: t.SamplingPerMillion, ServiceName: t.ServiceName}
}

// SetInboundPolicy installs the pod's inbound policy from the control plane; it
// replaces the configuration's policy for good (a reload no longer changes it).
// Requests on open connections are decided with it from their next one.
func (s *Server) SetInboundPolicy(msg *api.InboundPolicy) {
	s.policy.SetPolicy(inboundpolicy.Compile(msg))
	// The Mesh's tracing rides on the same message; without it, tracing is off.
	s.tracingMu.Lock()
	s.policyFromControlPlane = true
	s.tracer.Update(msg.GetTracing())
	s.tracingMu.Unlock()
}

// Tracer is the proxy's tracing (on while the inbound policy configures it).
func (s *Server) Tracer() *tracing.Tracer { return s.tracer }

// InboundPolicy is the inbound policy in force.
func (s *Server) InboundPolicy() *inboundpolicy.Policy { return s.policy.Policy() }

// requiresClientCert is true when the configuration admits no client without an
// identity, so a weft.* handshake without a client certificate can fail at once. Only
// the static configuration says so: a control-plane policy is applied per request
// and connection, and mesh clients always present their certificate.
func requiresClientCert(cfg *config.Config) bool {
	authenticated := func(p config.Policy) bool {
		switch p {
		case config.PolicyAllAuthenticated, config.PolicyClusterAuthenticated, config.PolicyDeny:
			return true
		}
		return false
	}
	if !authenticated(cfg.Inbound.DefaultPolicy) {
		return false
	}
	for _, pp := range cfg.Inbound.PortPolicies {
		if !authenticated(pp.Policy) {
			return false
		}
	}
	return true
}

func (s *Server) state() *state { return s.st.Load() }

// maxConns is the configured connection limit of a direction's listeners.
func (s *Server) maxConns(dir metrics.Direction) int {
	c := s.state().Index.Config
	n := c.Outbound.MaxConnections
	def := config.DefaultMaxOutboundConnections
	if dir == metrics.Inbound {
		n, def = c.Inbound.MaxConnections, config.DefaultMaxInboundConnections
	}
	if n <= 0 {
		return def
	}
	return n
}

// tcpIdleTimeout is how long an opaque TCP relay may move no byte before it is
// closed (config.Config.TCPIdleTimeout).
func (s *Server) tcpIdleTimeout() time.Duration {
	if d := s.state().Index.Config.TCPIdleTimeout.Duration; d > 0 {
		return d
	}
	return config.DefaultTCPIdleTimeout
}

// ServeOutbound accepts connections redirected from the app's outbound traffic until
// the listener is closed. It returns nil after Shutdown.
func (s *Server) ServeOutbound(ln net.Listener) error {
	return s.serve(ln, metrics.Outbound, s.handleOutbound)
}

// ServeInbound accepts connections redirected to the app and mTLS connections from
// peer proxies until the listener is closed. It returns nil after Shutdown.
func (s *Server) ServeInbound(ln net.Listener) error {
	return s.serve(ln, metrics.Inbound, s.handleInbound)
}

// serve accepts on ln and hands each connection to handle with the function that
// frees its place under the direction's connection limit (called when the
// connection's netconn.Counted closes).
func (s *Server) serve(ln net.Listener, dir metrics.Direction, handle func(*net.TCPConn, func())) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		s.relay.AddOwnPort(uint16(ta.Port))
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors and the like: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Error(err, "Accept failed, retrying", "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		if limit := s.maxConns(dir); s.active[dir].Add(1) > int64(limit) {
			// Closed before any goroutine or buffer is spent on it, and with a
			// reset (linger 0) so a flood leaves no TIME_WAIT behind either.
			s.active[dir].Add(-1)
			tc.SetLinger(0)
			tc.Close()
			s.opts.Metrics.ConnLimitRefused[dir].Add(1)
			s.log.V(1).Info("Connection limit reached, closing a new connection", "direction", dir.String(), "limit", limit)
			continue
		}
		go handle(tc, func() { s.active[dir].Add(-1) })
	}
}

// track registers an accepted connection so Shutdown can wait for it and, after the
// grace period, close it.
func (s *Server) track(c *netconn.Counted) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	c.OnClose = func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.closing && len(s.conns) == 0 && s.connsDone != nil {
			close(s.connsDone)
			s.connsDone = nil
		}
		s.mu.Unlock()
	}
	return true
}

// drainer is a connection that serves requests and can be asked to stop taking new
// ones and close when the current ones are done (h1.Draining, h2.Draining).
type drainer = interface{ GoAway() }

// drainRegistry is the Server's drainers as the protocol packages see them.
type drainRegistry struct{ s *Server }

func (r drainRegistry) Add(c interface{ GoAway() }) bool { return r.s.addDrainer(c) }
func (r drainRegistry) Remove(c interface{ GoAway() })   { r.s.removeDrainer(c) }

// addDrainer registers a connection for Shutdown's goAway; false when shutting down
// already.
func (s *Server) addDrainer(c drainer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.drainers[c] = struct{}{}
	return true
}

func (s *Server) removeDrainer(c drainer) {
	s.mu.Lock()
	delete(s.drainers, c)
	s.mu.Unlock()
}

// originalDst finds where a redirected connection was going.
func (s *Server) originalDst(dir metrics.Direction, ix *config.Index, c *net.TCPConn) (netip.AddrPort, error) {
	if dir == metrics.Outbound && ix.OutboundDst.IsValid() {
		return ix.OutboundDst, nil
	}
	if dir == metrics.Inbound && ix.InboundDst.IsValid() {
		return ix.InboundDst, nil
	}
	if s.opts.OriginalDst != nil {
		return s.opts.OriginalDst(dir, c)
	}
	return origdst.Get(c)
}

// Shutdown stops accepting, lets in-flight requests and connections finish until ctx
// ends, then closes everything that is left. It returns ctx's error when it had to
// force connections closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.stop)
	}
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.drainers {
		go c.GoAway()
	}
	done := make(chan struct{})
	if len(s.conns) == 0 {
		close(done)
	} else {
		s.connsDone = done
	}
	s.mu.Unlock()

	// http.Server.Shutdown closes idle keep-alive connections, tells HTTP/2 peers
	// GOAWAY and waits for active requests.
	var wg sync.WaitGroup
	for _, hs := range []*http.Server{s.outHTTP, s.inHTTP} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = hs.Shutdown(ctx)
		}()
	}
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	left := make([]*netconn.Counted, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.Close()
	}
	s.outHTTP.Close()
	s.inHTTP.Close()
	wg.Wait()
	s.serveWG.Wait()
	s.mesh.CloseIdle()
	s.out.CloseIdle(true)
	s.in.CloseIdle(true)
	// After the last request: its span is queued, and goes out with the rest.
	s.tracer.Close()
	return err
}

// sweepPoolsEvery closes idle connections to backends and forgets unused peer
// proxies every period until stop is closed (see Options.IdleConnTimeout). The
// http.Transports close their own idle connections on timers.
func (s *Server) sweepPoolsEvery(period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.sweepPools(now)
		case <-stop:
			return
		}
	}
}

// sweepPools runs one sweep and returns how many pooled connections (Weft's HTTP/1.1
// clients) and peer-proxy clients are left.
func (s *Server) sweepPools(now time.Time) (conns, peers int) {
	conns = s.out.Sweep(now) + s.in.Sweep(now)
	peers = s.mesh.Sweep()
	return conns, peers
}
