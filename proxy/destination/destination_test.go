package destination

import (
	"context"
	"net/netip"
	"testing"

	"github.com/go-logr/logr"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/balance"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/metrics"
)

func TestStaticSource(t *testing.T) {
	cfg, err := config.Parse([]byte(`
destinations:
- name: web
  addresses: ["10.96.0.1:80"]
  authorities: ["Web.Shop.svc.cluster.local"]
  endpoints:
  - {address: 10.0.0.1, port: 8080, identity: "spiffe://td/ns/shop/sa/web"}
  - {address: 10.0.0.2, port: 8080, identity: "spiffe://td/ns/shop/sa/web", proxyPort: 5143}
  - {address: 10.0.0.3, port: 8080}
- name: db
  addresses: ["10.96.0.2:5432"]
  protocol: opaque
  endpoints:
  - {address: 10.0.1.1, port: 5432}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := NewStaticSource(cfg)
	for _, tc := range []struct {
		name   string
		target Target
		want   string // ServiceRef name; "" = nil
	}{
		{"by normalised authority", Target{Authority: "web.shop.svc.cluster.local:80"}, "web"},
		{"authority wins over addr", Target{Authority: "web.shop.svc.cluster.local:80", Addr: netip.MustParseAddrPort("10.96.0.2:5432")}, "web"},
		{"unknown authority is not looked up by addr", Target{Authority: "x:80", Addr: netip.MustParseAddrPort("10.96.0.1:80")}, ""},
		{"by address", Target{Addr: netip.MustParseAddrPort("10.96.0.2:5432")}, "db"},
		{"by v4-mapped address", Target{Addr: netip.MustParseAddrPort("[::ffff:10.96.0.1]:80")}, "web"},
		{"unknown address", Target{Addr: netip.MustParseAddrPort("10.96.0.9:80")}, ""},
		{"empty target", Target{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := src.Lookup(context.Background(), tc.target)
			got := ""
			if dc != nil {
				got = dc.GetService().GetName()
			}
			if got != tc.want {
				t.Fatalf("Lookup(%+v) = %q, want %q", tc.target, got, tc.want)
			}
		})
	}
	web := src.Lookup(context.Background(), Target{Authority: "web.shop.svc.cluster.local:80"})
	if web.Fallback.GetName() != StaticFallbackRoute || len(web.Fallback.Backends) != 1 || web.Fallback.Backends[0].Backend != web.Backends[0].Key {
		t.Fatalf("fallback does not send to the one backend: %v", web.Fallback)
	}
	eps := web.Backends[0].Endpoints
	if len(eps) != 3 || eps[0].ProxyPort != config.DefaultInboundPort || eps[1].ProxyPort != 5143 || eps[2].ProxyPort != 0 || eps[2].Identity != "" {
		t.Fatalf("endpoints converted wrongly: %v", eps)
	}
	db := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.2:5432")})
	if db.Protocol != api.ProtocolHint_PROTOCOL_HINT_OPAQUE {
		t.Fatalf("db protocol = %v, want OPAQUE", db.Protocol)
	}
}

func TestNormalizeAuthority(t *testing.T) {
	for _, in := range []string{"web:80", "Web:80", "web", "web.", "web:", "[::1]", "[::1]:8080", "WEB.ns.svc:8080", ""} {
		if got, want := normalizeAuthority(in), config.NormalizeAuthority(in); got != want {
			t.Errorf("normalizeAuthority(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDestCacheSweep(t *testing.T) {
	cfg, err := config.Parse([]byte(`
destinations:
- {name: a, addresses: ["10.96.0.1:80"], endpoints: [{address: 10.0.0.1, port: 80}]}
- {name: b, addresses: ["10.96.0.2:80"], endpoints: [{address: 10.0.0.2, port: 80}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	dests := NewCache(logr.Discard(), balance.Options{}, metrics.New())
	src := NewStatic(cfg)
	a := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.1:80")})
	b := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.2:80")})
	da := dests.Get(a)
	dests.Get(b)
	if dests.Get(a) != da {
		t.Fatal("the same configuration was compiled twice")
	}
	for _, step := range []struct {
		name string
		use  []*api.DestinationConfig
		want int // destinations left after the sweep
	}{
		{"both used since creation", nil, 2},
		{"only a used", []*api.DestinationConfig{a}, 1},
		{"nothing used", nil, 0},
	} {
		for _, c := range step.use {
			dests.Get(c)
		}
		dests.Sweep()
		if got := dests.Len(); got != step.want {
			t.Fatalf("%s: %d destinations left, want %d", step.name, got, step.want)
		}
	}
	if dests.Get(a) == da {
		t.Fatal("a forgotten destination was not compiled afresh")
	}
}

func TestDestCacheVersions(t *testing.T) {
	cfg, err := config.Parse([]byte(`
destinations:
- {name: a, addresses: ["10.96.0.1:80"], endpoints: [{address: 10.0.0.1, port: 80}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	dests := NewCache(logr.Discard(), balance.Options{}, metrics.New())
	// Two sources' pointers of the same version (the destination service's client
	// subscribes by authority and by address) share one runtime, and alternating
	// between them compiles nothing.
	p1 := StaticDestination(&cfg.Destinations[0], 0)
	p2 := StaticDestination(&cfg.Destinations[0], 0)
	if p1 == p2 || p1.Version != p2.Version || p1.Version == "" {
		t.Fatalf("versions %q %q: want equal content hashes on distinct pointers", p1.Version, p2.Version)
	}
	d1 := dests.Get(p1)
	for range 10 {
		if dests.Get(p2) != d1 || dests.Get(p1) != d1 {
			t.Fatal("equal versions compiled to different runtimes")
		}
	}
	// A new version gets a new runtime sharing the balancer; the old pointer stays
	// usable.
	changed := cfg.Destinations[0]
	changed.Endpoints = append(changed.Endpoints, config.Endpoint{Address: "10.0.0.2", Port: 80})
	p3 := StaticDestination(&changed, 0)
	d3 := dests.Get(p3)
	if d3 == d1 || d3.Balancers["static/a:80"] != d1.Balancers["static/a:80"] || d3.Balancers["static/a:80"].Len() != 2 {
		t.Fatalf("new version: runtime %p (old %p), balancers shared %v", d3, d1, d3.Balancers["static/a:80"] == d1.Balancers["static/a:80"])
	}
	if dests.Get(p1) != d1 {
		t.Fatal("old pointer recompiled")
	}
	// The second endpoint leaves again: the configuration is p1's version again,
	// on a new pointer, and the shared balancer must drop the endpoint (it once
	// kept it, and requests went to a deleted pod until its ejection).
	p4 := StaticDestination(&cfg.Destinations[0], 0)
	if p4.Version != p1.Version {
		t.Fatalf("version %q, want p1's %q", p4.Version, p1.Version)
	}
	if d4 := dests.Get(p4); d4.Balancers["static/a:80"].Len() != 1 {
		t.Fatalf("back at p1's version the balancer has %d endpoints, want 1", d4.Balancers["static/a:80"].Len())
	}
	dests.Get(p1)
	// Only maxRecent pointers stay compiled.
	for range maxRecent {
		dests.Get(StaticDestination(&changed, 0))
	}
	if _, ok := dests.byPtr.Load(p1); ok {
		t.Fatal("oldest pointer still held after maxRecent newer ones")
	}
}

func TestStaticDestinationConversion(t *testing.T) {
	cfg, err := config.Parse([]byte(`
destinations:
- name: web
  addresses: ["10.96.0.10:80", "[fd00::10]:80"]
  authorities: ["Web.default.svc.cluster.local"]
  protocol: http1
  endpoints:
  - {address: 10.199.1.2, port: 8080, identity: "spiffe://cluster.local/ns/default/sa/web"}
  - {address: 10.199.1.3, port: 8080, protocol: http2}
- name: db
  addresses: ["10.96.0.11:5432"]
  endpoints:
  - {address: "fd00::3", port: 5432, identity: "spiffe://cluster.local/ns/db/sa/pg", proxyPort: 14143}
`))
	if err != nil {
		t.Fatal(err)
	}
	src := NewStaticSource(cfg)
	for _, tc := range []struct {
		name, addr, want string
	}{
		{"ipv4 service", "10.96.0.10:80", "web"},
		{"ipv6 service", "[fd00::10]:80", "web"},
		{"v4-mapped ipv6 matches ipv4", "[::ffff:10.96.0.10]:80", "web"},
		{"second destination", "10.96.0.11:5432", "db"},
		{"unknown port", "10.96.0.10:81", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort(tc.addr)}).GetService().GetName()
			if got != tc.want {
				t.Fatalf("Lookup(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
	web := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.10:80")})
	if web.Authorities[0] != "web.default.svc.cluster.local:80" {
		t.Errorf("authority %q not normalised", web.Authorities[0])
	}
	eps := balanceEndpoints(web.Backends[0], "")
	if e := web.Backends[0].Endpoints[0]; e.Protocol != api.ProtocolHint_PROTOCOL_HINT_HTTP1 || !eps[0].Meshed() || eps[0].ProxyAddr != netip.MustParseAddrPort("10.199.1.2:4143") {
		t.Errorf("endpoint 0 = %v / %+v, want http1, meshed, proxy on 4143", e, eps[0])
	}
	if e := web.Backends[0].Endpoints[1]; e.Protocol != api.ProtocolHint_PROTOCOL_HINT_H2C || eps[1].Meshed() {
		t.Errorf("endpoint 1 = %v, want the h2c override, unmeshed", e)
	}
	db := src.Lookup(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.11:5432")})
	if got := balanceEndpoints(db.Backends[0], "")[0].ProxyAddr; got != netip.MustParseAddrPort("[fd00::3]:14143") {
		t.Errorf("db proxy addr = %s", got)
	}
	for _, tc := range []struct {
		name   string
		protos []config.Protocol
		want   api.ProtocolHint
	}{
		{"all endpoints opaque: the destination is", []config.Protocol{config.ProtocolOpaque, config.ProtocolOpaque}, api.ProtocolHint_PROTOCOL_HINT_OPAQUE},
		{"mixed: detect", []config.Protocol{config.ProtocolOpaque, config.ProtocolHTTP1}, api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED},
		{"none: detect", []config.Protocol{"", ""}, api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := config.Destination{Addresses: []string{"10.0.0.1:5432"}}
			for i, p := range tc.protos {
				d.Endpoints = append(d.Endpoints, config.Endpoint{Address: "10.1.0." + string(rune('1'+i)), Port: 5432, Protocol: p})
			}
			if got := StaticDestination(&d, 0).Protocol; got != tc.want {
				t.Fatalf("protocol %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDestCachePodDestinations: destinations of pods' own addresses (no Service) each
// keep their runtime: alternating between two pods compiles nothing.
func TestDestCachePodDestinations(t *testing.T) {
	pod := func(name, addr string) *api.DestinationConfig {
		key := "shop/" + name + ":8080"
		return &api.DestinationConfig{
			Version: "v-" + name, Pod: &api.PodRef{Namespace: "shop", Name: name}, Addresses: []string{addr},
			Fallback: &api.Route{Name: "default", Backends: []*api.WeightedBackend{{Backend: key, Weight: 1}}},
			Backends: []*api.Backend{{Key: key, Endpoints: []*api.Endpoint{{Address: addr[:len(addr)-5], Port: 8080}}}},
		}
	}
	a, b := pod("db-0", "10.0.5.1:8080"), pod("db-1", "10.0.5.2:8080")
	if ServiceKey(a) == ServiceKey(b) {
		t.Fatalf("two pods share the key %q", ServiceKey(a))
	}
	dests := NewCache(logr.Discard(), balance.Options{}, metrics.New())
	da, db := dests.Get(a), dests.Get(b)
	for range 10 {
		if dests.Get(a) != da || dests.Get(b) != db {
			t.Fatal("alternating between two pod destinations rebuilt their runtimes")
		}
	}
}

// TestDestCacheMirrorSlots: the in-flight counters of mirror backends are kept across
// versions (a new version must not reset the bound on copies already in flight), and
// exist only for backends that routes mirror to.
func TestDestCacheMirrorSlots(t *testing.T) {
	mirror := func(key string) *api.Filter {
		return &api.Filter{Kind: &api.Filter_RequestMirror{RequestMirror: &api.RequestMirror{Backend: key}}}
	}
	cfg := func(version string, mirrors ...string) *api.DestinationConfig {
		c := &api.DestinationConfig{Version: version, Service: &api.ServiceRef{Namespace: "shop", Name: "web", Port: 80},
			Backends: []*api.Backend{{Key: "shop/a:80"}, {Key: "shop/b:80"}, {Key: "shop/web:80"}},
			Routes:   []*api.Route{{Name: "r", Backends: []*api.WeightedBackend{{Backend: "shop/web:80", Weight: 1}}}}}
		for i, m := range mirrors {
			if i == 0 {
				c.Routes[0].Filters = append(c.Routes[0].Filters, mirror(m))
			} else {
				c.Routes[0].Backends[0].Filters = append(c.Routes[0].Backends[0].Filters, mirror(m))
			}
		}
		return c
	}
	dests := NewCache(logr.Discard(), balance.Options{}, metrics.New())
	if d := dests.Get(cfg("0")); d.MirrorsInFlight != nil {
		t.Fatalf("no mirrors, got counters %v", d.MirrorsInFlight)
	}
	d1 := dests.Get(cfg("1", "shop/a:80", "shop/b:80"))
	if len(d1.MirrorsInFlight) != 2 || d1.MirrorsInFlight["shop/a:80"] == nil || d1.MirrorsInFlight["shop/b:80"] == nil {
		t.Fatalf("counters %v, want shop/a:80 and shop/b:80", d1.MirrorsInFlight)
	}
	d1.MirrorsInFlight["shop/a:80"].Add(3)
	d2 := dests.Get(cfg("2", "shop/a:80"))
	if n := d2.MirrorsInFlight["shop/a:80"]; n != d1.MirrorsInFlight["shop/a:80"] || n.Load() != 3 {
		t.Fatalf("new version: counter %p (%d), want the old one %p with 3", n, n.Load(), d1.MirrorsInFlight["shop/a:80"])
	}
	if len(d2.MirrorsInFlight) != 1 {
		t.Fatalf("counters %v, want only shop/a:80", d2.MirrorsInFlight)
	}
}
