/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package destination

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/latest"
	"github.com/weftmesh/weft/internal/offstack"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// ClusterDomain is the DNS suffix of Service names. Default cluster.local.
	ClusterDomain string
	// Coalesce is the least time between two compilations. Default 5ms.
	Coalesce time.Duration
	// Log receives one line per refused subscription and per failed compilation.
	Log logr.Logger
	// MaxStreamsPerIdentity bounds the open Get streams of one client identity (a
	// ServiceAccount, so all the replicas of a workload together: 100 replicas each
	// talking to 100 destinations fit). A proxy holds one stream per destination it
	// is talking to and closes it after a minute idle. Default 10000.
	MaxStreamsPerIdentity int
	// MaxTargetsPerIdentity bounds the distinct destinations one client identity
	// subscribes to at once: each is state the server compiles and keeps. Targets
	// outside the cluster are not counted (they keep no state). Default 1000.
	MaxTargetsPerIdentity int
	// MaxConcurrentStreams bounds the streams on one connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113 section 6.5.2): a client past it waits
	// for a stream to end. Default 10000, the most subscriptions a proxy opens (all on
	// one connection).
	MaxConcurrentStreams uint32
}

// Server implements the Destination gRPC API on a store fed by informer events (see
// Handler).
type Server struct {
	apigrpc.UnimplementedDestinationServer

	opts ServerOptions
	log  logr.Logger

	storeMu sync.Mutex
	st      *store

	synced atomic.Bool
	// kick wakes the compile loop; buffered so that a burst is one wake-up.
	kick chan struct{}
	// stopping is closed on shutdown to end every stream.
	stopping chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	entries map[entryKey]*entry
	// byDep indexes the entries by each Service in their deps, byRoot by their root,
	// and uncompiled holds those not compiled yet (cur nil), so that a change of
	// endpoints or route resources finds the destinations it affects without
	// scanning them all (affectedEntries): at 10,000 destinations the scan was most
	// of a change's CPU.
	byDep, byRoot map[string]map[*entry]struct{}
	uncompiled    map[*entry]struct{}

	// services are the other gRPC services served on the destination's port (the
	// inbound policy API), registered before Serve.
	services []func(grpc.ServiceRegistrar)

	usageMu sync.Mutex
	// usage is what each client identity holds; an identity is in it only while it
	// has streams, so it is bounded by the streams.
	usage map[string]*clientUsage
}

// clientUsage counts one client identity's streams and, per destination, its streams
// on that destination.
type clientUsage struct {
	streams int
	targets map[entryKey]int
}

// entryKey identifies a compiled destination: a target as seen from one namespace.
type entryKey struct {
	target    string
	contextNS string
}

// entry is a destination with subscribers: its latest result, the Services its
// configuration reads (to know which changes affect it) and who to send it to.
type entry struct {
	key    entryKey
	target target
	cur    *result // nil until first compiled
	deps   []string
	// root is the Service the target resolved to at the last compilation ("" when
	// none).
	root string
	subs map[*subscriber]struct{}
}

// result is one compiled version of a destination, shared by its subscribers and
// never modified once published (except its memo of messages).
type result struct {
	cfg      *api.DestinationConfig // nil when not found
	notFound string

	mu sync.Mutex
	// byPrev memoises the message from a previous version to this one: subscribers of
	// one destination mostly share their previous version, so each delta is computed
	// once per fan-out rather than once per stream.
	byPrev map[string]*api.DestinationUpdate
	// byZone memoises the result as seen from each client zone, when an endpoint
	// prefers some zone (compiler.WithClientZone): one copy per zone, shared by that
	// zone's subscribers.
	byZone map[string]*result
	// zoned memoises compiler.PrefersZone(cfg): 0 unknown, 1 no, 2 yes.
	zoned int
}

// forZone returns r as seen by the client whose zone clientZone finds (r itself
// when no endpoint prefers a zone: then clientZone is not called).
func (r *result) forZone(clientZone func() string, log logr.Logger) *result {
	if r.cfg == nil {
		return r
	}
	r.mu.Lock()
	if r.zoned == 0 {
		r.zoned = 1
		if compiler.PrefersZone(r.cfg) {
			r.zoned = 2
		}
	}
	zoned := r.zoned == 2
	r.mu.Unlock()
	if !zoned {
		return r
	}
	// Outside r.mu: clientZone takes the store's lock.
	zone := clientZone()
	if zone == "" {
		return r
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if z, ok := r.byZone[zone]; ok {
		return z
	}
	cfg, err := compiler.WithClientZone(r.cfg, zone)
	if err != nil {
		// Cannot happen for a configuration that marshalled once; the client
		// balances without its zone rather than not at all.
		log.Error(err, "Sending a destination without the client's zone", "zone", zone)
		cfg = r.cfg
	}
	z := r
	if cfg != r.cfg {
		z = &result{cfg: cfg}
	}
	if r.byZone == nil {
		r.byZone = map[string]*result{}
	}
	r.byZone[zone] = z
	return z
}

func (r *result) sameAs(o *result) bool {
	if r.cfg == nil || o.cfg == nil {
		return r.cfg == nil && o.cfg == nil
	}
	return r.cfg.Version == o.cfg.Version
}

// updateFrom returns the message that takes a subscriber that has prev (nil: nothing)
// to r, or nil when none is needed.
func (r *result) updateFrom(prev *result) *api.DestinationUpdate {
	if r.cfg == nil {
		if prev != nil && prev.cfg == nil {
			return nil
		}
		return &api.DestinationUpdate{Kind: &api.DestinationUpdate_NotFound{NotFound: &api.NotFound{Reason: r.notFound}}}
	}
	var prevCfg *api.DestinationConfig
	memo := ""
	if prev != nil && prev.cfg != nil {
		prevCfg, memo = prev.cfg, prev.cfg.Version
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.byPrev[memo]; ok {
		return m
	}
	m := compiler.Update(prevCfg, r.cfg)
	if r.byPrev == nil {
		r.byPrev = map[string]*api.DestinationUpdate{}
	}
	r.byPrev[memo] = m
	return m
}

// subscriber is one Get stream's latest-wins slot (see package latest).
type subscriber = latest.Slot[result]

// NewServer returns a Server; feed it with Handler and call MarkSynced once the
// informers have delivered their initial lists.
func NewServer(opts ServerOptions) *Server {
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = compiler.DefaultClusterDomain
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.MaxStreamsPerIdentity <= 0 {
		opts.MaxStreamsPerIdentity = DefaultMaxStreamsPerIdentity
	}
	if opts.MaxTargetsPerIdentity <= 0 {
		opts.MaxTargetsPerIdentity = DefaultMaxTargetsPerIdentity
	}
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	return &Server{
		usage:      map[string]*clientUsage{},
		opts:       opts,
		log:        opts.Log,
		st:         newStore(opts.ClusterDomain),
		kick:       make(chan struct{}, 1),
		stopping:   make(chan struct{}),
		entries:    map[entryKey]*entry{},
		byDep:      map[string]map[*entry]struct{}{},
		byRoot:     map[string]map[*entry]struct{}{},
		uncompiled: map[*entry]struct{}{},
	}
}

// Handler returns the informer event handler that keeps the server's state.
func (s *Server) Handler() toolscache.ResourceEventHandler { return handler{s} }

func (s *Server) observe(old, obj any) {
	s.storeMu.Lock()
	changed := s.st.apply(old, obj)
	// Changes before the sync are the initial lists, not changes to measure.
	if changed && s.st.since.IsZero() && s.synced.Load() {
		s.st.since = time.Now()
	}
	s.storeMu.Unlock()
	if changed && s.synced.Load() {
		s.wakeLoop()
	}
}

func (s *Server) wakeLoop() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// MarkSynced lets subscriptions in: before it, Get answers Unavailable, since a
// destination missing from a half-filled cache would be reported as not found.
func (s *Server) MarkSynced() {
	s.storeMu.Lock()
	s.st.full = true
	s.storeMu.Unlock()
	s.synced.Store(true)
	s.wakeLoop()
}

// Synced says whether MarkSynced was called.
func (s *Server) Synced() bool { return s.synced.Load() }

// Get implements apigrpc.DestinationServer. The gRPC server calls getHandler
// instead, which reads the request off the stream's goroutine as well (see getHandler).
func (s *Server) Get(req *api.GetDestination, stream grpc.ServerStreamingServer[api.DestinationUpdate]) error {
	return s.serveGet(func() (*api.GetDestination, error) { return req, nil }, stream)
}

// destinationService is apigrpc's Destination service with getHandler as the Get
// handler (TestDestinationServiceMatchesGenerated holds it to the generated one).
var destinationService = grpc.ServiceDesc{
	ServiceName: "weft.destination.v1.Destination",
	HandlerType: (*apigrpc.DestinationServer)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Get", Handler: getHandler, ServerStreams: true}},
	Metadata:    "apigrpc/destination_service.proto",
}

// getHandler serves a Get stream, as apigrpc's generated handler does, but decodes the
// request off the stream's goroutine (serveGet).
func getHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*Server).serveGet(func() (*api.GetDestination, error) {
		m := new(api.GetDestination)
		return m, stream.RecvMsg(m)
	}, &grpc.GenericServerStream[api.GetDestination, api.DestinationUpdate]{ServerStream: stream})
}

// serveGet serves one Get stream whose request recv reads.
//
// A stream's goroutine spends its life parked, and its stack is most of what a
// subscription costs. Parked, it holds grpc-go's frames (1.4 KB) and the few of
// serveGet and watch, which fit the 4 KiB a goroutine starts with; but anything deeper
// run on it once (decoding the request, the checks, a send: protobuf and HTTP/2
// framing) grows its stack to 8 KiB for good, since the collector halves a stack only
// while less than a quarter of it is used. So that work runs on short-lived goroutines
// (offstack.Run) and the stream's own stays at 4 KiB: measured with 2,000 streams, 4.1 KB
// of stack per stream instead of 8.2 KB, 9.4 KB per subscription instead of 13.1 KB
// (with goroutines started at the smallest stack, as the manifests run
// weft-controller: GODEBUG=adaptivestackstart=0).
func (s *Server) serveGet(recv func() (*api.GetDestination, error), stream grpc.ServerStreamingServer[api.DestinationUpdate]) error {
	var g *getStream
	var err error
	offstack.Run(func() {
		var req *api.GetDestination
		if req, err = recv(); err == nil {
			g, err = s.open(req, stream)
		}
	})
	if err != nil {
		return err
	}
	defer g.close()
	if g.external != "" {
		return s.notFoundStream(g)
	}
	return g.watch()
}

// getStream is one Get stream's state while it waits for versions to send.
type getStream struct {
	s      *Server
	ctx    context.Context
	stream grpc.ServerStreamingServer[api.DestinationUpdate]
	id     string
	key    entryKey
	// external is the NotFound reason of a name outside the cluster, which has no
	// subscription (sub is nil).
	external string
	sub      *subscriber
	// sent is the version the client has (nil: nothing yet).
	sent *result
	// sendFn is send, bound once rather than at every update.
	sendFn func() error
}

// open authenticates and checks a Get request, counts it against the client's
// limits and subscribes it (a name outside the cluster only counts).
func (s *Server) open(req *api.GetDestination, stream grpc.ServerStreamingServer[api.DestinationUpdate]) (*getStream, error) {
	ctx := stream.Context()
	ns, id, err := clientNamespace(ctx)
	if err != nil {
		RefusedTotal.WithLabelValues(codes.Unauthenticated.String()).Inc()
		return nil, err
	}
	if cns := req.GetContextNamespace(); cns != "" && cns != ns {
		RefusedTotal.WithLabelValues(codes.PermissionDenied.String()).Inc()
		s.log.Info("Refused a subscription", "reason", "context namespace mismatch", "contextNamespace", cns, "clientNamespace", ns)
		return nil, status.Errorf(codes.PermissionDenied, "context_namespace %q is not the namespace of the client's identity (%q)", cns, ns)
	}
	t, err := parseTarget(req, s.opts.ClusterDomain)
	if err != nil {
		RefusedTotal.WithLabelValues(codes.InvalidArgument.String()).Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !s.synced.Load() {
		RefusedTotal.WithLabelValues(codes.Unavailable.String()).Inc()
		return nil, status.Error(codes.Unavailable, "the destination service has not synced the cluster's state yet")
	}

	key := entryKey{target: t.key(), contextNS: req.GetContextNamespace()}
	// A name outside the cluster is never found and never will be: it is answered
	// without server state, so any number of such names costs only their streams.
	g := &getStream{s: s, ctx: ctx, stream: stream, id: id, key: key}
	g.sendFn = g.send
	if t.External != "" {
		g.external = s.externalReason(t)
	}
	if err := s.acquire(id, key, g.external == ""); err != nil {
		return nil, err
	}
	if g.external == "" {
		g.sub = latest.New[result]()
		s.subscribe(key, t, g.sub)
		Subscribers.Inc()
	}
	return g, nil
}

// close undoes open.
func (g *getStream) close() {
	if g.sub != nil {
		Subscribers.Dec()
		g.s.unsubscribe(g.key, g.sub)
	}
	g.s.release(g.id, g.key, g.sub != nil)
}

// watch sends each new version until the client goes or the server stops; each send
// runs off the stream's goroutine (see serveGet).
func (g *getStream) watch() error {
	for {
		select {
		case <-g.ctx.Done():
			return status.FromContextError(g.ctx.Err()).Err()
		case <-g.s.stopping:
			// The proxy resubscribes to another replica; ending with OK (rather than
			// dropping the connection) tells it this was an orderly shutdown.
			return nil
		case <-g.sub.Wake():
		}
		if err := offstack.RunErr(g.sendFn); err != nil {
			return err
		}
	}
}

// send sends the latest version offered, as seen from the client's zone, as a delta
// from what the client has, if it differs.
func (g *getStream) send() error {
	r := g.sub.Take()
	if r == nil {
		return nil
	}
	r = r.forZone(g.zone, g.s.log)
	msg := r.updateFrom(g.sent)
	if msg == nil {
		return nil
	}
	if err := g.stream.Send(msg); err != nil {
		return err
	}
	UpdatesTotal.WithLabelValues(updateKind(msg)).Inc()
	g.sent = r
	return nil
}

// zone is the client's zone (Server.clientZone).
func (g *getStream) zone() string { return g.s.clientZone(g.ctx, g.id) }

// clientZone is the topology zone of the node of the pod that opened the stream, or
// "" when unknown. The pod is found by the connection's source address, which a
// meshed pod's proxy cannot choose (it connects from its pod IP), and counts only
// when its ServiceAccount and namespace are the client certificate's: a connection
// through a NAT or from an IP reused by another pod gets no zone, so its balancer
// prefers no zone rather than the wrong one. The zone is read for each message of
// a destination with a zone preference (two map lookups), so a node labelled after
// the stream opened counts from the next change of such a destination; a label
// change alone sends nothing.
func (s *Server) clientZone(ctx context.Context, id string) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return ""
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	pod, _ := s.st.podByIndex(podIPKey(ap.Addr().Unmap().String()))
	if pod == nil || pod.Spec.NodeName == "" {
		return ""
	}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	if !strings.HasSuffix(id, "/ns/"+pod.Namespace+"/sa/"+sa) {
		return ""
	}
	return s.st.nodeZones[pod.Spec.NodeName]
}

// RegisterService adds a gRPC service to the server Serve starts (call it before
// Serve): the service shares the destination API's port, mTLS credentials, message and
// stream limits.
func (s *Server) RegisterService(register func(grpc.ServiceRegistrar)) {
	s.services = append(s.services, register)
}

// OpenStream is for the streams of a service added with RegisterService: it
// authenticates the call's client by its verified certificate, as Get does
// (Unauthenticated without one), and counts the stream against the identity's
// MaxStreamsPerIdentity (ResourceExhausted past it). It returns the client's SPIFFE ID
// and the function to call when the stream ends.
func (s *Server) OpenStream(ctx context.Context) (id string, release func(), err error) {
	_, id, err = clientNamespace(ctx)
	if err != nil {
		return "", nil, err
	}
	if err := s.acquire(id, entryKey{}, false); err != nil {
		return "", nil, err
	}
	var once sync.Once
	return id, func() { once.Do(func() { s.release(id, entryKey{}, false) }) }, nil
}

// acquire counts a stream (and, when withEntry, a destination) against the client
// identity's limits, or refuses it with ResourceExhausted.
func (s *Server) acquire(id string, key entryKey, withEntry bool) error {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	u := s.usage[id]
	if u == nil {
		u = &clientUsage{targets: map[entryKey]int{}}
	}
	if u.streams >= s.opts.MaxStreamsPerIdentity {
		return s.limited(id, LimitStreamsPerIdentity, fmt.Sprintf(
			"client identity %s already has %d open destination streams, the most one identity may have: its proxies hold too many subscriptions (they close idle ones after --destination-idle-timeout); retry later",
			id, u.streams))
	}
	if withEntry && u.targets[key] == 0 && len(u.targets) >= s.opts.MaxTargetsPerIdentity {
		return s.limited(id, LimitTargetsPerIdentity, fmt.Sprintf(
			"client identity %s already subscribes to %d distinct destinations, the most one identity may: its proxies hold too many subscriptions (they close idle ones after --destination-idle-timeout); retry later",
			id, len(u.targets)))
	}
	s.usage[id] = u
	u.streams++
	if withEntry {
		u.targets[key]++
	}
	return nil
}

func (s *Server) limited(id, limit, msg string) error {
	LimitExceededTotal.WithLabelValues(limit).Inc()
	RefusedTotal.WithLabelValues(codes.ResourceExhausted.String()).Inc()
	s.log.V(1).Info("Refused a subscription", "reason", limit, "client", id)
	return status.Error(codes.ResourceExhausted, msg)
}

func (s *Server) release(id string, key entryKey, withEntry bool) {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	u := s.usage[id]
	if u == nil {
		return
	}
	u.streams--
	if withEntry {
		if u.targets[key]--; u.targets[key] <= 0 {
			delete(u.targets, key)
		}
	}
	if u.streams <= 0 {
		delete(s.usage, id)
	}
}

// entryCount is the number of destinations the server keeps state for.
func (s *Server) entryCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// externalReason is the NotFound reason of a name outside the cluster.
func (s *Server) externalReason(t target) string {
	return fmt.Sprintf("%s is not the name of a Service in cluster domain %s", t.External, s.opts.ClusterDomain)
}

// notFoundStream answers a target that can never be found: NotFound once, then the
// stream stays open (a proxy takes a stream that ends as a reason to resubscribe)
// until the client goes or the server stops.
func (s *Server) notFoundStream(g *getStream) error {
	Subscribers.Inc()
	defer Subscribers.Dec()
	msg := &api.DestinationUpdate{Kind: &api.DestinationUpdate_NotFound{NotFound: &api.NotFound{Reason: g.external}}}
	if err := offstack.RunErr(func() error { return g.stream.Send(msg) }); err != nil {
		return err
	}
	UpdatesTotal.WithLabelValues(updateKind(msg)).Inc()
	select {
	case <-g.ctx.Done():
		return status.FromContextError(g.ctx.Err()).Err()
	case <-s.stopping:
		return nil
	}
}

func updateKind(m *api.DestinationUpdate) string {
	switch m.GetKind().(type) {
	case *api.DestinationUpdate_Snapshot:
		return "snapshot"
	case *api.DestinationUpdate_Endpoints:
		return "endpoints"
	}
	return "not_found"
}

func (s *Server) subscribe(key entryKey, t target, sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		e = &entry{key: key, target: t, subs: map[*subscriber]struct{}{}}
		s.entries[key] = e
		s.uncompiled[e] = struct{}{}
		Destinations.Set(float64(len(s.entries)))
		s.wakeLoop()
	}
	e.subs[sub] = struct{}{}
	if e.cur != nil {
		sub.Offer(e.cur)
	}
}

func (s *Server) unsubscribe(key entryKey, sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		return
	}
	delete(e.subs, sub)
	if len(e.subs) == 0 {
		// Nobody watches it any more: stop compiling it.
		delete(s.entries, key)
		delete(s.uncompiled, e)
		s.setDeps(e, nil)
		s.setRoot(e, "")
		Destinations.Set(float64(len(s.entries)))
	}
}

// run is the compile loop. A change after a quiet period is compiled at once; while
// changes keep coming, compilations are at least Coalesce apart, so that a burst (a
// rollout, a resync, thousands of new subscriptions) costs a few compilations rather
// than one per event.
func (s *Server) run(ctx context.Context) {
	t := time.NewTimer(0)
	<-t.C
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if wait := s.opts.Coalesce - time.Since(last); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		last = time.Now()
		s.recompile()
	}
}

// Serve serves the gRPC API on lis until ctx is done, then ends every stream and stops
// gracefully within grace.
func (s *Server) Serve(ctx context.Context, lis net.Listener, creds grpc.ServerOption, grace time.Duration) error {
	srv := grpc.NewServer(creds,
		// A request is a name; anything larger is not a proxy.
		grpc.MaxRecvMsgSize(16<<10),
		grpc.ConnectionTimeout(10*time.Second),
		// Proxies keep their streams alive with pings; refuse abusive rates.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.MaxConcurrentStreams(s.opts.MaxConcurrentStreams),
	)
	srv.RegisterService(&destinationService, s)
	for _, register := range s.services {
		register(srv)
	}
	loopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.run(loopCtx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		s.stopOnce.Do(func() { close(s.stopping) })
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(grace):
			srv.Stop()
		}
		return nil
	case err := <-errc:
		return err
	}
}
