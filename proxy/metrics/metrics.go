// Package metrics keeps the proxy's Prometheus metrics with the Linkerd proxy's names
// and labels, and writes them in the Prometheus text format.
//
// It is purpose-built rather than a general registry so the hot path stays cheap:
// series are found by a comparable struct key under a read lock (no allocation), and
// counters are atomics. Label strings are rendered only when /metrics is scraped.
package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

// Direction is inbound or outbound.
type Direction uint8

const (
	Inbound Direction = iota
	Outbound
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Peer says which side of the proxy a TCP connection is on.
type Peer uint8

const (
	Src Peer = iota // the connection the proxy accepted
	Dst             // the connection the proxy opened
)

func (p Peer) String() string {
	if p == Src {
		return "src"
	}
	return "dst"
}

// RelayRefusal is why the inbound side refused to forward to a target (a weft-dst
// header or a redirected connection's original destination).
type RelayRefusal uint8

const (
	// RelayLoopback: a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.1), where
	// the pod's localhost-only services and the proxy's admin server listen.
	RelayLoopback RelayRefusal = iota
	// RelayNotUnicast: unspecified (0.0.0.0, ::), link-local, multicast or broadcast,
	// or an address with an IPv6 zone.
	RelayNotUnicast
	// RelayProxyPort: one of the proxy's own ports (inbound, outbound, admin, tap).
	RelayProxyPort
	// RelayNotLocal: an address this host does not have (another pod, another node).
	RelayNotLocal
	NumRelayRefusals
)

func (r RelayRefusal) String() string {
	switch r {
	case RelayLoopback:
		return "loopback"
	case RelayNotUnicast:
		return "not_unicast"
	case RelayProxyPort:
		return "proxy_port"
	}
	return "not_local"
}

// LatencyBucketsMs are the Linkerd proxy's response_latency_ms bucket bounds.
var LatencyBucketsMs = [...]float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// HTTPKey identifies the request-level series.
type HTTPKey struct {
	Dir       Direction
	Authority string
	// PeerID is the client's (inbound) or server's (outbound) SPIFFE ID when the
	// connection is mTLS; "" means tls="no_identity".
	PeerID string
	// Dst are the outbound endpoint's labels (DstLabels), rendered once per endpoint
	// so that finding the series costs a string comparison, not an allocation.
	Dst promtext.Labels
}

// TCPKey identifies the connection-level series.
type TCPKey struct {
	Dir    Direction
	Peer   Peer
	PeerID string // "" means tls="no_identity"
	// NoTLSReason is the no_tls_reason label of a tls="no_identity" series, as the
	// Linkerd proxy's (e.g. not_provided_by_service_discovery); "" leaves it out.
	NoTLSReason string
	// Dst are the labels of the endpoint an outbound connection goes to (DstLabels).
	Dst promtext.Labels
}

type respKey struct {
	status  uint16
	failure bool
}

// HTTPSeries holds one HTTPKey's counters.
type HTTPSeries struct {
	requests atomic.Uint64
	responses
}

// responses counts responses by status and classification, with a latency histogram
// per status.
type responses struct {
	mu   sync.RWMutex
	resp map[respKey]*atomic.Uint64
	hist map[uint16]*histogram
}

func newResponses() responses {
	return responses{resp: map[respKey]*atomic.Uint64{}, hist: map[uint16]*histogram{}}
}

type histogram struct {
	// buckets are per-bucket counts (the last is above every bound); their sum is the
	// histogram's count, so no separate counter is kept on the hot path.
	buckets [len(LatencyBucketsMs) + 1]atomic.Uint64
	sumUs   atomic.Uint64 // microseconds, to keep the sum an integer atomic
}

// TCPSeries holds one TCPKey's counters.
type TCPSeries struct {
	open, readBytes, writeBytes atomic.Uint64
	openConns                   atomic.Int64
	mu                          sync.Mutex
	closes                      map[string]uint64 // by errno label
}

// Registry holds all series.
type Registry struct {
	mu     sync.RWMutex
	http   map[HTTPKey]*HTTPSeries
	tcp    map[TCPKey]*TCPSeries
	routes map[RouteKey]*RouteSeries

	// amu guards authz, the authorization series (authz.go).
	amu   sync.RWMutex
	authz [numAuthzMetrics]map[AuthzKey]*atomic.Uint64
	// AuthzOverflow counts decisions counted under an overflow series.
	AuthzOverflow atomic.Uint64
	// faults are the injected faults (fault.go).
	faults faultSeries

	cmu        sync.Mutex
	collectors []func(io.Writer)

	// mmu guards mirrors, the RequestMirror series (mirror.go).
	mmu     sync.RWMutex
	mirrors map[MirrorKey]*MirrorSeries

	DetectTimeouts [2]atomic.Uint64 // by Direction
	// RelayRefused counts inbound requests and connections the proxy refused to
	// forward because their target is not one of the pod's application addresses,
	// by RelayRefusal.
	RelayRefused [NumRelayRefusals]atomic.Uint64
	// ConnLimitRefused counts accepted connections closed at once because the
	// direction's connection limit was reached, by Direction.
	ConnLimitRefused [2]atomic.Uint64
	// CertExpiry returns the leaf's NotAfter (zero when none) at scrape time.
	CertExpiry func() time.Time
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{http: map[HTTPKey]*HTTPSeries{}, tcp: map[TCPKey]*TCPSeries{}, routes: map[RouteKey]*RouteSeries{}}
}

// MaxHTTPSeries bounds the request-level series. The authority label comes from the
// requests an app sends, so without a bound a client inventing Host headers would
// grow the proxy's memory without limit; past the bound, new authorities are counted
// under OverflowAuthority.
const MaxHTTPSeries = 2000

// OverflowAuthority is the authority label of requests past MaxHTTPSeries.
const OverflowAuthority = "overflow"

// MaxTCPSeries bounds the connection-level series, which grow with the endpoints
// (their Dst labels) an outbound proxy connects to.
const MaxTCPSeries = 2000

// HTTP returns the series for k, creating it on first use.
func (r *Registry) HTTP(k HTTPKey) *HTTPSeries {
	r.mu.RLock()
	s := r.http[k]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.http[k]; s == nil && len(r.http) >= MaxHTTPSeries {
		k.Authority, k.Dst = OverflowAuthority, ""
		s = r.http[k]
	}
	if s == nil {
		s = &HTTPSeries{responses: newResponses()}
		r.http[k] = s
	}
	return s
}

// TCP returns the series for k, creating it on first use.
func (r *Registry) TCP(k TCPKey) *TCPSeries {
	r.mu.RLock()
	s := r.tcp[k]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.tcp[k]; s == nil && len(r.tcp) >= MaxTCPSeries {
		// Endpoints' labels are what grows the connection series: past the bound,
		// a new endpoint's connections are counted without them.
		k.Dst = ""
		s = r.tcp[k]
	}
	if s == nil {
		s = &TCPSeries{closes: map[string]uint64{}}
		r.tcp[k] = s
	}
	return s
}

// Request counts one request.
func (s *HTTPSeries) Request() { s.requests.Add(1) }

// Response counts one finished response with its latency (request start to response
// headers).
func (s *HTTPSeries) Response(status int, failure bool, latency time.Duration) {
	s.record(status, failure, latency)
}

func (s *responses) record(status int, failure bool, latency time.Duration) {
	st := uint16(min(max(status, 0), math.MaxUint16))
	k := respKey{st, failure}
	s.mu.RLock()
	c, h := s.resp[k], s.hist[st]
	s.mu.RUnlock()
	if c == nil || h == nil {
		s.mu.Lock()
		if c = s.resp[k]; c == nil {
			c = new(atomic.Uint64)
			s.resp[k] = c
		}
		if h = s.hist[st]; h == nil {
			h = new(histogram)
			s.hist[st] = h
		}
		s.mu.Unlock()
	}
	c.Add(1)
	ms := float64(latency) / float64(time.Millisecond)
	i := 0
	for i < len(LatencyBucketsMs) && ms > LatencyBucketsMs[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumUs.Add(uint64(latency / time.Microsecond))
}

// Open counts an opened connection.
func (s *TCPSeries) Open() {
	s.open.Add(1)
	s.openConns.Add(1)
}

// Close counts a closed connection with the bytes read from and written to it, and
// the errno label ("" for a clean close).
func (s *TCPSeries) Close(read, written uint64, errno string) {
	s.openConns.Add(-1)
	s.readBytes.Add(read)
	s.writeBytes.Add(written)
	s.mu.Lock()
	s.closes[errno]++
	s.mu.Unlock()
}

// AddBytes adds traffic to a still-open connection's totals.
func (s *TCPSeries) AddBytes(read, written uint64) {
	s.readBytes.Add(read)
	s.writeBytes.Add(written)
}

// tlsLabels are the tls label and, for a verified peer, its identity under
// peerIDLabel (client_id inbound, server_id outbound), as the Linkerd proxy labels them.
func tlsLabels(l promtext.Labels, peerIDLabel, id string) promtext.Labels {
	if id == "" {
		return l.With("tls", "no_identity")
	}
	return l.With("tls", "true", peerIDLabel, id)
}

func peerIDLabel(d Direction) string {
	if d == Inbound {
		return "client_id"
	}
	return "server_id"
}

// WriteText writes every metric in the Prometheus text exposition format 0.0.4, through
// promtext (which also enforces the naming rule: Linkerd's names, or weft_*).
func (r *Registry) WriteText(out io.Writer) error {
	w := promtext.NewWriter(out)
	r.mu.RLock()
	httpKeys := make([]HTTPKey, 0, len(r.http))
	for k := range r.http {
		httpKeys = append(httpKeys, k)
	}
	tcpKeys := make([]TCPKey, 0, len(r.tcp))
	for k := range r.tcp {
		tcpKeys = append(tcpKeys, k)
	}
	r.mu.RUnlock()
	slices.SortFunc(httpKeys, func(a, b HTTPKey) int {
		return strings.Compare(fmt.Sprint(a.Dir, a.Authority, a.Dst, a.PeerID), fmt.Sprint(b.Dir, b.Authority, b.Dst, b.PeerID))
	})
	slices.SortFunc(tcpKeys, func(a, b TCPKey) int {
		return strings.Compare(fmt.Sprint(a.Dir, a.Peer, a.Dst, a.PeerID, a.NoTLSReason), fmt.Sprint(b.Dir, b.Peer, b.Dst, b.PeerID, b.NoTLSReason))
	})
	httpLabels := func(k HTTPKey) promtext.Labels {
		return tlsLabels(join(promtext.L("direction", k.Dir.String(), "authority", k.Authority), k.Dst), peerIDLabel(k.Dir), k.PeerID)
	}
	tcpLabels := func(k TCPKey) promtext.Labels {
		l := tlsLabels(join(promtext.L("direction", k.Dir.String(), "peer", k.Peer.String()), k.Dst), peerIDLabel(k.Dir), k.PeerID)
		if k.PeerID == "" && k.NoTLSReason != "" {
			l = l.With("no_tls_reason", k.NoTLSReason)
		}
		return l
	}
	series := func(k HTTPKey) *HTTPSeries {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.http[k]
	}
	tseries := func(k TCPKey) *TCPSeries {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.tcp[k]
	}

	w.Family("request_total", promtext.Counter, "Total count of HTTP requests.")
	for _, k := range httpKeys {
		w.Uint("request_total", httpLabels(k), series(k).requests.Load())
	}
	w.Family("response_total", promtext.Counter, "Total count of HTTP responses.")
	for _, k := range httpKeys {
		series(k).writeTotals(w, "response_total", httpLabels(k))
	}
	w.Family("response_latency_ms", promtext.Histogram, "Elapsed times between a request's headers being received and its response's headers being sent.")
	for _, k := range httpKeys {
		series(k).writeLatency(w, "response_latency_ms", httpLabels(k))
	}
	r.writeRoutes(w)
	r.writeMirrors(w)
	type tcpMetric struct {
		name, help string
		typ        promtext.Type
		val        func(*TCPSeries) int64
	}
	for _, m := range []tcpMetric{
		{"tcp_open_total", "Total count of opened connections.", promtext.Counter, func(s *TCPSeries) int64 { return int64(s.open.Load()) }},
		{"tcp_open_connections", "Number of currently-open connections.", promtext.Gauge, func(s *TCPSeries) int64 { return s.openConns.Load() }},
		{"tcp_read_bytes_total", "Total count of bytes read from peers.", promtext.Counter, func(s *TCPSeries) int64 { return int64(s.readBytes.Load()) }},
		{"tcp_write_bytes_total", "Total count of bytes written to peers.", promtext.Counter, func(s *TCPSeries) int64 { return int64(s.writeBytes.Load()) }},
	} {
		w.Family(m.name, m.typ, m.help)
		for _, k := range tcpKeys {
			w.Int(m.name, tcpLabels(k), m.val(tseries(k)))
		}
	}
	w.Family("tcp_close_total", promtext.Counter, "Total count of closed connections.")
	for _, k := range tcpKeys {
		s := tseries(k)
		s.mu.Lock()
		errnos := make([]string, 0, len(s.closes))
		for e := range s.closes {
			errnos = append(errnos, e)
		}
		slices.Sort(errnos)
		vals := make([]uint64, len(errnos))
		for i, e := range errnos {
			vals[i] = s.closes[e]
		}
		s.mu.Unlock()
		labels := tcpLabels(k)
		for i, e := range errnos {
			w.Uint("tcp_close_total", labels.With("errno", e), vals[i])
		}
	}
	r.writeAuthz(w)
	r.writeFaults(w)
	w.Family("weft_detect_timeout_total", promtext.Counter, "Connections treated as opaque TCP because protocol detection timed out.")
	for _, d := range []Direction{Inbound, Outbound} {
		w.Uint("weft_detect_timeout_total", promtext.L("direction", d.String()), r.DetectTimeouts[d].Load())
	}
	w.Family("weft_inbound_relay_refused_total", promtext.Counter, "Inbound requests and connections refused because their target is not an application address of this pod.")
	for i := range NumRelayRefusals {
		w.Uint("weft_inbound_relay_refused_total", promtext.L("reason", i.String()), r.RelayRefused[i].Load())
	}
	w.Family("weft_connection_limit_refused_total", promtext.Counter, "Accepted connections closed at once because the listener's connection limit was reached.")
	for _, d := range []Direction{Inbound, Outbound} {
		w.Uint("weft_connection_limit_refused_total", promtext.L("direction", d.String()), r.ConnLimitRefused[d].Load())
	}
	if r.CertExpiry != nil {
		w.Family("identity_cert_expiration_timestamp_seconds", promtext.Gauge, "Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).")
		var v int64
		if t := r.CertExpiry(); !t.IsZero() {
			v = t.Unix()
		}
		w.Int("identity_cert_expiration_timestamp_seconds", "", v)
	}
	r.cmu.Lock()
	collectors := slices.Clone(r.collectors)
	r.cmu.Unlock()
	for _, c := range collectors {
		// A collector gets the exposition's own writer: what it writes through
		// promtext.NewWriter(w) is held to the same naming rule.
		c(w)
	}
	writeProcess(w)
	return w.Flush()
}

// writeTotals writes one counter line per status and classification.
func (s *responses) writeTotals(w *promtext.Writer, name string, labels promtext.Labels) {
	s.mu.RLock()
	rks := make([]respKey, 0, len(s.resp))
	for rk := range s.resp {
		rks = append(rks, rk)
	}
	s.mu.RUnlock()
	slices.SortFunc(rks, func(a, b respKey) int {
		if a.status != b.status {
			return int(a.status) - int(b.status)
		}
		if a.failure == b.failure {
			return 0
		}
		if a.failure {
			return 1
		}
		return -1
	})
	for _, rk := range rks {
		s.mu.RLock()
		c := s.resp[rk]
		s.mu.RUnlock()
		class := "success"
		if rk.failure {
			class = "failure"
		}
		w.Uint(name, labels.With("status_code", strconv.Itoa(int(rk.status)), "classification", class), c.Load())
	}
}

// writeLatency writes one histogram per status.
func (s *responses) writeLatency(w *promtext.Writer, name string, labels promtext.Labels) {
	s.mu.RLock()
	sts := make([]uint16, 0, len(s.hist))
	for st := range s.hist {
		sts = append(sts, st)
	}
	s.mu.RUnlock()
	slices.Sort(sts)
	var counts [len(LatencyBucketsMs) + 1]uint64
	for _, st := range sts {
		s.mu.RLock()
		h := s.hist[st]
		s.mu.RUnlock()
		for i := range h.buckets {
			counts[i] = h.buckets[i].Load()
		}
		// _count is the sum of the buckets read, so that it always equals the +Inf
		// bucket even while responses are being recorded.
		w.Histogram(name, labels.With("status_code", strconv.Itoa(int(st))), LatencyBucketsMs[:], counts[:], float64(h.sumUs.Load())/1000)
	}
}

// AddCollector adds a writer of metrics kept elsewhere (the balancers' state), called
// at each scrape with the exposition's writer.
func (r *Registry) AddCollector(c func(io.Writer)) {
	r.cmu.Lock()
	r.collectors = append(r.collectors, c)
	r.cmu.Unlock()
}
