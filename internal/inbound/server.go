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

package inbound

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/latest"
	"github.com/weftmesh/weft/internal/offstack"
	"github.com/weftmesh/weft/internal/peertls"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/proxy/api"
	"github.com/weftmesh/weft/proxy/api/apigrpc"
)

// The inbound policy service's metrics, on controller-runtime's registry.
var (
	// Watchers is the number of open Watch streams.
	Watchers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weft_inbound_policy_watchers",
		Help: "Open inbound policy streams (InboundPolicies/Watch).",
	})
	// UpdatesTotal counts the policies sent on Watch streams.
	UpdatesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weft_inbound_policy_updates_sent_total",
		Help: "Inbound policies sent on Watch streams.",
	})
	// CompilationsTotal counts pod policy compilations: a change compiles only the
	// watched pods it can affect.
	CompilationsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weft_inbound_policy_compilations_total",
		Help: "Inbound policies compiled (one per watched pod a change can affect).",
	})
	// RefusedTotal counts refused or ended Watch calls by gRPC code.
	RefusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_inbound_policy_watches_refused_total",
		Help: "InboundPolicies/Watch calls refused or ended by the server, by gRPC status code.",
	}, []string{"code"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Watchers, UpdatesTotal, CompilationsTotal, RefusedTotal)
}

// DefaultCoalesce is the least time between two compilations.
const DefaultCoalesce = 5 * time.Millisecond

// ServerOptions configure a Server. The destination service provides the first three:
// the inbound policy API is served on its gRPC server, with its credentials and its
// per-identity stream limit.
type ServerOptions struct {
	// OpenStream authenticates a stream's client by its verified certificate and
	// counts the stream against the identity's limit: it returns the client's SPIFFE
	// ID and the function that ends the count, or a gRPC status error
	// (Unauthenticated, ResourceExhausted).
	OpenStream func(ctx context.Context) (id string, release func(), err error)
	// Synced says whether the informers have delivered the cluster's state: before,
	// a missing pod or Server would be taken for absent.
	Synced func() bool
	// Coalesce is the least time between two compilations. Default 5ms.
	Coalesce time.Duration
	// Log receives one line per refused stream.
	Log logr.Logger
}

// Server implements the InboundPolicies API on a store fed by informer events (see
// Handler). Run its compile loop with Start.
type Server struct {
	apigrpc.UnimplementedInboundPoliciesServer

	opts ServerOptions
	log  logr.Logger

	mu      sync.Mutex
	st      *store
	watches map[string]*watch

	// disabled, when not empty, is why the service cannot serve (see Disable).
	disabled string

	kick     chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
}

// Disable makes Watch answer Unavailable with reason: for a replica that cannot watch
// the policy kinds (their CRDs are not installed). Never serving a policy compiled
// without them is what keeps a missing CRD from widening access: the proxies keep the
// default policy the injector gave them.
func (s *Server) Disable(reason string) {
	s.mu.Lock()
	s.disabled = reason
	s.mu.Unlock()
}

// watch is a pod with streams: its latest state and who to send it to.
type watch struct {
	key  string
	cur  *state
	subs map[*subscriber]struct{}
}

// state is one compiled result for a pod, shared by its streams and never modified.
type state struct {
	policy *api.InboundPolicy
	// owner is the SPIFFE ID allowed to read it: the pod's ServiceAccount's.
	owner string
	// gone is set (and policy nil) when the pod no longer exists.
	gone bool
}

// subscriber is one Watch stream's latest-wins slot (see package latest).
type subscriber = latest.Slot[state]

// NewServer returns a Server; feed it with Handler.
func NewServer(opts ServerOptions) *Server {
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.Synced == nil {
		opts.Synced = func() bool { return true }
	}
	return &Server{
		opts:     opts,
		log:      opts.Log,
		st:       newStore(),
		watches:  map[string]*watch{},
		kick:     make(chan struct{}, 1),
		stopping: make(chan struct{}),
	}
}

// Handler returns the informer event handler that keeps the server's state: register
// it on the Pod, Namespace, Mesh, Server, AuthorizationPolicy, MeshTLSAuthentication,
// NetworkAuthentication, HTTPRoute and GRPCRoute informers.
func (s *Server) Handler() toolscache.ResourceEventHandler { return handler{s} }

// Register adds the InboundPolicies service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) { r.RegisterService(&inboundService, s) }

// inboundService is apigrpc's InboundPolicies service with watchHandler as the Watch
// handler (TestInboundServiceMatchesGenerated holds it to the generated one).
var inboundService = grpc.ServiceDesc{
	ServiceName: "weft.destination.v1.InboundPolicies",
	HandlerType: (*apigrpc.InboundPoliciesServer)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Watch", Handler: watchHandler, ServerStreams: true}},
	Metadata:    "apigrpc/inbound_service.proto",
}

// watchHandler serves a Watch stream as apigrpc's generated handler does, but reads the
// request off the stream's goroutine (see serveWatch).
func watchHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*Server).serveWatch(func() (*api.WatchInbound, error) {
		m := new(api.WatchInbound)
		return m, stream.RecvMsg(m)
	}, &grpc.GenericServerStream[api.WatchInbound, api.InboundPolicy]{ServerStream: stream})
}

func (s *Server) observe(old, obj any) {
	s.mu.Lock()
	changed := s.st.apply(old, obj)
	s.mu.Unlock()
	if changed {
		s.wakeLoop()
	}
}

func (s *Server) wakeLoop() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is false: every replica serves inbound policies.
func (s *Server) NeedLeaderElection() bool { return false }

// Start runs the compile loop until ctx is done, then ends every stream with OK (the
// proxy resubscribes, to another replica). A change after a quiet period is compiled at
// once; while changes keep coming, compilations are at least Coalesce apart.
func (s *Server) Start(ctx context.Context) error {
	defer s.stopOnce.Do(func() { close(s.stopping) })
	t := time.NewTimer(0)
	<-t.C
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		if wait := s.opts.Coalesce - time.Since(last); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		last = time.Now()
		s.recompile()
	}
}

// job is one pod to compile: its input, gathered under the lock.
type job struct {
	w     *watch
	in    Input
	owner string
	gone  bool
}

// recompile compiles the watched pods the changes since the last call can affect, and
// offers each new version to the pod's streams. The inputs are gathered under the lock
// and compiled outside it, so informers are not held up by compiling.
func (s *Server) recompile() {
	s.mu.Lock()
	st := s.st
	var jobs []job
	for k, w := range s.watches {
		pod := st.pods[k]
		_, podDirty := st.dirtyPods[k]
		affected := st.full || podDirty || w.cur == nil
		if !affected && pod != nil {
			_, nsDirty := st.dirtyNS[pod.Namespace]
			affected = nsDirty || (len(st.dirtyAuthn) > 0 && st.namespaceNames(pod.Namespace, st.dirtyAuthn))
		}
		if !affected {
			continue
		}
		if pod == nil {
			jobs = append(jobs, job{w: w, gone: true})
			continue
		}
		jobs = append(jobs, job{w: w, in: st.input(pod), owner: owner(st, pod)})
	}
	st.full = false
	clear(st.dirtyNS)
	clear(st.dirtyPods)
	clear(st.dirtyAuthn)
	s.mu.Unlock()

	// The replicas of a workload compile the same policy: it depends on the pod's
	// namespace, labels, ServiceAccount, annotation and containers, never its name. Each
	// shape is compiled once and shared.
	results := make([]*state, len(jobs))
	shapes := map[string]*state{}
	for i, j := range jobs {
		if j.gone {
			results[i] = &state{gone: true}
			continue
		}
		key, ok := shapeKey(j.in.Pod)
		if r := shapes[key]; ok && r != nil {
			results[i] = r
			continue
		}
		results[i] = &state{policy: Compile(j.in), owner: j.owner}
		CompilationsTotal.Inc()
		if ok {
			shapes[key] = results[i]
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for i, j := range jobs {
		// The watch may have lost its last stream meanwhile; then nobody needs it.
		if s.watches[j.w.key] != j.w {
			continue
		}
		r, cur := results[i], j.w.cur
		if cur != nil && cur.gone == r.gone && cur.owner == r.owner &&
			(r.gone || cur.policy.GetVersion() == r.policy.GetVersion()) {
			continue
		}
		j.w.cur = r
		for sub := range j.w.subs {
			sub.Offer(r)
		}
	}
}

// shapeKey is everything of a pod its policy (and its owner) depends on. ok is false
// when it cannot be computed; the pod is then compiled on its own.
func shapeKey(pod *corev1.Pod) (string, bool) {
	b, err := json.Marshal(struct {
		NS, SA, Default  string
		Labels           map[string]string
		Init, Containers []corev1.Container
	}{pod.Namespace, pod.Spec.ServiceAccountName, pod.Annotations[meshdefaults.AnnotationDefaultInboundPolicy],
		pod.Labels, pod.Spec.InitContainers, pod.Spec.Containers})
	return string(b), err == nil
}

// owner is the SPIFFE ID of the pod's ServiceAccount: the only client that may read
// its policy.
func owner(st *store, pod *corev1.Pod) string {
	td := meshdefaults.TrustDomain
	if st.mesh != nil && st.mesh.Spec.TrustDomain != "" {
		td = st.mesh.Spec.TrustDomain
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return peertls.WorkloadID(td, pod.Namespace, sa)
}

// errNotFound and errDenied are the stream's answers when the pod is not there or not
// the caller's. They say no more than that: the caller may be any meshed workload.
var (
	errDenied = status.Error(codes.PermissionDenied, "the client's identity is not the pod's ServiceAccount: a proxy may watch only its own pod's inbound policy")
)

func errNotFound(ns, pod string) error {
	return status.Errorf(codes.NotFound, "pod %s/%s is not known to the control plane (yet): retry", ns, pod)
}

// Watch implements apigrpc.InboundPoliciesServer. The gRPC server calls watchHandler
// instead, which reads the request off the stream's goroutine as well.
func (s *Server) Watch(req *api.WatchInbound, stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	return s.serveWatch(func() (*api.WatchInbound, error) { return req, nil }, stream)
}

// serveWatch serves one Watch stream whose request recv reads. Each meshed pod's proxy
// holds one, parked for the pod's life; everything deeper than waiting (reading the
// request, the checks, each send) runs on short-lived goroutines (package offstack),
// so the stream's own keeps the smallest stack.
func (s *Server) serveWatch(recv func() (*api.WatchInbound, error), stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	var req *api.WatchInbound
	var err error
	offstack.Run(func() { req, err = recv() })
	if err != nil {
		return err
	}
	err = s.watch(req, stream)
	if code := status.Code(err); err != nil && code != codes.Canceled {
		RefusedTotal.WithLabelValues(code.String()).Inc()
	}
	return err
}

// watch checks and subscribes a Watch, then sends each new policy of the pod until
// the client goes, the pod goes or stops being the client's, or the server stops.
func (s *Server) watch(req *api.WatchInbound, stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	ctx := stream.Context()
	var w *watcher
	var err error
	offstack.Run(func() { w, err = s.open(ctx, req) })
	if err != nil {
		return err
	}
	defer w.close()
	Watchers.Inc()
	defer Watchers.Dec()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopping:
			return nil
		case <-w.sub.Wake():
		}
		if err := offstack.RunErr(func() error { return w.send(stream) }); err != nil {
			return err
		}
	}
}

// watcher is one open Watch: its pod, its client and what it last sent.
type watcher struct {
	s       *Server
	ns, pod string
	key, id string
	sub     *subscriber
	release func()
	// sent is the version of the policy the client has ("": none yet).
	sent string
}

// open authenticates a Watch, counts it against the client's stream limit and
// subscribes it to its pod.
func (s *Server) open(ctx context.Context, req *api.WatchInbound) (*watcher, error) {
	if s.opts.OpenStream == nil {
		return nil, status.Error(codes.Unavailable, "the inbound policy service is not set up")
	}
	id, release, err := s.opts.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	w := &watcher{s: s, ns: req.GetNamespace(), pod: req.GetPod(), key: objKey(req.GetNamespace(), req.GetPod()), id: id, release: release}
	if err := w.check(); err != nil {
		release()
		return nil, err
	}
	w.sub = latest.New[state]()
	if err := s.subscribe(w.key, id, w.sub); err != nil {
		s.log.V(1).Info("Refused an inbound policy watch", "pod", w.key, "client", id, "reason", status.Code(err).String())
		release()
		return nil, err
	}
	return w, nil
}

// check refuses a Watch the server cannot answer now.
func (w *watcher) check() error {
	if w.ns == "" || w.pod == "" {
		return status.Error(codes.InvalidArgument, "namespace and pod are required")
	}
	w.s.mu.Lock()
	disabled := w.s.disabled
	w.s.mu.Unlock()
	if disabled != "" {
		return status.Error(codes.Unavailable, disabled)
	}
	if !w.s.opts.Synced() {
		return status.Error(codes.Unavailable, "the control plane has not synced the cluster's state yet")
	}
	return nil
}

func (w *watcher) close() {
	w.s.unsubscribe(w.key, w.sub)
	w.release()
}

// send sends the pod's latest policy if the client does not have it.
func (w *watcher) send(stream grpc.ServerStreamingServer[api.InboundPolicy]) error {
	st := w.sub.Take()
	if st == nil {
		return nil
	}
	// Checked again on every change: a pod recreated under the same name with
	// another ServiceAccount is not the caller's any more.
	if st.gone {
		return errNotFound(w.ns, w.pod)
	}
	if st.owner != w.id {
		return errDenied
	}
	if st.policy.GetVersion() == w.sent {
		return nil
	}
	if err := stream.Send(st.policy); err != nil {
		return err
	}
	UpdatesTotal.Inc()
	w.sent = st.policy.GetVersion()
	return nil
}

// subscribe adds a stream to its pod's watch, or refuses it: PermissionDenied when the
// caller's identity is not of the pod's namespace (checked before the pod is looked up,
// so that no one learns which pods exist in namespaces not theirs) or not the pod's
// ServiceAccount, NotFound when the pod is not in the cache.
func (s *Server) subscribe(key, id string, sub *subscriber) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pod := s.st.pods[key]
	ns, name, _ := strings.Cut(key, "/")
	if !sameNamespace(id, ns) {
		return errDenied
	}
	if pod == nil {
		return errNotFound(ns, name)
	}
	if owner(s.st, pod) != id {
		return errDenied
	}
	w := s.watches[key]
	if w == nil {
		w = &watch{key: key, subs: map[*subscriber]struct{}{}}
		s.watches[key] = w
		// Its first version is compiled by the loop, at once when it is idle.
		s.wakeLoop()
	}
	w.subs[sub] = struct{}{}
	if w.cur != nil {
		sub.Offer(w.cur)
	}
	return nil
}

func (s *Server) unsubscribe(key string, sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watches[key]
	if w == nil {
		return
	}
	delete(w.subs, sub)
	if len(w.subs) == 0 {
		delete(s.watches, key)
	}
}

// sameNamespace says whether a workload SPIFFE ID is of namespace ns, whatever its
// trust domain (the full ID is compared once the pod is found).
func sameNamespace(id, ns string) bool {
	_, idNS, _, ok := peertls.ParseWorkloadID(id)
	return ok && idNS == ns
}

// DisabledReason is the Unavailable message of a service whose policy kinds cannot be
// watched (err says why).
func DisabledReason(err error) string {
	return fmt.Sprintf("inbound policies are not served: %v (install the policy.weft.dev CRDs of config/crd and restart weft-controller); proxies keep enforcing their default policy", err)
}
