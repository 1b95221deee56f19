// Package destination is the data path's contract with whoever knows the mesh's
// destinations: a Target (what a connection or request names), a Source (who answers:
// the static configuration's Static, or the destination service's client in
// proxy/discovery), and the Cache that compiles each answer once into what requests
// use (route table, a balancer per backend, the retry budget, route metrics). It
// imports neither the accept loop nor the request pipeline, so proxy/discovery can
// implement Source without the data path.
package destination

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/config"
)

// Target is what an outbound connection or request names.
type Target struct {
	Authority string         // HTTP authority, normalised by config.NormalizeAuthority; "" for TCP
	Addr      netip.AddrPort // original destination
}

// Source tells the data path the configuration of destinations.
type Source interface {
	// Lookup returns the current configuration of the destination the target names,
	// subscribing on first use and waiting for the first answer — bounded by ctx and
	// by a short wait of the Source's own (the data path passes the request's or the
	// connection's context, with no deadline of its own, so that a lookup answered
	// from memory costs no timer).
	// nil means unknown (not found, or no answer in time): the proxy then forwards to
	// the original destination, unbalanced and without routes, and still measures.
	// Must be cheap on the hot path once subscribed (a map read).
	Lookup(ctx context.Context, t Target) *api.DestinationConfig
}

// Unanswered is implemented by a Source that can tell, after a Lookup returned nil,
// whether it had no answer for the target (its service unreachable, or no answer in
// time) rather than an answer that the target is unknown. The data path probes such
// addresses for a peer proxy either way (proxy/transport Fallback); this only labels
// the plaintext it may send (no_tls_reason). A Source without it always answered.
type Unanswered interface {
	Unanswered(t Target) bool
}

// NoAnswer says whether src had no answer for t (see Unanswered).
func NoAnswer(src Source, t Target) bool {
	u, ok := src.(Unanswered)
	return ok && u.Unanswered(t)
}

// StaticFallbackRoute is the name (the rt_route label) of the route the static source
// gives every destination; the destination service's compiler uses the same name.
const StaticFallbackRoute = "default"

// StaticNamespace is the ServiceRef namespace of destinations from a static file
// (they have no Kubernetes namespace).
const StaticNamespace = "static"

// Static serves the destinations of a static configuration file, converted
// once into the destination service's model so that one data path serves both. It is
// immutable: a new configuration builds a new one.
type Static struct {
	byAddr map[netip.AddrPort]*api.DestinationConfig
	byAuth map[string]*api.DestinationConfig
}

// NewStaticSource converts cfg's destinations (validated, defaults applied) into
// destination configurations: each has one backend holding its endpoints (with
// identity and proxy port), a fallback route sending everything to it, and the
// destination's protocol hint. Invalid entries are skipped, as config.NewIndex does.
func NewStaticSource(cfg *config.Config) Source {
	return NewStatic(cfg)
}

// NewStatic is NewStaticSource's concrete type, for a caller that swaps it whole
// with its configuration.
func NewStatic(cfg *config.Config) *Static {
	s := &Static{byAddr: map[netip.AddrPort]*api.DestinationConfig{}, byAuth: map[string]*api.DestinationConfig{}}
	if cfg == nil {
		return s
	}
	for i := range cfg.Destinations {
		dc := StaticDestination(&cfg.Destinations[i], i)
		if dc == nil {
			continue
		}
		for _, a := range dc.Addresses {
			if ap, err := config.ParseAddrPort(a); err == nil {
				s.byAddr[ap] = dc
			}
		}
		for _, a := range dc.Authorities {
			s.byAuth[a] = dc
		}
	}
	return s
}

// StaticDestination converts one static destination (the i-th of its file) into the
// destination service's model; nil when it has no usable endpoint.
func StaticDestination(d *config.Destination, i int) *api.DestinationConfig {
	name := d.Name
	if name == "" {
		name = "destination-" + strconv.Itoa(i)
	}
	var port uint32
	for _, a := range d.Addresses {
		if ap, err := config.ParseAddrPort(a); err == nil {
			port = uint32(ap.Port())
			break
		}
	}
	ref := &api.ServiceRef{Namespace: StaticNamespace, Name: name, Port: port}
	key := fmt.Sprintf("%s/%s:%d", ref.Namespace, ref.Name, ref.Port)
	be := &api.Backend{Key: key, Service: ref, Protocol: staticProtocol(d.Protocol)}
	allOpaque := true
	for _, e := range d.Endpoints {
		ip, err := netip.ParseAddr(e.Address)
		if err != nil {
			continue
		}
		ep := &api.Endpoint{Address: ip.Unmap().String(), Port: uint32(e.Port), Identity: e.Identity}
		for _, name := range slices.Sorted(maps.Keys(e.MetricLabels)) {
			ep.MetricLabels = append(ep.MetricLabels, &api.Label{Name: name, Value: e.MetricLabels[name]})
		}
		proto := e.Protocol
		if proto == "" {
			proto = d.Protocol
		}
		ep.Protocol = staticProtocol(proto)
		allOpaque = allOpaque && proto == config.ProtocolOpaque
		if e.Identity != "" {
			ep.ProxyPort = uint32(e.ProxyPort)
			if ep.ProxyPort == 0 {
				ep.ProxyPort = config.DefaultInboundPort
			}
		}
		be.Endpoints = append(be.Endpoints, ep)
	}
	if len(be.Endpoints) == 0 {
		return nil
	}
	dc := &api.DestinationConfig{
		Service:     ref,
		Protocol:    staticProtocol(d.Protocol),
		RouteSource: api.RouteSource_ROUTE_SOURCE_DEFAULT,
		Fallback: &api.Route{
			Name:     StaticFallbackRoute,
			Resource: &api.ResourceRef{Kind: "Service", Namespace: ref.Namespace, Name: ref.Name},
			Backends: []*api.WeightedBackend{{Backend: key, Weight: 1}},
		},
		// No route retries in static mode, so the budget only documents the default.
		RetryBudget: &api.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10e9)},
		Backends:    []*api.Backend{be},
	}
	// Detection is decided per connection before an endpoint is picked: a destination
	// is opaque when all its endpoints are (as config.NewIndex decides).
	if allOpaque {
		dc.Protocol = api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	}
	for _, a := range d.Addresses {
		if ap, err := config.ParseAddrPort(a); err == nil {
			dc.Addresses = append(dc.Addresses, ap.String())
		}
	}
	for _, a := range d.Authorities {
		dc.Authorities = append(dc.Authorities, config.NormalizeAuthority(a))
	}
	// A content hash, as the destination service's versions are: a new file with
	// the same destination gives the same version.
	if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(dc); err == nil {
		sum := sha256.Sum256(b)
		dc.Version = hex.EncodeToString(sum[:])
	}
	return dc
}

func staticProtocol(p config.Protocol) api.ProtocolHint {
	switch p {
	case config.ProtocolOpaque:
		return api.ProtocolHint_PROTOCOL_HINT_OPAQUE
	case config.ProtocolHTTP1:
		return api.ProtocolHint_PROTOCOL_HINT_HTTP1
	case config.ProtocolHTTP2:
		return api.ProtocolHint_PROTOCOL_HINT_H2C
	}
	return api.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
}

// Lookup is two map reads; it never waits.
func (s *Static) Lookup(_ context.Context, t Target) *api.DestinationConfig {
	if t.Authority != "" {
		return s.byAuth[t.Authority]
	}
	if !t.Addr.IsValid() {
		return nil
	}
	return s.byAddr[netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())]
}

// normalizeAuthority is config.NormalizeAuthority without an allocation in the
// common case of an authority that is already lower-case with a port.
func normalizeAuthority(a string) string {
	if a == "" {
		return a
	}
	hasPort := false
	for i := len(a) - 1; i >= 0; i-- {
		c := a[i]
		if c == ':' {
			hasPort = i < len(a)-1
			break
		}
		if c < '0' || c > '9' {
			break
		}
	}
	if !hasPort {
		return config.NormalizeAuthority(a)
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c >= 'A' && c <= 'Z' {
			return config.NormalizeAuthority(a)
		}
	}
	return a
}
