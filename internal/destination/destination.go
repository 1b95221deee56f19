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

// Package destination is Weft's destination service: proxies subscribe to one
// destination (a Service port, named by authority or by cluster IP and port) and
// receive its configuration, compiled by internal/compiler, then an update each time
// the cluster changes what they should do.
//
// The service keeps the objects the compiler reads in informers of its own (pods
// stripped to what the compiler uses) and caches one compiled configuration per
// distinct (target, client namespace) that has subscribers, fanned out to all of them.
// A change recompiles only the destinations it can affect: an EndpointSlice or Pod
// those with that Service as a backend (from the endpoints they already read); a route
// resource (ServiceProfile, HTTPRoute, GRPCRoute, TrafficSplit) those whose root
// Service it names; a Service those it is the root or a backend of or that a route
// resource names it in; the Mesh all. Updates that leave the spec alone (status
// writes) are skipped. The first change after a quiet period is compiled at once;
// while changes keep coming, compilations are at least Options.Coalesce apart.
//
// Each subscriber has a latest-wins slot: the compile loop never waits for a stream,
// so a slow proxy only ever skips versions and never holds up the others. Messages
// are compiler.Update deltas against what that stream was last sent, computed once
// per (previous, next) version and shared.
//
// It serves gRPC over mutual TLS: the serving certificate is minted from the identity
// issuer by internal/identity's code, and a client certificate must chain to the trust
// roots published in the weft-trust-roots ConfigMap, checked against the current bundle
// at every handshake so rotated anchors take effect without a restart. The namespace of
// the client's SPIFFE ID must be the request's context_namespace (or that be empty).
//
// The same gRPC server, credentials, per-identity stream limit, informers and synced
// state serve the inbound policy API (internal/inbound), registered by AddToManager.
package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	policyv1alpha1 "github.com/weftmesh/weft/apis/policy/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/compiler"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/inbound"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/replicacache"
	"github.com/weftmesh/weft/internal/svcname"
)

// Names fixed by the contracts between Weft's parts.
const (
	// ServiceName is the destination Service in the control-plane namespace.
	ServiceName = meshdefaults.DestinationServiceName
	// DefaultAddr is where the service listens.
	DefaultAddr = ":8086"
	// DefaultCoalesce is the least time between two compilations.
	DefaultCoalesce = 5 * time.Millisecond
	// DefaultShutdownGrace bounds how long shutdown waits for streams to end.
	DefaultShutdownGrace = 5 * time.Second
	// DefaultMaxStreamsPerIdentity, DefaultMaxTargetsPerIdentity and
	// DefaultMaxConcurrentStreams are the limits of ServerOptions.
	DefaultMaxStreamsPerIdentity = 10000
	DefaultMaxTargetsPerIdentity = 1000
	// DefaultMaxConcurrentStreams is the proxy's own cap on its subscriptions, which
	// share one connection: a proxy never waits for a stream slot.
	DefaultMaxConcurrentStreams = 10000
)

// Options configure the destination service in weft-controller.
type Options struct {
	// Namespace is the control-plane namespace: the identity issuer Secret and the
	// trust roots ConfigMap are read from it.
	Namespace string
	// Addr is the listen address. Default :8086. "127.0.0.1:0" picks a free port;
	// OnListen then reports it.
	Addr string
	// OnListen, when set, is called with the bound address once the service listens.
	OnListen func(net.Addr)
	// OnSynced, when set, is called once the informers have delivered the cluster's
	// state and subscriptions are served (before it they get Unavailable).
	OnSynced func()
	// ClusterDomain is the DNS suffix of Service names. Default cluster.local.
	ClusterDomain string
	// ServerNames are the DNS names of the serving certificate. Default
	// weft-destination.<Namespace>.svc and weft-destination.<Namespace>.svc.cluster.local.
	ServerNames []string
	// Coalesce is the least time between two compilations: the changes of a burst
	// (a rollout, a resync) that arrive meanwhile are compiled together. Default 5ms.
	Coalesce time.Duration
	// ShutdownGrace bounds the graceful stop. Default 5s.
	ShutdownGrace time.Duration
	// MaxStreamsPerIdentity and MaxTargetsPerIdentity bound what one client identity
	// may hold (see ServerOptions). Defaults 10000 and 1000.
	MaxStreamsPerIdentity, MaxTargetsPerIdentity int
	// NoGatewayAPI is set when the API server does not serve HTTPRoute and GRPCRoute
	// (the optional Gateway API CRDs are not installed): they are not watched, and
	// services are routed by their ServiceProfiles and TrafficSplits alone.
	NoGatewayAPI bool
}

func (o *Options) defaults() {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = compiler.DefaultClusterDomain
	}
	if len(o.ServerNames) == 0 {
		o.ServerNames = []string{
			ServiceName + "." + o.Namespace + ".svc",
			svcname.Service{Namespace: o.Namespace, Name: ServiceName}.FQDN(o.ClusterDomain),
		}
	}
	if o.Coalesce <= 0 {
		o.Coalesce = DefaultCoalesce
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
}

// +kubebuilder:rbac:groups="",resources=services;pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=secrets,resourceNames=weft-identity-issuer,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=configmaps,resourceNames=weft-trust-roots,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes;serviceprofiles;httpfaults,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.weft.dev,resources=servers;authorizationpolicies;meshtlsauthentications;networkauthentications;httplocalratelimitpolicies,verbs=get;list;watch

// AddToManager runs the destination service on every replica (it does not need the
// leader lease: proxies talk to any replica). It reads through a cache of its own, so
// that pods can be stripped to the few fields the compiler reads and the issuer Secret
// and trust roots ConfigMap are the only Secret and ConfigMap it ever caches.
func AddToManager(mgr ctrl.Manager, opts Options) error {
	if opts.Namespace == "" {
		return errors.New("destination: Namespace is required")
	}
	opts.defaults()
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: stripManagedFields,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                {Transform: slimPod},
			&discoveryv1.EndpointSlice{}: {Transform: slimEndpointSlice},
			&corev1.Namespace{}:          {Transform: slimNamespace},
			&corev1.Node{}:               {Transform: slimNode},
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {
				FieldSelector: fields.OneTermEqualSelector("metadata.name", identity.IssuerSecretName)}}},
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{opts.Namespace: {
				FieldSelector: fields.OneTermEqualSelector("metadata.name", identity.TrustRootsConfigMapName)}}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the destination cache: %w", err)
	}
	if err := replicacache.Add(mgr, c); err != nil {
		return fmt.Errorf("adding the destination cache: %w", err)
	}
	log := mgr.GetLogger().WithName("destination")
	creds, err := newCredentials(c, mgr.GetClient(), opts, log)
	if err != nil {
		return err
	}
	srv := NewServer(ServerOptions{ClusterDomain: opts.ClusterDomain, Coalesce: opts.Coalesce, Log: log,
		MaxStreamsPerIdentity: opts.MaxStreamsPerIdentity, MaxTargetsPerIdentity: opts.MaxTargetsPerIdentity})
	// The inbound policy API shares the destination's port, credentials, per-identity
	// stream limit and synced state, and its informers.
	inb := inbound.NewServer(inbound.ServerOptions{OpenStream: srv.OpenStream, Synced: srv.Synced,
		Coalesce: opts.Coalesce, Log: log.WithName("inbound")})
	srv.RegisterService(inb.Register)
	if testHookServer != nil {
		testHookServer(srv)
	}
	var regs []toolscache.ResourceEventHandlerRegistration
	watch := func(obj client.Object, handlers ...toolscache.ResourceEventHandler) error {
		inf, err := c.GetInformer(context.Background(), obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		for _, h := range handlers {
			reg, err := inf.AddEventHandler(h)
			if err != nil {
				return fmt.Errorf("handling %T events: %w", obj, err)
			}
			regs = append(regs, reg)
		}
		return nil
	}
	for _, obj := range []client.Object{
		&corev1.Service{}, &discoveryv1.EndpointSlice{}, &meshv1alpha1.ServiceProfile{}, &splitv1alpha2.TrafficSplit{},
		&corev1.Node{}, // the zones of clients (zone-aware balancing)
	} {
		if err := watch(obj, srv.Handler()); err != nil {
			return err
		}
	}
	both := []client.Object{&corev1.Pod{}, &meshv1alpha1.Mesh{}}
	if !opts.NoGatewayAPI {
		both = append(both, &gatewayv1.HTTPRoute{}, &gatewayv1.GRPCRoute{})
	}
	for _, obj := range both {
		if err := watch(obj, srv.Handler(), inb.Handler()); err != nil {
			return err
		}
	}
	if err := watch(&corev1.Namespace{}, inb.Handler()); err != nil {
		return err
	}
	// Faults only add errors and delays, so a cluster whose CRDs predate HTTPFault
	// serves its destinations; a rule that names one answers 500, as for a missing
	// HTTPFault, and the log says why.
	if err := watch(&meshv1alpha1.HTTPFault{}, srv.Handler()); err != nil {
		if !meta.IsNoMatchError(err) {
			return err
		}
		log.Error(err, "Not reading HTTPFaults: their CRD is missing; apply config/crd")
	}
	// The policy kinds' CRDs may not be installed (config/crd installs them only once
	// the proxies enforce them): destinations are served all the same, and the inbound
	// policy API answers Unavailable rather than serve policies compiled without them.
	for _, obj := range []client.Object{
		&policyv1alpha1.Server{}, &policyv1alpha1.AuthorizationPolicy{},
		&policyv1alpha1.MeshTLSAuthentication{}, &policyv1alpha1.NetworkAuthentication{},
	} {
		if err := watch(obj, inb.Handler()); err != nil {
			if !meta.IsNoMatchError(err) {
				return err
			}
			log.Error(err, "Not serving inbound policies: a policy CRD is missing")
			inb.Disable(inbound.DisabledReason(err))
			break
		}
	}
	// Rate limits only narrow what a policy admits, so a cluster whose CRDs predate
	// HTTPLocalRateLimitPolicy keeps its inbound policies, without limits, and says so.
	if err := watch(&policyv1alpha1.HTTPLocalRateLimitPolicy{}, inb.Handler()); err != nil {
		if !meta.IsNoMatchError(err) {
			return err
		}
		log.Error(err, "Not enforcing HTTPLocalRateLimitPolicies: their CRD is missing; apply config/crd")
	}
	if err := mgr.Add(inb); err != nil {
		return fmt.Errorf("adding the inbound policy service: %w", err)
	}
	// The TLS objects are read with Get; their informers must exist before the cache
	// starts so that WaitForCacheSync covers them.
	for _, obj := range []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}} {
		if _, err := c.GetInformer(context.Background(), obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	// A replica is ready once it can answer subscriptions: before, the
	// weft-destination Service should send proxies to the others.
	if err := mgr.AddReadyzCheck("destination", func(*http.Request) error {
		if !srv.Synced() {
			return errors.New("the destination service has not synced the cluster's state yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding the destination readiness check: %w", err)
	}
	return mgr.Add(&runnable{srv: srv, cache: c, regs: regs, creds: creds, opts: opts, log: log})
}

// testHookServer, when set by a test of this package, sees each Server AddToManager
// creates, so the test can inspect subscribers.
var testHookServer func(*Server)

type runnable struct {
	srv   *Server
	cache cache.Cache
	regs  []toolscache.ResourceEventHandlerRegistration
	creds *credentialsSource
	opts  Options
	log   logr.Logger
}

// NeedLeaderElection is false: every replica serves destinations.
func (r *runnable) NeedLeaderElection() bool { return false }

// Start listens at once, so that proxies get Unavailable rather than a refused
// connection while the informers fill, and marks the service synced once every event
// handler has seen the initial lists.
func (r *runnable) Start(ctx context.Context) error {
	lis, err := net.Listen("tcp", r.opts.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.opts.Addr, err)
	}
	if r.opts.OnListen != nil {
		r.opts.OnListen(lis.Addr())
	}
	r.log.Info("Serving destinations", "addr", lis.Addr().String())
	go func() {
		if !r.cache.WaitForCacheSync(ctx) {
			return
		}
		for _, reg := range r.regs {
			if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
				return
			}
		}
		r.srv.MarkSynced()
		r.log.Info("Synced the cluster's state; serving subscriptions")
		if r.opts.OnSynced != nil {
			r.opts.OnSynced()
		}
	}()
	return r.srv.Serve(ctx, lis, r.creds.serverOption(), r.opts.ShutdownGrace)
}
