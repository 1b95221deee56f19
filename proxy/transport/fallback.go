package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/identity"
)

// TLSMode says whether the proxy may send plaintext to an in-cluster address it
// cannot prove is unmeshed (the Mesh's spec.proxy.meshTLSMode).
type TLSMode int

const (
	// Opportunistic: mTLS when the address's proxy answers, else plaintext (counted).
	Opportunistic TLSMode = iota
	// Strict: plaintext only to what discovery says is unmeshed and to addresses
	// outside the cluster networks; anything else that mTLS cannot reach is refused.
	Strict
)

// ParseTLSMode reads Opportunistic or Strict ("" is Opportunistic).
func ParseTLSMode(s string) (TLSMode, error) {
	switch s {
	case "", "Opportunistic":
		return Opportunistic, nil
	case "Strict":
		return Strict, nil
	}
	return 0, fmt.Errorf("mesh TLS mode %q: want Opportunistic or Strict", s)
}

func (m TLSMode) String() string {
	if m == Strict {
		return "Strict"
	}
	return "Opportunistic"
}

// The no_tls_reason label values of plaintext outbound connections. The first is the
// Linkerd proxy's; the second is Weft's own.
const (
	// NoTLSNotProvided: discovery answered and gave no identity (an unmeshed
	// endpoint, or an address it does not know).
	NoTLSNotProvided = "not_provided_by_service_discovery"
	// NoTLSDiscoveryUnavailable: discovery did not answer (unreachable, or not in
	// time) and no peer proxy answered at the address.
	NoTLSDiscoveryUnavailable = "discovery_unavailable"
)

// Way is how a connection to an address discovery has not described goes out.
type Way int

const (
	// GoPlain: plaintext to the address.
	GoPlain Way = iota
	// GoMeshed: mTLS to the peer proxy that answered at the address.
	GoMeshed
	// GoRefused: not at all (Strict mode).
	GoRefused
)

// Decision is what Fallback.Decide chose.
type Decision struct {
	Way Way
	// Peer is the peer proxy (GoMeshed): the address's inbound port and the identity
	// it proved.
	Peer Peer
	// NoTLSReason labels a GoPlain connection's metrics.
	NoTLSReason string
	// Why says, for logs and the proxy's error header, why a connection was refused.
	Why string
}

// FallbackOptions configure a Fallback.
type FallbackOptions struct {
	Mode TLSMode
	// ClusterNetworks are where meshed pods may be (the Mesh's clusterNetworks).
	// Outside them nothing is probed or refused. Empty: nowhere.
	ClusterNetworks []netip.Prefix
	// InboundPort is where a peer proxy accepts mTLS: this proxy's own inbound port,
	// as every injected proxy of the mesh has the same. Default 4143.
	InboundPort uint16
	// Timeout bounds one probe, connect and handshake. Default 1s: a peer proxy in
	// the cluster answers in milliseconds, and in Opportunistic mode a connection
	// waits this long before it goes plaintext to an address that drops packets.
	Timeout time.Duration
	// TTL is how long a probe's result is reused for its IP, so that an address
	// costs at most one probe per TTL. Default 10s: a pod that has just been
	// injected (or an IP reused by another pod) is noticed within it.
	TTL time.Duration
	// MaxEntries bounds the IPs whose result is kept (and those whose plaintext
	// connections are remembered). Default 4096. Past it, expired results are
	// dropped, and if none has expired the new result is not kept.
	MaxEntries int
}

// Fallback decides how to reach an address that discovery has not described (it is
// unreachable, has not answered yet, or does not know the address): without it, such
// connections went out in plaintext even to meshed pods, so an attacker who could
// slow the control plane could force traffic off mTLS.
//
// Inside the cluster networks it probes the address's inbound port with mTLS first;
// a peer that proves an identity of this trust domain gets the connection over the
// mesh transport, held to that identity. Otherwise Opportunistic mode falls back to
// plaintext, Strict mode refuses.
type Fallback struct {
	o    FallbackOptions
	mesh *Mesh

	mu      sync.Mutex
	results map[netip.Addr]*probeEntry
	// plain counts, per IP, plaintext connections sent since the IP was last known
	// to be meshed; plainIPs is its size, read without the lock on the hot path.
	plain    map[netip.Addr]uint64
	plainIPs atomic.Int64

	probes            [numProbeResults]atomic.Uint64
	plaintextToMeshed atomic.Uint64
	refused           atomic.Uint64

	now func() time.Time // tests
}

type probeResult int

const (
	probeMeshed probeResult = iota
	probeNotMeshed
	probeTimeout
	probeError
	numProbeResults
)

var probeResultNames = [numProbeResults]string{"meshed", "not_meshed", "timeout", "error"}

type probeEntry struct {
	done    chan struct{} // closed once res and id are set
	res     probeResult
	id      string
	expires time.Time
}

// NewFallback returns a Fallback that reaches peers through mesh.
func NewFallback(o FallbackOptions, mesh *Mesh) *Fallback {
	if o.InboundPort == 0 {
		o.InboundPort = 4143
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 4096
	}
	return &Fallback{o: o, mesh: mesh, results: map[netip.Addr]*probeEntry{}, plain: map[netip.Addr]uint64{}, now: time.Now}
}

// Mode is the fallback's TLS mode.
func (f *Fallback) Mode() TLSMode { return f.o.Mode }

// InCluster says whether an address is in the cluster networks.
func (f *Fallback) InCluster(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range f.o.ClusterNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Decide says how a connection to dst goes out when discovery has not described it;
// noAnswer says discovery did not answer at all (rather than answering that it
// does not know dst). It may wait for a probe, bounded by ctx and the probe timeout.
func (f *Fallback) Decide(ctx context.Context, dst netip.AddrPort, noAnswer bool) Decision {
	reason := NoTLSNotProvided
	if noAnswer {
		reason = NoTLSDiscoveryUnavailable
	}
	if f == nil || !f.InCluster(dst.Addr()) {
		return Decision{Way: GoPlain, NoTLSReason: reason}
	}
	ip := dst.Addr().Unmap()
	res, id := f.probe(ctx, ip)
	if res == probeMeshed {
		return Decision{Way: GoMeshed, Peer: Peer{Addr: netip.AddrPortFrom(ip, f.o.InboundPort), ID: id}}
	}
	if f.o.Mode == Strict {
		f.refused.Add(1)
		return Decision{Way: GoRefused, Why: fmt.Sprintf("meshTLSMode is Strict and %s is in the cluster networks, but discovery has not described it and no proxy of the mesh answered on %s (%s)",
			dst, netip.AddrPortFrom(ip, f.o.InboundPort), probeResultNames[res])}
	}
	f.notePlain(ip)
	return Decision{Way: GoPlain, NoTLSReason: reason}
}

// probe returns the cached result for ip, or probes it (once for concurrent callers).
func (f *Fallback) probe(ctx context.Context, ip netip.Addr) (probeResult, string) {
	now := f.now()
	f.mu.Lock()
	e := f.results[ip]
	if e != nil {
		select {
		case <-e.done:
			if now.Before(e.expires) {
				f.mu.Unlock()
				return e.res, e.id
			}
			e = nil // expired: probe again
		default:
			// In flight: share it.
			f.mu.Unlock()
			select {
			case <-e.done:
				return e.res, e.id
			case <-ctx.Done():
				return probeTimeout, ""
			}
		}
	}
	e = &probeEntry{done: make(chan struct{})}
	_, replaces := f.results[ip] // an expired result of ip
	if replaces || f.makeRoom(now) {
		f.results[ip] = e
	}
	f.mu.Unlock()

	e.res, e.id = f.run(ctx, ip)
	f.probes[e.res].Add(1)
	e.expires = f.now().Add(f.o.TTL)
	if !f.hasIdentity() {
		// Says nothing about the peer: not kept, so that once this proxy has its
		// certificate the next connection probes.
		e.expires = time.Time{}
	}
	close(e.done)
	if e.res == probeMeshed {
		f.ObserveMeshed(ip)
	}
	return e.res, e.id
}

// makeRoom says whether one more result may be kept, dropping expired ones when the
// map is full. f.mu is held.
func (f *Fallback) makeRoom(now time.Time) bool {
	if len(f.results) < f.o.MaxEntries {
		return true
	}
	for ip, e := range f.results {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(f.results, ip)
			}
		default:
		}
	}
	return len(f.results) < f.o.MaxEntries
}

// run opens an mTLS connection to ip's inbound port and closes it: it tells whether
// a proxy of this mesh listens there and which identity it proves.
func (f *Fallback) run(ctx context.Context, ip netip.Addr) (probeResult, string) {
	if !f.hasIdentity() {
		// Without a certificate no peer would accept us: nothing to learn.
		return probeError, ""
	}
	// Detached from the caller: its result is shared and cached, so the first
	// caller going away must not make it a timeout for everyone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.o.Timeout)
	defer cancel()
	addr := netip.AddrPortFrom(ip, f.o.InboundPort)
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return classify(err), ""
	}
	defer raw.Close()
	// The probe is the handshake alone: weft.tcp is offered so that the peer takes
	// it for a mesh connection (not an app's TLS), and it ends before any header.
	tc := tls.Client(raw, f.mesh.o.Identity.ProbeConfig(identity.ALPNTCP))
	if err := tc.HandshakeContext(ctx); err != nil {
		if r := classify(err); r != probeError {
			return r, ""
		}
		// A handshake that fails otherwise is not our mesh: a plaintext server on
		// the port, another mesh's certificate, another trust domain.
		return probeNotMeshed, ""
	}
	st := tc.ConnectionState()
	return probeMeshed, identity.PeerID(&st)
}

// hasIdentity says whether this proxy has a certificate to probe with.
func (f *Fallback) hasIdentity() bool {
	return f.mesh != nil && f.mesh.o.Identity != nil && f.mesh.o.Identity.Current() != nil
}

// classify maps a dial or handshake error to a probe result.
func classify(err error) probeResult {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		return probeNotMeshed
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return probeTimeout
	}
	return probeError
}

// Forget drops ip's probe result, so that the next connection probes again: called
// when reaching the peer a probe found failed (the pod behind the IP may have changed,
// an IP reused by another workload proves another identity).
func (f *Fallback) Forget(ip netip.Addr) {
	if f == nil {
		return
	}
	ip = ip.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.results[ip]; e != nil {
		select {
		case <-e.done:
			delete(f.results, ip)
		default: // in flight: its result is fresh
		}
	}
}

// ForgetOnError wraps the round tripper of a request sent to a peer a probe found,
// forgetting the probe's result when the request cannot be sent (see Forget).
func (f *Fallback) ForgetOnError(rt http.RoundTripper, ip netip.Addr) http.RoundTripper {
	return forgetOnError{rt: rt, f: f, ip: ip}
}

type forgetOnError struct {
	rt http.RoundTripper
	f  *Fallback
	ip netip.Addr
}

func (t forgetOnError) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		t.f.Forget(t.ip)
	}
	return resp, err
}

// notePlain remembers a plaintext connection to ip, so that it is counted in
// weft_outbound_plaintext_to_meshed_total if ip turns out to be meshed.
func (f *Fallback) notePlain(ip netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.plain[ip]; !ok {
		if len(f.plain) >= f.o.MaxEntries {
			return
		}
		f.plainIPs.Add(1)
	}
	f.plain[ip]++
}

// ObserveMeshed records that ip is known to be meshed (a probe, or discovery gave an
// endpoint at it an identity): the plaintext connections sent to it before are
// counted as plaintext to a meshed destination. Cheap when there are none.
func (f *Fallback) ObserveMeshed(ip netip.Addr) {
	if f == nil || f.plainIPs.Load() == 0 {
		return
	}
	ip = ip.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.plain[ip]; ok {
		delete(f.plain, ip)
		f.plainIPs.Add(-1)
		f.plaintextToMeshed.Add(n)
	}
}

// WriteMetrics writes the fallback's counters (Weft's own: weft_*).
func (f *Fallback) WriteMetrics(out io.Writer) error {
	w := promtext.NewWriter(out)
	w.Family("weft_outbound_mesh_probe_total", promtext.Counter,
		"mTLS probes of the inbound port of addresses in the cluster networks that discovery had not described, by result.")
	for r := range numProbeResults {
		w.Uint("weft_outbound_mesh_probe_total", promtext.L("result", probeResultNames[r]), f.probes[r].Load())
	}
	w.Family("weft_outbound_plaintext_to_meshed_total", promtext.Counter,
		"WARNING when it grows: plaintext connections sent to an address later known (by a probe or discovery) to be a meshed pod.")
	w.Uint("weft_outbound_plaintext_to_meshed_total", "", f.plaintextToMeshed.Load())
	w.Family("weft_outbound_plaintext_refused_total", promtext.Counter,
		"Connections and requests refused because meshTLSMode is Strict and the address could not be reached over mTLS.")
	w.Uint("weft_outbound_plaintext_refused_total", "", f.refused.Load())
	return w.Flush()
}
