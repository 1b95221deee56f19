package destination

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/metrics"
	"github.com/weftmesh/weft/proxy/router"
)

// Runtime is one compiled version of a destination's configuration with the
// state requests use: the route table, a balancer per backend, the retry budget and
// the route metrics series. It is built once per *api.DestinationConfig pointer (a
// Source returns a new pointer per version and never mutates one it returned), so
// no request compiles anything.
type Runtime struct {
	cfg   *api.DestinationConfig
	Table *router.Table
	// Authority is the authority label of the route metrics.
	Authority string
	Balancers map[string]*balance.Balancer // by backend key
	Budget    *router.Budget
	// Retries is true when some route has a retry policy: only then are original
	// requests counted into the budget.
	Retries bool
	Series  []*metrics.RouteSeries // by router.Route.Index
	// MirrorsInFlight counts the RequestMirror copies in flight to each backend (by
	// key), across the destination's configuration versions, so a new version cannot
	// reset the bound the pipeline keeps on them.
	MirrorsInFlight map[string]*atomic.Int64
	// used is set by each lookup and cleared by each sweep: a destination not used
	// between two sweeps is forgotten.
	used atomic.Bool
}

// shared is what a destination keeps across configuration versions: balancers
// (so endpoints that stay keep their latency estimate and failure state), the retry
// budget's counts, and the runtimes of its recent configuration pointers.
type shared struct {
	authority string // of the latest version, for metrics
	// built is the version the balancers were last updated to.
	built     string
	balancers map[string]*balance.Balancer
	budget    *router.Budget
	// recent are the last pointers compiled for this destination, oldest first.
	// A source may hand out more than one live pointer per destination (the
	// destination service's client subscribes by authority and by address
	// separately), so each keeps its entry instead of evicting the other.
	recent    []*api.DestinationConfig
	byVersion map[string]*Runtime
	// mirrorsInFlight is Runtime.MirrorsInFlight of the latest version; kept, like
	// balancers, for the backends that stay.
	mirrorsInFlight map[string]*atomic.Int64
}

// maxRecent bounds how many configuration pointers a destination keeps compiled.
const maxRecent = 4

// Cache maps configuration pointers to their compiled runtime.
type Cache struct {
	log     logr.Logger
	balance balance.Options
	metrics *metrics.Registry
	byPtr   sync.Map // *api.DestinationConfig -> *Runtime

	mu    sync.Mutex
	bySvc map[string]*shared
}

// NewCache returns an empty cache whose balancers use bal and whose route series
// are reg's.
func NewCache(log logr.Logger, bal balance.Options, reg *metrics.Registry) *Cache {
	return &Cache{log: log, balance: bal, metrics: reg, bySvc: map[string]*shared{}}
}

// Get returns cfg's runtime: a lock-free map read once compiled.
func (c *Cache) Get(cfg *api.DestinationConfig) *Runtime {
	if v, ok := c.byPtr.Load(cfg); ok {
		d := v.(*Runtime)
		// Read before writing, so that busy destinations do not bounce the cache
		// line between cores on every request.
		if !d.used.Load() {
			d.used.Store(true)
		}
		return d
	}
	d := c.compile(cfg)
	d.used.Store(true)
	return d
}

// Sweep forgets the destinations not used since the previous sweep, with their
// balancers and budget, so that the proxy's memory follows what the application
// talks to now (the destination service's client expires its subscriptions the same
// way). A destination used again is compiled afresh.
func (c *Cache) Sweep() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for key, sh := range c.bySvc {
		used := false
		for _, d := range sh.byVersion {
			if d.used.Swap(false) {
				used = true
			}
		}
		if used {
			continue
		}
		for _, p := range sh.recent {
			c.byPtr.Delete(p)
		}
		delete(c.bySvc, key)
		n++
	}
	return n
}

// SweepEvery runs Sweep until stop is closed.
func (c *Cache) SweepEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.Sweep()
		case <-stop:
			return
		}
	}
}

// Len is the number of destinations held (tests).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bySvc)
}

// ServiceKey names a destination in logs and keys: namespace/name:port of its Service,
// or pod:namespace/name@ip:port for a pod's own address (which has no Service: without
// this every pod destination would share one key, and so one runtime rebuilt at each
// switch between them).
func ServiceKey(cfg *api.DestinationConfig) string {
	if p := cfg.GetPod(); p != nil {
		addr := ""
		if a := cfg.GetAddresses(); len(a) > 0 {
			addr = a[0]
		}
		return fmt.Sprintf("pod:%s/%s@%s", p.GetNamespace(), p.GetName(), addr)
	}
	sr := cfg.GetService()
	return fmt.Sprintf("%s/%s:%d", sr.GetNamespace(), sr.GetName(), sr.GetPort())
}

// compile builds cfg's runtime, or reuses the one of an equal version (equal
// versions are equal configurations).
func (c *Cache) compile(cfg *api.DestinationConfig) *Runtime {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.byPtr.Load(cfg); ok {
		return v.(*Runtime)
	}
	key := ServiceKey(cfg)
	sh := c.bySvc[key]
	if sh == nil {
		sh = &shared{balancers: map[string]*balance.Balancer{}, byVersion: map[string]*Runtime{}}
		c.bySvc[key] = sh
	}
	// A pointer of the version built last (its twin from the other subscription)
	// shares that runtime. A version seen earlier is built again even when its
	// runtime is still held: the balancers are shared across versions and now hold
	// a later version's endpoints (an endpoint that left and came back, or a
	// replaced pod, returns a configuration to an earlier version), and building is
	// what brings them back to this version's endpoints.
	d := sh.byVersion[cfg.GetVersion()]
	if d == nil || cfg.GetVersion() == "" || cfg.GetVersion() != sh.built {
		d = c.build(key, cfg, sh)
		sh.byVersion[cfg.GetVersion()] = d
	}
	c.byPtr.Store(cfg, d)
	sh.recent = append(sh.recent, cfg)
	if len(sh.recent) > maxRecent {
		old := sh.recent[0]
		sh.recent = sh.recent[1:]
		c.byPtr.Delete(old)
		stillUsed := false
		for _, p := range sh.recent {
			stillUsed = stillUsed || p.GetVersion() == old.GetVersion()
		}
		if !stillUsed {
			delete(sh.byVersion, old.GetVersion())
		}
	}
	return d
}

// build compiles one version. Called with c.mu held.
func (c *Cache) build(key string, cfg *api.DestinationConfig, sh *shared) *Runtime {
	table, errs := router.Compile(cfg)
	for _, err := range errs {
		c.log.Error(err, "Ignoring part of a route that cannot be compiled", "destination", key, "version", cfg.GetVersion())
	}
	d := &Runtime{cfg: cfg, Table: table, Balancers: map[string]*balance.Balancer{}}
	switch {
	case len(cfg.GetAuthorities()) > 0:
		d.Authority = cfg.GetAuthorities()[0]
	case len(cfg.GetAddresses()) > 0:
		d.Authority = cfg.GetAddresses()[0]
	default:
		d.Authority = key
	}
	for _, b := range cfg.GetBackends() {
		bal := sh.balancers[b.GetKey()]
		if bal == nil {
			bal = balance.New(c.balance)
		}
		bal.Update(balanceEndpoints(b, cfg.GetClientZone()))
		d.Balancers[b.GetKey()] = bal
	}
	// Backends no longer used are dropped with their state.
	sh.balancers = d.Balancers
	sh.authority = d.Authority
	sh.built = cfg.GetVersion()
	if sh.budget == nil || !sh.budget.Same(cfg.GetRetryBudget()) {
		sh.budget = router.NewBudget(cfg.GetRetryBudget(), nil)
	}
	d.Budget = sh.budget
	routes := table.Routes
	if table.Fallback != nil {
		routes = append(routes[:len(routes):len(routes)], table.Fallback)
	}
	dst := serviceLabels(cfg)
	for _, route := range routes {
		d.Retries = d.Retries || route.Retry != nil
		d.Series = append(d.Series, c.metrics.Route(metrics.RouteKey{Dir: metrics.Outbound, Authority: d.Authority, Route: route.Name, Dst: dst}))
	}
	d.MirrorsInFlight = mirrorSlots(routes, sh.mirrorsInFlight)
	sh.mirrorsInFlight = d.MirrorsInFlight
	return d
}

// mirrorSlots are the in-flight counters of the backends routes mirror to, the
// previous version's for the backends that stay; nil when nothing is mirrored.
func mirrorSlots(routes []*router.Route, prev map[string]*atomic.Int64) map[string]*atomic.Int64 {
	var out map[string]*atomic.Int64
	add := func(ms []*router.Mirror) {
		for _, m := range ms {
			if m.Config == nil || out[m.Key] != nil {
				continue
			}
			if out == nil {
				out = map[string]*atomic.Int64{}
			}
			n := prev[m.Key]
			if n == nil {
				n = new(atomic.Int64)
			}
			out[m.Key] = n
		}
	}
	for _, r := range routes {
		add(r.Mirrors)
		for _, b := range r.Backends {
			add(b.Mirrors)
		}
	}
	return out
}

// balanceEndpoints converts a backend's endpoints for the balancer; meshed endpoints
// are reached through their proxy's inbound port (default 4143). An endpoint whose
// for_zones name clientZone is local to the client (see balance.Endpoint.Local); a
// client whose zone is unknown prefers none, and balances over all of them.
func balanceEndpoints(b *api.Backend, clientZone string) []balance.Endpoint {
	out := make([]balance.Endpoint, 0, len(b.GetEndpoints()))
	for _, e := range b.GetEndpoints() {
		ip, err := netip.ParseAddr(e.GetAddress())
		if err != nil || e.GetPort() == 0 || e.GetPort() > 65535 {
			continue
		}
		ip = ip.Unmap()
		be := balance.Endpoint{Addr: netip.AddrPortFrom(ip, uint16(e.GetPort())), Identity: e.GetIdentity(), Pod: e.GetPod(), Zone: e.GetZone()}
		if be.Identity != "" {
			pp := e.GetProxyPort()
			if pp == 0 || pp > 65535 {
				pp = config.DefaultInboundPort
			}
			be.ProxyAddr = netip.AddrPortFrom(ip, uint16(pp))
			be.ProxyAddrString = be.ProxyAddr.String()
		}
		if fz := e.GetForZones(); len(fz) > 0 {
			be.PreferZone = true
			be.Local = clientZone != "" && slices.Contains(fz, clientZone)
		}
		be.AddrString = be.Addr.String()
		be.MetricLabels = string(metrics.DstLabels(wireLabels(e.GetMetricLabels())))
		out = append(out, be)
	}
	return out
}

// wireLabels iterates over the name and value of the wire's labels.
func wireLabels(ls []*api.Label) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, l := range ls {
			if !yield(l.GetName(), l.GetValue()) {
				return
			}
		}
	}
}

// serviceLabels are the labels of a destination's route series: the Service's
// namespace and name, as its endpoints' dst_namespace and dst_service.
func serviceLabels(cfg *api.DestinationConfig) promtext.Labels {
	svc := cfg.GetService()
	if svc == nil || svc.GetNamespace() == StaticNamespace {
		return ""
	}
	return metrics.DstLabels(func(yield func(string, string) bool) {
		_ = yield("dst_namespace", svc.GetNamespace()) && yield("dst_service", svc.GetName())
	})
}

// LookupHTTP asks src about a request for host (its authority) on a connection to
// dst: by authority, then by the connection's original destination. An authority
// that is an IP literal is not looked up by name (the address lookup covers it).
func LookupHTTP(ctx context.Context, src Source, host string, dst netip.AddrPort) *api.DestinationConfig {
	if host != "" && !isIPLiteral(host) {
		if cfg := src.Lookup(ctx, Target{Authority: normalizeAuthority(host)}); cfg != nil {
			return cfg
		}
	}
	if !dst.IsValid() {
		return nil
	}
	return src.Lookup(ctx, Target{Addr: dst})
}

// isIPLiteral reports whether an authority's host is an IP address.
func isIPLiteral(a string) bool {
	c := a[0]
	if c == '[' {
		return true
	}
	if c < '0' || c > '9' {
		return false
	}
	host := a
	if i := lastColon(a); i >= 0 {
		host = a[:i]
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// WriteMetrics writes each balancer's endpoints by state and its ejections.
func (c *Cache) WriteMetrics(w io.Writer) {
	type row struct {
		authority, backend string
		ready, ejected     int
		ejections          uint64
		zoneAware          bool
		local, remote      uint64
	}
	c.mu.Lock()
	rows := make([]row, 0, len(c.bySvc))
	for _, sh := range c.bySvc {
		for key, bal := range sh.balancers {
			r := row{authority: sh.authority, backend: key, ejections: bal.Ejections()}
			r.ready, r.ejected = bal.Counts()
			if r.zoneAware = bal.ZoneAware(); r.zoneAware {
				r.local, r.remote = bal.ZonePicks()
			}
			rows = append(rows, r)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(strings.Compare(a.authority, b.authority), strings.Compare(a.backend, b.backend))
	})
	pw := promtext.NewWriter(w)
	pw.Family("weft_balancer_endpoints", promtext.Gauge, "Endpoints of each backend's load balancer, by state: ready, or ejected by failure accrual.")
	for _, r := range rows {
		ls := promtext.L("direction", "outbound", "authority", r.authority, "backend", r.backend)
		pw.Int("weft_balancer_endpoints", ls.With("state", "ready"), int64(r.ready))
		pw.Int("weft_balancer_endpoints", ls.With("state", "ejected"), int64(r.ejected))
	}
	pw.Family("weft_balancer_ejections_total", promtext.Counter, "Times failure accrual took an endpoint of the backend out of rotation.")
	for _, r := range rows {
		pw.Uint("weft_balancer_ejections_total", promtext.L("direction", "outbound", "authority", r.authority, "backend", r.backend), r.ejections)
	}
	// Only backends whose Service prefers close endpoints have the series: two per
	// backend, so the cardinality is that of the backends.
	pw.Family("weft_balancer_zone_requests_total", promtext.Counter, "Requests (or connections) the zone-aware balancer sent to an endpoint in the client's zone (locality=local) or elsewhere (locality=remote).")
	for _, r := range rows {
		if !r.zoneAware {
			continue
		}
		ls := promtext.L("direction", "outbound", "authority", r.authority, "backend", r.backend)
		pw.Uint("weft_balancer_zone_requests_total", ls.With("locality", "local"), r.local)
		pw.Uint("weft_balancer_zone_requests_total", ls.With("locality", "remote"), r.remote)
	}
	_ = pw.Flush()
}
