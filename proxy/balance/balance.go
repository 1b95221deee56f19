// Package balance chooses an endpoint of one backend for each request or connection:
// power of two choices (P2C) over a peak-EWMA estimate of each endpoint's latency,
// weighted by its outstanding requests, with failure accrual that takes endpoints
// failing in a row out of rotation for an exponentially growing, jittered time.
//
// The cost of an endpoint is ewma × (pending + 1), the load metric of Linkerd's
// balancer: the estimate jumps up to any slower observation at once (the "peak") and
// decays towards faster observations, and towards zero while the endpoint is not used
// (so an endpoint that was slow once is tried again after a while). P2C compares two
// endpoints chosen at random, which spreads load nearly as well as comparing all of
// them, without herding every client onto the single best endpoint.
package balance

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultRTT              = 30 * time.Millisecond
	DefaultDecay            = 10 * time.Second
	DefaultFailureThreshold = 7
	DefaultBackoffMin       = time.Second
	DefaultBackoffMax       = 60 * time.Second
	DefaultJitter           = 0.2
	DefaultZoneSpill        = 2.0
	DefaultZoneReturn       = 1.0
	DefaultZoneHold         = time.Second
)

// Errors of Pick.
var (
	// ErrNoEndpoints: the backend has no endpoints at all.
	ErrNoEndpoints = errors.New("no endpoints")
	// ErrNoHealthy: every endpoint is ejected by failure accrual (and none is due
	// for its probe), with Options.FailFast set.
	ErrNoHealthy = errors.New("no healthy endpoints")
)

// Endpoint is what the balancer knows about one endpoint; its fields are copied from
// the configuration and read by the caller to dial.
type Endpoint struct {
	Addr      netip.AddrPort // the application's ip:port
	Identity  string         // SPIFFE ID of the endpoint's proxy; "" = not meshed
	ProxyAddr netip.AddrPort // meshed: the peer proxy's inbound ip:port
	Pod       string
	Zone      string
	// PreferZone says the endpoint's Service prefers endpoints close to the client
	// (Kubernetes trafficDistribution PreferClose/PreferSameZone, or zone hints).
	// The balancer is zone-aware when any endpoint has it (see Pick).
	PreferZone bool
	// Local says the endpoint is in the client's zone (or its zone hints name the
	// client's zone): a zone-aware balancer prefers it.
	Local bool
	// AddrString and ProxyAddrString are Addr and ProxyAddr formatted once, so the
	// data path does not format them per request. Optional.
	AddrString, ProxyAddrString string
	// MetricLabels are the endpoint's labels for the outbound series of the requests
	// and connections it serves (dst_namespace, dst_pod, dst_deployment, ...),
	// rendered in the exposition format once per configuration. Optional.
	MetricLabels string
}

// Meshed reports whether the endpoint is reached through its proxy with mTLS.
func (e *Endpoint) Meshed() bool { return e.Identity != "" }

// Options tune a Balancer. Zero fields take the defaults above.
type Options struct {
	// DefaultRTT is the latency estimate of an endpoint that has not answered yet.
	DefaultRTT time.Duration
	// Decay is the time constant of the moving average.
	Decay time.Duration
	// FailureThreshold consecutive failures eject an endpoint.
	FailureThreshold int
	// BackoffMin is the first ejection's length; each ejection in a row doubles it up
	// to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// Jitter spreads each ejection by ±Jitter of its length, so that proxies do not
	// probe a recovering endpoint all at once.
	Jitter float64
	// FailFast makes Pick return ErrNoHealthy when every endpoint is ejected. By
	// default Pick then chooses the least-bad endpoint instead (see Pick): a backend
	// whose endpoints all fail keeps answering with what they answer, rather than
	// the proxy turning an application's errors into its own.
	FailFast bool
	// Now is the clock (tests inject one). Default time.Now.
	Now func() time.Time
	// Rand returns a uniform int in [0, n). Default math/rand/v2.IntN.
	Rand func(n int) int

	// Zone-aware balancing (only when the endpoints prefer the client's zone): the
	// balancer keeps requests on local endpoints (P2C among them) while one is in
	// rotation and the latency estimate of the one P2C chose stays at or below
	// ZoneSpill × the reference of the remote zone: the lower of two sampled remote
	// endpoints' estimates (each at least its last observation), and at least
	// DefaultRTT. Beyond it, the balancer "spills over": P2C over every endpoint,
	// until the local estimate is back at or below ZoneReturn × the reference and
	// ZoneHold has passed since the spill began. The gap between the factors and
	// the hold are the hysteresis: one slow answer does not flip the client back
	// and forth. The DefaultRTT floor keeps a client in its zone for differences
	// that do not matter (2ms against 1ms); a zone is left for tens of
	// milliseconds of queueing, a failure or an ejection.
	ZoneSpill, ZoneReturn float64
	ZoneHold              time.Duration
}

func (o *Options) defaults() {
	if o.DefaultRTT <= 0 {
		o.DefaultRTT = DefaultRTT
	}
	if o.Decay <= 0 {
		o.Decay = DefaultDecay
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.Jitter < 0 || o.Jitter >= 1 {
		o.Jitter = DefaultJitter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.IntN
	}
	if o.ZoneSpill <= 1 {
		o.ZoneSpill = DefaultZoneSpill
	}
	if o.ZoneReturn <= 0 || o.ZoneReturn > o.ZoneSpill {
		o.ZoneReturn = min(DefaultZoneReturn, o.ZoneSpill)
	}
	if o.ZoneHold <= 0 {
		o.ZoneHold = DefaultZoneHold
	}
}

// Balancer balances over the endpoints of one backend. Safe for concurrent use; Pick
// takes no lock on the set, which is swapped whole by Update.
type Balancer struct {
	opts      Options
	epoch     time.Time // monotonic base for the int64 nanosecond timestamps below
	mu        sync.Mutex
	set       atomic.Pointer[[]*endpoint]
	ejections atomic.Uint64

	// zones is the set split by locality when the endpoints prefer the client's
	// zone; nil otherwise (the plain P2C path, at no extra cost).
	zones atomic.Pointer[zoneSets]
	// spillSince is when the current spill-over began (ns since epoch + 1); 0 while
	// requests stay local.
	spillSince atomic.Int64
	// Picks of a zone-aware balancer, by the chosen endpoint's locality.
	localPicks, remotePicks atomic.Uint64
}

// zoneSets is an endpoint set split by locality; both slices alias endpoints of
// the whole set.
type zoneSets struct {
	local, remote []*endpoint
}

// ZoneAware reports whether the endpoints prefer the client's zone.
func (b *Balancer) ZoneAware() bool { return b.zones.Load() != nil }

// ZonePicks counts the picks of a zone-aware balancer by the chosen endpoint's
// locality: local (in the client's zone) and remote.
func (b *Balancer) ZonePicks() (local, remote uint64) {
	return b.localPicks.Load(), b.remotePicks.Load()
}

// Spilling reports whether the zone-aware balancer currently balances over every
// zone because the local endpoints are ejected, missing or overloaded.
func (b *Balancer) Spilling() bool { return b.spillSince.Load() != 0 }

// Ejections counts the times failure accrual took an endpoint out of rotation.
func (b *Balancer) Ejections() uint64 { return b.ejections.Load() }

// Counts returns how many endpoints are in rotation and how many are ejected.
func (b *Balancer) Counts() (ready, ejected int) {
	for _, e := range *b.set.Load() {
		if e.ejectedUntil.Load() == 0 {
			ready++
		} else {
			ejected++
		}
	}
	return ready, ejected
}

// endpoint is one endpoint's state: the peak-EWMA estimate, the outstanding count and
// failure accrual. It survives Update while the endpoint's address stays.
type endpoint struct {
	info atomic.Pointer[Endpoint]

	pending atomic.Int64

	emu   sync.Mutex
	cost  float64 // nanoseconds
	stamp int64   // when cost was last updated (ns since epoch)
	// measured is false until the endpoint's first answer: its cost is then 0 while
	// it has nothing outstanding, so a new endpoint gets one request at once (and
	// failure accrual sees a broken one early), and DefaultRTT × (pending + 1) while
	// that request is outstanding, so it is not flooded before anything is known.
	// From the first answer on, the estimate is the usual peak-EWMA starting from
	// DefaultRTT: a newcomer is presumed no faster than the default RTT until its
	// observations wear that down (Linkerd's behaviour).
	measured bool
	// last is the latest observation (ns), for the zone decision (see latency).
	last float64

	// Failure accrual. ejectedUntil is 0 while the endpoint is in rotation; while it
	// is ejected and the time has passed, one Pick claims the probe.
	ejectedUntil atomic.Int64
	probing      atomic.Bool
	fmu          sync.Mutex
	consecutive  int
	ejections    int
}

// New returns a balancer with no endpoints.
func New(opts Options) *Balancer {
	opts.defaults()
	b := &Balancer{opts: opts, epoch: opts.Now()}
	empty := []*endpoint{}
	b.set.Store(&empty)
	return b
}

func (b *Balancer) now() int64 { return int64(b.opts.Now().Sub(b.epoch)) }

// Update replaces the endpoint set. Endpoints whose address stays keep their latency
// estimate, outstanding count and failure state.
func (b *Balancer) Update(eps []Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := map[netip.AddrPort]*endpoint{}
	for _, e := range *b.set.Load() {
		old[e.info.Load().Addr] = e
	}
	next := make([]*endpoint, 0, len(eps))
	seen := map[netip.AddrPort]bool{}
	for i := range eps {
		info := eps[i]
		if seen[info.Addr] {
			continue
		}
		seen[info.Addr] = true
		e := old[info.Addr]
		if e == nil {
			e = &endpoint{cost: float64(b.opts.DefaultRTT), stamp: b.now()}
		}
		e.info.Store(&info)
		next = append(next, e)
	}
	var zs *zoneSets
	if slices.ContainsFunc(next, func(e *endpoint) bool { return e.info.Load().PreferZone }) {
		// Endpoints that do not prefer any zone (a Service's slices half hinted)
		// are remote: a client never prefers what names no zone.
		zs = &zoneSets{}
		for _, e := range next {
			if info := e.info.Load(); info.PreferZone && info.Local {
				zs.local = append(zs.local, e)
			} else {
				zs.remote = append(zs.remote, e)
			}
		}
	}
	b.set.Store(&next)
	b.zones.Store(zs)
}

// Len is the number of endpoints.
func (b *Balancer) Len() int { return len(*b.set.Load()) }

// Handle is one pick; the caller must call exactly one of Done or Cancel.
type Handle struct {
	b     *Balancer
	ep    *endpoint
	start int64
	probe bool
}

// Endpoint is the chosen endpoint.
func (h Handle) Endpoint() *Endpoint { return h.ep.info.Load() }

// Done records the outcome: the latency since Pick (to the response headers, or to
// the connection for TCP) feeds the estimate; failure feeds failure accrual.
func (h Handle) Done(failure bool) {
	now := h.b.now()
	h.ep.pending.Add(-1)
	h.ep.observe(now, float64(now-h.start), h.b.opts.Decay)
	h.b.accrue(h.ep, failure, h.probe, now)
}

// Observe records the latency since Pick without judging the endpoint: the request
// was cut short by a deadline that is the route's, not the endpoint's (a slow
// endpoint still looks slow to P2C, but only errors eject it). A probe observed this
// way is released for the next Pick.
func (h Handle) Observe() {
	now := h.b.now()
	h.ep.pending.Add(-1)
	h.ep.observe(now, float64(now-h.start), h.b.opts.Decay)
	if h.probe {
		h.ep.probing.Store(false)
	}
}

// Cancel releases the pick without an observation (the client went away). A probe
// that is cancelled lets the next Pick probe again.
func (h Handle) Cancel() {
	h.ep.pending.Add(-1)
	if h.probe {
		h.ep.probing.Store(false)
	}
}

// Unreachable records that the endpoint could not be reached at all (its connection
// refused, its proxy or application gone): it is ejected at once, for failure
// accrual's backoff, rather than after FailureThreshold failures in a row. An
// endpoint that refuses connections answers faster than any other, so the latency
// estimate would otherwise draw P2C to it; during a rolling restart it is the pod
// that is going away, and discovery removes it a moment later.
func (h Handle) Unreachable() {
	now := h.b.now()
	h.ep.pending.Add(-1)
	e := h.ep
	e.fmu.Lock()
	defer e.fmu.Unlock()
	e.consecutive++
	if h.probe || e.ejectedUntil.Load() == 0 {
		e.eject(h.b, now)
	}
	if h.probe {
		e.probing.Store(false)
	}
}

// ErrNoOther: every endpoint of the backend is one the caller excluded (PickExcept).
var ErrNoOther = errors.New("no other endpoint")

// PickExcept is Pick over the endpoints whose addresses are not in avoid: a request
// that one endpoint could not take goes to another. ErrNoOther when none is left.
func (b *Balancer) PickExcept(avoid []netip.AddrPort) (Handle, error) {
	set := *b.set.Load()
	others := make([]*endpoint, 0, len(set))
	for _, e := range set {
		if !slices.Contains(avoid, e.info.Load().Addr) {
			others = append(others, e)
		}
	}
	if len(others) == 0 {
		if len(set) == 0 {
			return Handle{}, ErrNoEndpoints
		}
		return Handle{}, ErrNoOther
	}
	return b.pick(others)
}

// Pick chooses an endpoint: two at random, the cheaper one; an ejected endpoint
// whose backoff has passed is preferred for its single probe request. When the
// endpoints prefer the client's zone, Pick chooses among the local ones while they
// are in rotation and not overloaded (see Options.ZoneSpill), and over every
// endpoint otherwise.
func (b *Balancer) Pick() (Handle, error) {
	if zs := b.zones.Load(); zs != nil {
		h, err := b.pickZoned(zs)
		if err == nil {
			if h.ep.info.Load().Local {
				b.localPicks.Add(1)
			} else {
				b.remotePicks.Add(1)
			}
		}
		return h, err
	}
	return b.pick(*b.set.Load())
}

// pickZoned is Pick for a zone-aware set. Locally it runs P2C over the local
// endpoints; it spills over to P2C over every endpoint when no local endpoint is in
// rotation (none exist, or failure accrual ejected them all), or while the local
// endpoints are slow against the remote ones, with hysteresis (Options.ZoneSpill,
// ZoneReturn, ZoneHold). Spilling over balances over every endpoint, local ones
// included, so the local zone keeps the share its cost earns.
//
// "Slow" compares latency estimates, not P2C costs: the pending factor of a cost
// says how to share load among endpoints already in use, but against an idle far
// zone (pending 0) it would spill as soon as two requests overlap locally, and
// then flap as the shares even out. An overloaded zone shows in its latency (the
// application queues), which the peak-EWMA follows at once.
func (b *Balancer) pickZoned(zs *zoneSets) (Handle, error) {
	all := *b.set.Load()
	if len(zs.local) == 0 || len(zs.remote) == 0 {
		// Nothing to prefer, or nowhere to spill: the plain balancer.
		return b.pick(all)
	}
	now := b.now()
	local, _, lok := b.peek(zs.local, now, func(e *endpoint) float64 { return e.load(now, b.opts.Decay) })
	if !lok {
		b.spillSince.CompareAndSwap(0, now+1)
		return b.pick(all)
	}
	lat := local.latency(now, b.opts.Decay, false)
	_, ref, rok := b.peek(zs.remote, now, func(e *endpoint) float64 {
		return max(e.latency(now, b.opts.Decay, true), float64(b.opts.DefaultRTT))
	})
	since := b.spillSince.Load()
	switch {
	case since == 0 && rok && lat > b.opts.ZoneSpill*ref:
		b.spillSince.CompareAndSwap(0, now+1)
		return b.pick(all)
	case since != 0 && (!rok || lat <= b.opts.ZoneReturn*ref) && now+1-since >= int64(b.opts.ZoneHold):
		b.spillSince.CompareAndSwap(since, 0)
	case since != 0:
		return b.pick(all)
	}
	ok, probe := b.available(local, now)
	if !ok {
		// Ejected, or its probe claimed by a concurrent Pick, since peek: the
		// plain balancer, rather than P2C over a local set that may have no
		// endpoint left in rotation.
		return b.pick(all)
	}
	return b.take(local, now, probe), nil
}

// peek returns the cheaper by cost of two endpoints of set sampled at random among
// those in rotation (or whose probe is due, at cost 0, without claiming the probe);
// ok is false when every endpoint of set is ejected and none is due.
func (b *Balancer) peek(set []*endpoint, now int64, cost func(*endpoint) float64) (best *endpoint, bestCost float64, ok bool) {
	n := len(set)
	bestCost = math.Inf(1)
	consider := func(e *endpoint) {
		var c float64
		switch until := e.ejectedUntil.Load(); {
		case until == 0:
			c = cost(e)
		case now >= until && !e.probing.Load():
			c = 0
		default:
			return
		}
		if c < bestCost {
			best, bestCost = e, c
		}
	}
	i := b.opts.Rand(n)
	consider(set[i])
	if n > 1 {
		j := b.opts.Rand(n - 1)
		if j >= i {
			j++
		}
		consider(set[j])
	}
	if best == nil {
		// Both samples are out: scan, so that one survivor keeps the zone local.
		for _, e := range set {
			consider(e)
		}
	}
	return best, bestCost, best != nil
}

// pick is P2C over set with failure accrual (the whole of Pick without zones).
func (b *Balancer) pick(set []*endpoint) (Handle, error) {
	n := len(set)
	if n == 0 {
		return Handle{}, ErrNoEndpoints
	}
	now := b.now()
	if n == 1 {
		e := set[0]
		ok, probe := b.available(e, now)
		if !ok {
			return b.leastBad(set, now)
		}
		return b.take(e, now, probe), nil
	}
	i := b.opts.Rand(n)
	j := b.opts.Rand(n - 1)
	if j >= i {
		j++
	}
	a, c := set[i], set[j]
	aok, aprobe := b.available(a, now)
	if aprobe {
		return b.take(a, now, true), nil
	}
	cok, cprobe := b.available(c, now)
	if cprobe {
		return b.take(c, now, true), nil
	}
	switch {
	case aok && cok:
		if c.load(now, b.opts.Decay) < a.load(now, b.opts.Decay) {
			a = c
		}
		return b.take(a, now, false), nil
	case aok:
		return b.take(a, now, false), nil
	case cok:
		return b.take(c, now, false), nil
	}
	// Both samples are ejected: look for any endpoint still in rotation, starting
	// at a random place so that the survivors share the load.
	start := b.opts.Rand(n)
	var best *endpoint
	bestLoad := math.Inf(1)
	for k := range n {
		e := set[(start+k)%n]
		ok, probe := b.available(e, now)
		if probe {
			return b.take(e, now, true), nil
		}
		if ok {
			if l := e.load(now, b.opts.Decay); l < bestLoad {
				best, bestLoad = e, l
			}
		}
	}
	if best == nil {
		return b.leastBad(set, now)
	}
	return b.take(best, now, false), nil
}

// leastBad is Pick when every endpoint is ejected (and no probe is due): the endpoint
// whose ejection ends first, picked as a probe (its success restores it, its failure
// extends its ejection). Every endpoint having failed repeatedly, the proxy cannot
// do better than the application; failing fast would turn an application's errors
// (or a single-endpoint Service's bad streak) into the proxy's own 503s. With
// FailFast, ErrNoHealthy instead.
func (b *Balancer) leastBad(set []*endpoint, now int64) (Handle, error) {
	if b.opts.FailFast {
		return Handle{}, ErrNoHealthy
	}
	var best *endpoint
	bestUntil := int64(math.MaxInt64)
	for _, e := range set {
		u := e.ejectedUntil.Load()
		if u == 0 {
			// Restored meanwhile.
			return b.take(e, now, false), nil
		}
		if u < bestUntil {
			best, bestUntil = e, u
		}
	}
	return b.take(best, now, true), nil
}

func (b *Balancer) take(e *endpoint, now int64, probe bool) Handle {
	e.pending.Add(1)
	return Handle{b: b, ep: e, start: now, probe: probe}
}

// available says whether e may take a request now; probe is true when the caller has
// just claimed e's single probe after an ejection.
func (b *Balancer) available(e *endpoint, now int64) (ok, probe bool) {
	until := e.ejectedUntil.Load()
	if until == 0 {
		return true, false
	}
	if now < until {
		return false, false
	}
	if e.probing.CompareAndSwap(false, true) {
		return true, true
	}
	return false, false
}

// load is the P2C cost: the decayed estimate times the outstanding requests + 1.
func (e *endpoint) load(now int64, decay time.Duration) float64 {
	pending := e.pending.Load()
	e.emu.Lock()
	if !e.measured {
		c := e.cost
		e.emu.Unlock()
		if pending == 0 {
			return 0
		}
		return c * float64(pending+1)
	}
	c := e.decayTo(now, 0, decay)
	e.emu.Unlock()
	return c * float64(pending+1)
}

// latency is the endpoint's latency estimate for the zone decision (ns): the
// decayed peak-EWMA (0 before its first answer). With atLeastLast, at least its
// last observation: a remote endpoint not used for a while (whose estimate decays
// to zero, so that P2C retries it) must not look faster than it last was. A local
// endpoint's estimate does decay, which is how a zone left for being slow is
// tried again.
func (e *endpoint) latency(now int64, decay time.Duration, atLeastLast bool) float64 {
	e.emu.Lock()
	defer e.emu.Unlock()
	if !e.measured {
		return 0
	}
	c := e.decayTo(now, 0, decay)
	if atLeastLast {
		c = max(c, e.last)
	}
	return c
}

// observe feeds one latency (ns) into the estimate.
func (e *endpoint) observe(now int64, rtt float64, decay time.Duration) {
	e.emu.Lock()
	e.measured = true
	e.last = rtt
	if rtt > e.cost {
		// Peak: a slower observation is believed at once.
		e.cost = rtt
		e.stamp = max(e.stamp, now)
	} else {
		e.decayTo(now, rtt, decay)
	}
	e.emu.Unlock()
}

// decayTo moves the estimate towards rtt by the weight of the time elapsed since the
// last update (exponentially: after Decay it has moved 63% of the way). Called with
// emu held.
func (e *endpoint) decayTo(now int64, rtt float64, decay time.Duration) float64 {
	if elapsed := now - e.stamp; elapsed > 0 {
		w := math.Exp(-float64(elapsed) / float64(decay))
		e.cost = e.cost*w + rtt*(1-w)
		e.stamp = now
	}
	return e.cost
}

// accrue applies failure accrual after a request.
func (b *Balancer) accrue(e *endpoint, failure, probe bool, now int64) {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if !failure {
		e.consecutive = 0
		if probe {
			// The probe succeeded: back in rotation.
			e.ejections = 0
			e.ejectedUntil.Store(0)
			e.probing.Store(false)
		}
		return
	}
	e.consecutive++
	switch {
	case probe:
		e.eject(b, now)
		e.probing.Store(false)
	case e.ejectedUntil.Load() == 0 && e.consecutive >= b.opts.FailureThreshold:
		e.eject(b, now)
	}
}

// eject takes e out of rotation for BackoffMin × 2^(ejections in a row), capped at
// BackoffMax, ± Jitter. Called with fmu held.
func (e *endpoint) eject(b *Balancer, now int64) {
	d := b.opts.BackoffMin << min(e.ejections, 30)
	if d <= 0 || d > b.opts.BackoffMax {
		d = b.opts.BackoffMax
	}
	e.ejections++
	b.ejections.Add(1)
	if j := b.opts.Jitter; j > 0 {
		// Uniform in [1-j, 1+j]; Rand is integral, so use a fine grid.
		f := 1 - j + 2*j*float64(b.opts.Rand(1<<20))/float64(1<<20)
		d = time.Duration(float64(d) * f)
	}
	until := now + int64(d)
	if until == 0 {
		until = 1
	}
	e.ejectedUntil.Store(until)
}

// Stats is a snapshot of one endpoint for tests, logs and debugging.
type Stats struct {
	Endpoint Endpoint
	// Cost is the current latency estimate (not multiplied by pending).
	Cost    time.Duration
	Pending int64
	// Ejected is true while failure accrual keeps the endpoint out of rotation
	// (including while its probe is due or in flight).
	Ejected bool
	// EjectedFor is how much of the current ejection remains.
	EjectedFor time.Duration
}

// Stats returns every endpoint's state.
func (b *Balancer) Stats() []Stats {
	now := b.now()
	var out []Stats
	for _, e := range *b.set.Load() {
		e.emu.Lock()
		c := e.decayTo(now, 0, b.opts.Decay)
		e.emu.Unlock()
		st := Stats{Endpoint: *e.info.Load(), Cost: time.Duration(c), Pending: e.pending.Load()}
		if u := e.ejectedUntil.Load(); u != 0 {
			st.Ejected = true
			st.EjectedFor = max(time.Duration(u-now), 0)
		}
		out = append(out, st)
	}
	return out
}
