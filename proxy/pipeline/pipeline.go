// Package pipeline is what happens to one HTTP request the proxy accepted, in the
// order it happens. Outbound (an app's request): the destination's route
// (routed.go), its filters, a backend by weight, an endpoint by the backend's
// balancer, then the attempts (attempts.go) each forwarded through the transport
// that reaches the endpoint (forward.go), retried per the route's policy (retry.go
// decides); every request and attempt is measured (measure.go). Inbound (a peer
// proxy's or an unmeshed client's request): the relay target and the port policy
// (proxy/inboundpolicy), then forward to the local app.
//
// It serves http.Handlers (ServeOutbound, ServeInbound) to whichever server read the
// request: Weft's HTTP/1.1 and HTTP/2 servers or net/http's. It knows nothing of
// listeners or connections beyond the ConnInfo the accept loop (proxy/server) put in
// the request's context.
package pipeline

import (
	"cmp"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/weftmesh/weft/internal/grpcwire"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/destination"
	"github.com/weftmesh/weft/proxy/inboundpolicy"
	"github.com/weftmesh/weft/proxy/internal/httpmsg"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/ratelimit"
	"github.com/weftmesh/weft/proxy/router"
	"github.com/weftmesh/weft/proxy/tap"
	"github.com/weftmesh/weft/proxy/tracing"
	"github.com/weftmesh/weft/proxy/transport"
)

// Headers that travel between Weft proxies on weft.h2/weft.h1 connections. They are
// removed from every request an app sends (so an app cannot steer the inbound
// proxy) and removed by the inbound proxy before the request reaches the app.
const (
	hdrDst   = "Weft-Dst"   // the backend ip:port
	hdrProto = "Weft-Proto" // "h1" or "h2": what the backend must be spoken to in
	// hdrError says why the proxy itself answered with an error status.
	hdrError = httpmsg.HeaderProxyError
	// hdrUnprocessed, on an inbound proxy's error answer to a peer proxy, says that
	// no application saw the request (its application refused the connection: it
	// is gone, or going), so the client proxy sends it to another endpoint. Removed
	// from every response an application sends (forward), so that no application
	// can make a client proxy send a request it has seen again.
	hdrUnprocessed = "Weft-Unprocessed"
)

// ConnInfo is what the accept loop learned about a connection before handing it to
// an HTTP server; handlers read it from the request context (ConnInfoFrom).
type ConnInfo struct {
	OrigDst netip.AddrPort
	// Client is the address the connection came from (inbound: the client the
	// policy's networks are about).
	Client netip.AddrPort
	Mesh   bool   // inbound: arrived over mTLS from a peer proxy
	PeerID string // inbound mesh: the client's verified SPIFFE ID
	// H1Checked: Weft's HTTP/1.1 server checked the whole header of the request it
	// handed over with the connection; taken by that request (h1.Guard).
	H1Checked atomic.Bool
}

type connInfoKey struct{}

// WithConnInfo returns ctx carrying info.
func WithConnInfo(ctx context.Context, info *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, info)
}

// ConnInfoFrom is the ConnInfo of a request's connection (empty when none).
func ConnInfoFrom(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*ConnInfo)
	if ci == nil {
		return &ConnInfo{}
	}
	return ci
}

// Snapshot is the configuration requests read: swapped whole by the accept loop's
// SetConfig, read once per request.
type Snapshot struct {
	Index  *config.Index
	Static *destination.Static
}

// Options are the pipeline's collaborators; the accept loop owns them and shares
// them with its opaque TCP path.
type Options struct {
	Log     logr.Logger
	Metrics *metrics.Registry
	// Source answers about destinations; nil: the Snapshot's static ones.
	Source destination.Source
	// Snapshot returns the current configuration.
	Snapshot func() *Snapshot
	Dests    *destination.Cache
	// Out and In reach plaintext endpoints and the local app; Mesh peer proxies.
	Out, In *transport.Plain
	Mesh    *transport.Mesh
	// Fallback decides how requests to addresses the Source has not described go
	// out: mTLS to a peer proxy that answers there, plaintext, or refused.
	Fallback *transport.Fallback
	Policy   *inboundpolicy.Checker
	// ErrorLog receives httputil.ReverseProxy's errors (Upgrade requests).
	ErrorLog *log.Logger
	// Mirror bounds the copies RequestMirror filters make (mirror.go).
	Mirror MirrorOptions
	// Tracer reports a span per request on each side (traced.go); nil or off: no
	// tracing work.
	Tracer *tracing.Tracer
	// Tap receives the metadata of requests while a tap stream is open (tap.go);
	// nil: never.
	Tap *tap.Tap
}

// Pipeline serves the requests of both directions.
type Pipeline struct {
	o Options
	// upgradeProxy carries Upgrade requests (WebSocket and the like): see
	// newUpgradeProxy.
	upgradeProxy *httputil.ReverseProxy
	// mirrorOpts are o.Mirror with defaults; mirrorsInFlight counts the proxy's
	// RequestMirror copies in flight (mirror.go).
	mirrorOpts      MirrorOptions
	mirrorsInFlight atomic.Int64
}

// New returns a pipeline over o.
func New(o Options) *Pipeline {
	p := &Pipeline{o: o, mirrorOpts: o.Mirror}
	p.mirrorOpts.defaults()
	p.upgradeProxy = p.newUpgradeProxy()
	return p
}

// ServeOutbound routes a request an app sent: the source is asked about its
// authority, then its connection's original destination. A known destination is
// routed and balanced (serveRouted); an unknown one is forwarded to the original
// destination as it is, and still measured.
func (p *Pipeline) ServeOutbound(w http.ResponseWriter, r *http.Request) {
	if sp := p.o.Tracer.Start(tracing.Client, r); sp != nil {
		p.serveTraced(sp, w, r, p.serveOutbound)
		return
	}
	p.serveOutbound(w, r)
}

func (p *Pipeline) serveOutbound(w http.ResponseWriter, r *http.Request) {
	ci := ConnInfoFrom(r.Context())
	delete(r.Header, hdrDst)
	delete(r.Header, hdrProto)
	// Looked up per request, so a configuration change reaches long-lived
	// keep-alive and HTTP/2 connections too.
	cfg := p.lookupHTTP(r, ci.OrigDst)
	if cfg != nil && cfg.ExternalName != "" {
		p.serveExternalName(w, r, cfg, ci.OrigDst)
		return
	}
	if cfg != nil {
		p.serveRouted(w, r, p.o.Dests.Get(cfg))
		return
	}
	p.serveUndescribed(w, r, ci.OrigDst)
}

// serveUndescribed forwards a request to an address the source has not described, as
// the fallback decides: over mTLS to the peer proxy that proved a mesh identity there
// (with Weft-Dst the original destination), in plaintext, or not at all (Strict).
func (p *Pipeline) serveUndescribed(w http.ResponseWriter, r *http.Request, dst netip.AddrPort) {
	noAnswer := p.o.Source != nil && destination.NoAnswer(p.o.Source, destination.Target{Addr: dst})
	d := p.o.Fallback.Decide(r.Context(), dst, noAnswer)
	var up *upstream
	var peerID string
	switch d.Way {
	case transport.GoRefused:
		p.o.Log.V(1).Info("Refused a request in plaintext", "destination", dst, "reason", d.Why)
		series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: r.Host})
		series.Request()
		w, end := p.tapOwnAnswer(w, r, nil)
		// gRPC clients get UNAVAILABLE, as for an unreachable endpoint.
		p.answerError(w, r, series, nil, time.Now(), http.StatusBadGateway, grpcwire.Unavailable,
			"plaintext refused: meshTLSMode is Strict and no proxy of the mesh answered at the destination")
		end()
		return
	case transport.GoMeshed:
		ep := &balance.Endpoint{Addr: dst, ProxyAddr: d.Peer.Addr, Identity: d.Peer.ID}
		up = &upstream{Hop: transport.Endpoint(p.o.Mesh, p.o.Out, ep, r), ep: ep}
		up.Transport = p.o.Fallback.ForgetOnError(up.Transport, dst.Addr())
		peerID = d.Peer.ID
	default:
		r = r.WithContext(transport.WithNoTLSReason(r.Context(), d.NoTLSReason))
		up = &upstream{Hop: transport.Hop{Transport: p.o.Out.For(r), Host: dst.String()}}
	}
	if sp := spanOf(w); sp != nil {
		sp.SetPeer(peerID, dst.String())
	}
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: r.Host, PeerID: peerID})
	p.proxy(w, r, up, series)
}

// serveExternalName forwards a request for an ExternalName Service to its external
// name and the Service's port, in plaintext: nothing in the mesh vouches for it.
func (p *Pipeline) serveExternalName(w http.ResponseWriter, r *http.Request, cfg *api.DestinationConfig, dst netip.AddrPort) {
	port := cfg.GetService().GetPort()
	if port == 0 {
		port = uint32(dst.Port())
	}
	up := &upstream{Hop: transport.Hop{Transport: p.o.Out.For(r), Host: net.JoinHostPort(cfg.ExternalName, strconv.Itoa(int(port)))}}
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Outbound, Authority: r.Host})
	p.proxy(w, r, up, series)
}

// lookupHTTP asks the source about a request (destination.LookupHTTP).
func (p *Pipeline) lookupHTTP(r *http.Request, dst netip.AddrPort) *api.DestinationConfig {
	if p.o.Source == nil {
		return destination.LookupHTTP(context.Background(), p.o.Snapshot().Static, r.Host, dst)
	}
	return destination.LookupHTTP(r.Context(), p.o.Source, r.Host, dst)
}

// ServeInbound delivers a request to the local app: to the backend named by the peer
// proxy (mesh) or to the connection's original destination (plaintext), after the
// inbound policy allowed the client.
func (p *Pipeline) ServeInbound(w http.ResponseWriter, r *http.Request) {
	if sp := p.o.Tracer.Start(tracing.Server, r); sp != nil {
		p.serveTraced(sp, w, r, p.serveInbound)
		return
	}
	p.serveInbound(w, r)
}

func (p *Pipeline) serveInbound(w http.ResponseWriter, r *http.Request) {
	ci := ConnInfoFrom(r.Context())
	dst := ci.OrigDst
	proto, host := "", ""
	if ci.Mesh {
		v := r.Header.Get(hdrDst)
		ap, err := config.ParseAddrPort(v)
		if err != nil {
			w.Header().Set(hdrError, "missing or bad weft-dst")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		dst = ap
		host = canonicalAddrPort(v, ap)
		proto = r.Header.Get(hdrProto)
	}
	// Before the policy: a target that is not the pod's application is refused
	// whoever asks, and counted as such.
	if why, ok := p.o.Policy.RelayAllowed(dst, cmp.Or(ci.PeerID, r.RemoteAddr)); !ok {
		w.Header().Set(hdrError, "not an application address of this pod")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, inboundpolicy.RefusedMessage(dst, why))
		return
	}
	// The policy in force now, for every request: a change applies to the next
	// request of a connection that is already open.
	cl := inboundpolicy.Client{Addr: ci.Client.Addr().Unmap(), ID: ci.PeerID}
	delete(r.Header, hdrDst)
	delete(r.Header, hdrProto)
	d := p.o.Policy.Request(r, dst, cl)
	if sp := spanOf(w); sp != nil {
		traceInbound(sp, d, ci)
	}
	if d.Verdict != inboundpolicy.Allowed {
		if p.o.Tap.Active() {
			// A refusal is what a tap is most often opened to see.
			p.refuseInboundTapped(w, r, d, cl, dst, proto)
			return
		}
		p.refuseInbound(w, r, d, cl)
		return
	}
	if host == "" {
		host = dst.String()
	}
	up := &upstream{Hop: transport.Hop{Host: host}, inbound: true, meshProto: proto}
	switch proto {
	case "h1":
		up.Transport = p.o.In.H1
	case "h2":
		up.Transport = p.o.In.H2
	default:
		up.Transport = p.o.In.For(r)
	}
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Inbound, Authority: r.Host, PeerID: ci.PeerID})
	p.proxy(w, r, up, series)
}

// refuseInbound answers a request the inbound policy did not admit: 404 (gRPC
// UNIMPLEMENTED) when the server's routes do not match it, 403 with a body naming
// the server (gRPC PERMISSION_DENIED, trailers-only) when no authorization admits the
// client. Counted in the inbound request series like any answer.
func (p *Pipeline) refuseInbound(w http.ResponseWriter, r *http.Request, d inboundpolicy.Decision, cl inboundpolicy.Client) {
	series := p.o.Metrics.HTTP(metrics.HTTPKey{Dir: metrics.Inbound, Authority: r.Host, PeerID: cl.ID})
	series.Request()
	start := time.Now()
	if d.Verdict == inboundpolicy.NoRoute {
		p.answerError(w, r, series, nil, start, http.StatusNotFound, grpcwire.Unimplemented, "no route")
		return
	}
	if d.Verdict == inboundpolicy.RateLimited {
		p.answerRateLimited(w, r, series, start, d)
		return
	}
	msg := inboundpolicy.DeniedMessage(d, cl)
	w.Header().Set(hdrError, "unauthorized")
	if router.IsGRPC(r) {
		writeGRPCError(w, grpcwire.PermissionDenied, strings.TrimSuffix(msg, "\n"))
		series.Response(http.StatusOK, true, time.Since(start))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, msg)
	series.Response(http.StatusForbidden, false, time.Since(start))
}

// answerRateLimited answers a request a rate limit refused: 429 Too Many Requests
// with Retry-After in whole seconds (RFC 6585 section 4) and a body naming the policy;
// gRPC: RESOURCE_EXHAUSTED in a trailers-only response, the code gRPC clients read as
// "back off" (a 429 would reach them as UNAVAILABLE, which they may retry at once).
func (p *Pipeline) answerRateLimited(w http.ResponseWriter, r *http.Request, series *metrics.HTTPSeries, start time.Time, d inboundpolicy.Decision) {
	msg := inboundpolicy.RateLimitedMessage(d)
	w.Header().Set(hdrError, "rate limited")
	w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(d.RetryAfter)))
	if router.IsGRPC(r) {
		writeGRPCError(w, grpcwire.ResourceExhausted, strings.TrimSuffix(msg, "\n"))
		series.Response(http.StatusOK, true, time.Since(start))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	io.WriteString(w, msg)
	series.Response(http.StatusTooManyRequests, false, time.Since(start))
}

// upstream is where one request goes, chosen by the handler and read by forward (or
// the upgrade proxy's Rewrite and Transport).
type upstream struct {
	transport.Hop
	// attempts is set for requests to a known destination: the Hop is its first
	// attempt's, and attempts retries.
	attempts *attempts
	// inbound: the request came to the inbound side; meshProto is the protocol the
	// peer proxy said its client spoke (Weft-Proto, "h1" or "h2"; "" not meshed).
	inbound   bool
	meshProto string
	// ep is the endpoint of an outbound request without attempts that goes to a
	// peer proxy (the fallback's), for the tap.
	ep *balance.Endpoint
	// tap is the request's tap exchange (nil: not tapped).
	tap *tap.Exchange
	// mw is the writer proxy measures the response through, here to share the
	// upstream's allocation.
	mw metricsWriter
}

// canonicalAddrPort is ap.String(), which v was parsed into: v itself when it is
// already in that form (what a peer proxy sends), saving the string's allocation.
func canonicalAddrPort(v string, ap netip.AddrPort) string {
	var buf [len("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%zone]:65535")]byte
	if b := ap.AppendTo(buf[:0]); string(b) == v {
		return v
	}
	return ap.String()
}

type upstreamKey struct{}

// roundTrip sends r through the upstream's transport, with its attempts' retries and
// timeouts when it has them.
func (up *upstream) roundTrip(r *http.Request) (*http.Response, error) {
	if up.attempts != nil {
		return up.attempts.roundTrip(r, up.Transport)
	}
	return up.Transport.RoundTrip(r)
}
