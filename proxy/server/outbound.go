package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/detect"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/internal/netconn"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/origdst"
	"github.com/weftmesh/weft/proxy/pipeline"
	"github.com/weftmesh/weft/proxy/tcpfwd"
	"github.com/weftmesh/weft/proxy/transport"
)

// handleOutbound runs for each connection the app opened (redirected to 4140).
func (s *Server) handleOutbound(raw *net.TCPConn, release func()) {
	st := s.state()
	ix := st.Index
	src := netconn.NewCounted(raw)
	src.WriteTimeout = s.opts.WriteTimeout
	src.Release = release
	src.Attach(s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Outbound, Peer: metrics.Src}))
	if !s.track(src) {
		src.Close()
		return
	}
	dst, err := s.originalDst(metrics.Outbound, ix, raw)
	if err != nil {
		if errors.Is(err, origdst.ErrNotRedirected) {
			// Someone dialled the outbound port directly; forwarding would loop.
			s.log.V(1).Info("Refusing outbound connection that was not redirected", "client", raw.RemoteAddr())
		} else {
			s.log.Error(err, "Cannot find original destination", "client", raw.RemoteAddr())
		}
		src.Close()
		return
	}
	dest := s.lookupAddr(st, dst)
	if ix.Opaque(dst.Port()) || dest.GetProtocol() == api.ProtocolHint_PROTOCOL_HINT_OPAQUE {
		s.outboundTCP(src, raw, dst, dest, nil)
		return
	}
	res, pc, err := detect.Detect(src, detectTimeout(ix, dest))
	if err != nil && len(pc.Peeked()) == 0 {
		src.Close()
		return
	}
	if res.TimedOut {
		s.opts.Metrics.DetectTimeouts[metrics.Outbound].Add(1)
	}
	switch res.Kind {
	case detect.HTTP1:
		s.serveH1(&peekConn{Conn: pc, cc: src}, &pipeline.ConnInfo{OrigDst: dst}, s.outHTTP, s.outCh)
	case detect.HTTP2:
		s.serveH2C(&peekConn{Conn: pc, cc: src}, &pipeline.ConnInfo{OrigDst: dst}, s.outHTTP)
	default:
		s.outboundTCP(src, raw, dst, dest, pc.TakePeeked())
	}
}

// declaredHTTPDetectTimeout bounds detection on a port whose Service declares HTTP: as
// long as an idle HTTP connection may live.
const declaredHTTPDetectTimeout = 5 * time.Minute

// detectTimeout is how long to wait for a client's first bytes. The short configured
// timeout protects server-speaks-first protocols on undeclared ports; a port declared
// HTTP (appProtocol http, h2c, grpc) cannot be one, and its clients may dial
// connections well before they use them (Go's http.Transport pools a connection that
// lost the race for a request), which must not turn them into unrouted opaque TCP.
func detectTimeout(ix *config.Index, dest *api.DestinationConfig) time.Duration {
	switch dest.GetProtocol() {
	case api.ProtocolHint_PROTOCOL_HINT_HTTP1, api.ProtocolHint_PROTOCOL_HINT_H2C, api.ProtocolHint_PROTOCOL_HINT_GRPC:
		return declaredHTTPDetectTimeout
	}
	return ix.Config.DetectTimeout.Duration
}

// outboundTCP forwards an opaque connection to an endpoint of dest, chosen per
// connection by the fallback route's backend weights and the backend's balancer (or
// to its original destination when no destination is known): over mTLS with ALPN
// weft.tcp to the peer's proxy for meshed endpoints, else straight to the endpoint
// with splice.
func (s *Server) outboundTCP(src *netconn.Counted, raw *net.TCPConn, dst netip.AddrPort, dest *api.DestinationConfig, prefix []byte) {
	defer src.Close()
	ep := &balance.Endpoint{Addr: dst}
	var h balance.Handle
	picked := false
	noTLSReason := transport.NoTLSNotProvided
	if dest == nil {
		// Nothing describes the address: a peer proxy there gets mTLS, and Strict
		// mode sends nothing in plaintext inside the cluster networks.
		d := s.fallback.Decide(context.Background(), dst, s.opts.Source != nil && destination.NoAnswer(s.opts.Source, destination.Target{Addr: dst}))
		switch d.Way {
		case transport.GoRefused:
			s.log.V(1).Info("Refused a connection in plaintext", "destination", dst, "reason", d.Why)
			return
		case transport.GoMeshed:
			ep = &balance.Endpoint{Addr: dst, ProxyAddr: d.Peer.Addr, Identity: d.Peer.ID}
		default:
			noTLSReason = d.NoTLSReason
		}
	}
	if dest != nil {
		d := s.dests.Get(dest)
		fb := d.Table.Fallback
		if fb == nil && len(d.Table.Routes) > 0 {
			fb = d.Table.Routes[0]
		}
		if fb == nil {
			s.log.V(1).Info("Destination has no route for TCP, closing", "destination", destination.ServiceKey(dest))
			return
		}
		b := fb.PickBackend()
		if b == nil || b.Invalid != "" {
			s.log.V(1).Info("No usable backend for TCP connection, closing", "destination", destination.ServiceKey(dest))
			return
		}
		var err error
		if h, err = d.Balancers[b.Key].Pick(); err != nil {
			s.log.V(1).Info("No endpoint for TCP connection, closing", "destination", destination.ServiceKey(dest), "error", err.Error())
			return
		}
		ep, picked = h.Endpoint(), true
	}
	// done reports the connect outcome to the balancer: connection errors count
	// as failures, and the connect time feeds the latency estimate.
	done := func(err error) {
		if picked {
			h.Done(err != nil)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ConnectTimeout)
	defer cancel()
	if ep.Meshed() {
		if picked {
			s.fallback.ObserveMeshed(ep.Addr.Addr())
		}
		tc, err := s.mesh.DialLabeled(ctx, transport.Peer{Addr: ep.ProxyAddr, ID: ep.Identity}, identity.ALPNTCP, promtext.Labels(ep.MetricLabels))
		done(err)
		if err != nil && !picked {
			// The peer a probe found: probe again next time.
			s.fallback.Forget(dst.Addr())
		}
		if err != nil {
			s.log.Error(err, "Cannot reach meshed endpoint", "endpoint", ep.Addr)
			return
		}
		hdr := append(transport.TCPHeader(ep.Addr), prefix...)
		if _, err := tc.Write(hdr); err != nil {
			tc.Close()
			return
		}
		// TLS in the path: bytes must pass through user space to be encrypted; the
		// app's side is read and written with raw system calls (netconn.NewRaw).
		res := tcpfwd.PipeIdle(netconn.NewRaw(raw), tc, nil, nil, s.tcpIdleTimeout())
		src.AddSpliced(res.AToB, res.BToA, res.Err)
		return
	}
	d := net.Dialer{Timeout: s.opts.ConnectTimeout}
	c, err := d.DialContext(ctx, "tcp", ep.Addr.String())
	done(err)
	if err != nil {
		s.log.V(1).Info("Cannot reach endpoint", "endpoint", ep.Addr, "error", err.Error())
		return
	}
	dstConn := c.(*net.TCPConn)
	dstSeries := s.opts.Metrics.TCP(metrics.TCPKey{Dir: metrics.Outbound, Peer: metrics.Dst, NoTLSReason: noTLSReason, Dst: promtext.Labels(ep.MetricLabels)})
	dstSeries.Open()
	// Both ends are bare *net.TCPConn: splice(2), zero copy (see tcpfwd.Pipe).
	res := tcpfwd.PipeIdle(raw, dstConn, prefix, nil, s.tcpIdleTimeout())
	src.AddSpliced(res.AToB-int64(len(prefix)), res.BToA, res.Err)
	dstSeries.AddBytes(uint64(res.BToA), uint64(res.AToB))
	dstSeries.Close(0, 0, tcpfwd.Errno(res.Err))
}

// peekConn reads detection's buffered bytes first, counts through cc, and closes cc
// (which records the close) when the HTTP server closes the connection.
type peekConn struct {
	*detect.Conn
	cc closeWriter // the connection under the detection buffer, maybe TLS
}

type closeWriter interface {
	Close() error
	CloseWrite() error
}

func (p *peekConn) Close() error      { return p.cc.Close() }
func (p *peekConn) CloseWrite() error { return p.cc.CloseWrite() }

// lookupAddr asks the source about a connection's original destination.
func (s *Server) lookupAddr(st *state, dst netip.AddrPort) *api.DestinationConfig {
	if s.opts.Source == nil {
		return st.Static.Lookup(context.Background(), destination.Target{Addr: dst})
	}
	return s.opts.Source.Lookup(context.Background(), destination.Target{Addr: dst})
}
