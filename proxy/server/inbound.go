package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/proxy/detect"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/inboundpolicy"
	"github.com/weftmesh/weft/proxy/internal/netconn"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/origdst"
	"github.com/weftmesh/weft/proxy/pipeline"
	"github.com/weftmesh/weft/proxy/tcpfwd"
	"github.com/weftmesh/weft/proxy/transport"
)

// handleInbound runs for each connection accepted on the inbound port: plaintext
// redirected to the app from unmeshed clients, and mTLS from peer proxies (which dial
// the inbound port directly).
func (s *Server) handleInbound(raw *net.TCPConn, release func()) {
	st := s.state()
	ix := st.Index
	src := netconn.NewCounted(raw)
	src.WriteTimeout = s.opts.WriteTimeout
	src.Release = release
	src.Fallback = func() *metrics.TCPSeries {
		return s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Inbound, Peer: metrics.Src})
	}
	if !s.track(src) {
		src.Close()
		return
	}
	dst, err := s.originalDst(metrics.Inbound, ix, raw)
	redirected := err == nil
	if err != nil && !errors.Is(err, origdst.ErrNotRedirected) {
		s.log.Error(err, "Cannot find original destination", "client", raw.RemoteAddr())
	}
	if redirected && (ix.Opaque(dst.Port()) || s.policy.Policy().Server(dst.Port()).Opaque()) {
		s.inboundPlainTCP(src, raw, dst, nil, false)
		return
	}
	res, pc, err := detect.Detect(src, ix.Config.DetectTimeout.Duration)
	if err != nil && len(pc.Peeked()) == 0 {
		src.Close()
		return
	}
	if res.TimedOut {
		s.opts.Metrics.DetectTimeouts[metrics.Inbound].Add(1)
	}
	if res.Kind == detect.TLS && st.serverTLS != nil && slices.ContainsFunc(res.ALPN, isWeftALPN) {
		s.inboundMesh(src, pc, st)
		return
	}
	if !redirected {
		// Not a mesh connection and nowhere to send it.
		s.log.V(1).Info("Refusing inbound connection that is neither mTLS nor redirected", "client", raw.RemoteAddr())
		src.Close()
		return
	}
	switch res.Kind {
	case detect.HTTP1, detect.HTTP2:
		// Authorized per request (pipeline.ServeInbound): the kubelet's probes
		// pass under any policy, and a policy change applies to the next request.
		src.Attach(src.Fallback())
		info := &pipeline.ConnInfo{OrigDst: dst, Client: addrPortOf(raw.RemoteAddr())}
		if res.Kind == detect.HTTP1 {
			s.serveH1(&peekConn{Conn: pc, cc: src}, info, s.inHTTP, s.inCh)
			return
		}
		s.serveH2C(&peekConn{Conn: pc, cc: src}, info, s.inHTTP)
	default:
		// Opaque, or the app's own TLS (not a Weft peer): forward as TCP.
		s.inboundPlainTCP(src, raw, dst, pc.TakePeeked(), true)
	}
}

func isWeftALPN(p string) bool { return strings.HasPrefix(p, "weft.") }

// inboundPlainTCP forwards an unmeshed client's opaque stream to the local app with
// splice. undeclared: the port is not declared opaque; detection read no HTTP.
func (s *Server) inboundPlainTCP(src *netconn.Counted, raw *net.TCPConn, dst netip.AddrPort, prefix []byte, undeclared bool) {
	defer src.Close()
	src.Attach(src.Fallback())
	s.forwardLocal(src, raw, dst, prefix, inboundpolicy.Client{ID: "", Undeclared: undeclared})
}

// addrPortOf is a connection's remote address as a netip.AddrPort (zero when it is
// not TCP).
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// forwardLocal applies the relay-target rule and the inbound policy to an opaque
// connection of cl (its ID and Undeclared; the address is src's), then dials the
// local app and pipes client to it. The connection stays registered with the policy
// while it is open, so a policy that no longer admits it closes it.
func (s *Server) forwardLocal(src *netconn.Counted, client net.Conn, dst netip.AddrPort, prefix []byte, cl inboundpolicy.Client) {
	if _, ok := s.policy.RelayAllowed(dst, cmp.Or(cl.ID, client.RemoteAddr().String())); !ok {
		return
	}
	cl.Addr = addrPortOf(src.RemoteAddr()).Addr().Unmap()
	if !s.policy.Connection(dst, cl) {
		return
	}
	defer s.policy.Track(dst, cl, func() { client.Close() })()
	d := net.Dialer{Timeout: s.opts.ConnectTimeout}
	c, err := d.Dial("tcp", dst.String())
	if err != nil {
		s.log.V(1).Info("Cannot reach local app", "dst", dst, "error", err.Error())
		return
	}
	dstSeries := s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Inbound, Peer: metrics.Dst})
	dstSeries.Open()
	// With a bare *net.TCPConn client this is splice(2), zero copy; behind TLS the
	// bytes pass through user space to be decrypted, and the app's side is read and
	// written with raw system calls (netconn.NewRaw).
	_, bare := client.(*net.TCPConn)
	var app net.Conn = c
	if !bare {
		app = netconn.NewRaw(c)
	}
	res := tcpfwd.PipeIdle(client, app, prefix, nil, s.tcpIdleTimeout())
	if bare {
		src.AddSpliced(res.AToB-int64(len(prefix)), res.BToA, res.Err)
	}
	dstSeries.AddBytes(uint64(res.BToA), uint64(res.AToB))
	dstSeries.Close(0, 0, tcpfwd.Errno(res.Err))
}

// inboundMesh terminates mTLS from a peer proxy and serves what its ALPN announces.
func (s *Server) inboundMesh(src *netconn.Counted, pc *detect.Conn, st *state) {
	tc := tls.Server(&peekConn{Conn: pc, cc: src}, st.serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.V(1).Info("Inbound mTLS handshake failed", "client", src.RemoteAddr(), "error", err.Error())
		src.Close()
		return
	}
	cs := tc.ConnectionState()
	peerID := identity.PeerID(&cs)
	src.Attach(s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Inbound, Peer: metrics.Src, PeerID: peerID}))
	switch cs.NegotiatedProtocol {
	case identity.ALPNHTTP2:
		s.serveMeshH2(tc, &pipeline.ConnInfo{Mesh: true, PeerID: peerID, Client: addrPortOf(src.RemoteAddr())})
	case identity.ALPNHTTP1:
		// Weft's HTTP/1.1 server checks each request's framing before net/http
		// may see it (proxy/internal/h1), as on the app-facing ports.
		s.serveH1(&peekConn{Conn: &detect.Conn{Conn: tc}, cc: tc}, &pipeline.ConnInfo{Mesh: true, PeerID: peerID, Client: addrPortOf(src.RemoteAddr())}, s.inHTTP, s.inCh)
	case identity.ALPNTCP:
		defer tc.Close()
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		dst, err := transport.ReadTCPHeader(tc)
		tc.SetReadDeadline(time.Time{})
		if err != nil {
			s.log.V(1).Info("Bad weft.tcp header", "client", peerID, "error", err.Error())
			return
		}
		// The client proxy opens weft.tcp for ports its destination calls opaque; a
		// port this pod does not declare opaque is HTTP by its own policy.
		s.forwardLocal(src, tc, dst, nil, inboundpolicy.Client{ID: peerID, Undeclared: !st.Index.Opaque(dst.Port()) && !s.policy.Policy().Server(dst.Port()).Opaque()})
	default:
		tc.Close()
	}
}
