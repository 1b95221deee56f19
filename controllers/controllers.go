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

// Package controllers holds the reconcilers, one per kind, generic where kinds share a
// shape: RouteReconciler serves HTTPRoute and GRPCRoute, StatusReconciler serves
// ServiceProfile, TrafficSplit and the policy kinds (Server, AuthorizationPolicy,
// MeshTLSAuthentication, NetworkAuthentication), MeshReconciler the Mesh. Each Reconcile is a thin
// shell: get the object, ignore NotFound, run small phases that each set one condition,
// and write the status once, in a deferred patch.
package controllers

import (
	"cmp"
	"fmt"
	"time"

	"github.com/weftmesh/weft/internal/meshdefaults"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configure the reconcilers.
type Options struct {
	// Namespace is the control-plane namespace.
	Namespace string
	// ClusterDomain is the cluster's DNS suffix; empty means cluster.local.
	ClusterDomain string
	// MissingRefGrace is how long an object may name a missing Service (or the Mesh a
	// missing external issuer) before it is Stalled; zero means DefaultMissingRefGrace.
	MissingRefGrace time.Duration
	// NoGatewayAPI is set when the API server does not serve HTTPRoute and GRPCRoute at
	// v1 (the Gateway API CRDs are an optional part of the install): the route
	// reconcilers are not started, and a policy targeting a route finds it missing, so
	// it authorizes nothing. Watching a kind the API server does not serve would fail
	// the manager's start, and the controller would crash-loop instead of meshing.
	NoGatewayAPI bool
}

// AddToManager registers every reconciler with the manager.
func AddToManager(mgr ctrl.Manager, opts Options) error {
	opts.ClusterDomain = cmp.Or(opts.ClusterDomain, meshdefaults.ClusterDomain)
	profiles := NewServiceProfileReconciler(mgr.GetClient(), mgr.GetEventRecorder("serviceprofile-controller"), opts.ClusterDomain)
	profiles.MissingRefGrace = opts.MissingRefGrace
	if err := profiles.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ServiceProfile reconciler: %w", err)
	}
	splits := NewTrafficSplitReconciler(mgr.GetClient(), mgr.GetEventRecorder("trafficsplit-controller"))
	splits.MissingRefGrace = opts.MissingRefGrace
	if err := splits.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrafficSplit reconciler: %w", err)
	}
	if err := (&MeshReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("mesh-controller"),
		Namespace: opts.Namespace,
		// The same grace as the Services named by profiles and splits.
		MissingRefGrace: opts.MissingRefGrace,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Mesh reconciler: %w", err)
	}
	if !opts.NoGatewayAPI {
		if err := NewHTTPRouteReconciler(mgr.GetClient(), mgr.GetEventRecorder("httproute-controller")).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the HTTPRoute reconciler: %w", err)
		}
		if err := NewGRPCRouteReconciler(mgr.GetClient(), mgr.GetEventRecorder("grpcroute-controller")).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the GRPCRoute reconciler: %w", err)
		}
	}
	if err := (&ServiceAnnotationReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("service-annotations")}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Service annotation reconciler: %w", err)
	}
	return addPolicyReconcilers(mgr, opts)
}

// addPolicyReconcilers registers the reconcilers of the policy.weft.dev kinds' status,
// each with the grace a missing reference gets before the object is Stalled
// (opts.MissingRefGrace; 0: the default).
func addPolicyReconcilers(mgr ctrl.Manager, opts Options) error {
	grace := opts.MissingRefGrace
	c := mgr.GetClient()
	server := NewServerReconciler(c, mgr.GetEventRecorder("server-controller"))
	server.MissingRefGrace = grace
	if err := server.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Server reconciler: %w", err)
	}
	authz := NewAuthorizationPolicyReconciler(c, mgr.GetEventRecorder("authorizationpolicy-controller"))
	authz.NoGatewayAPI = opts.NoGatewayAPI
	authz.MissingRefGrace = grace
	if err := authz.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the AuthorizationPolicy reconciler: %w", err)
	}
	meshTLS := NewMeshTLSAuthenticationReconciler(c, mgr.GetEventRecorder("meshtlsauthentication-controller"))
	meshTLS.MissingRefGrace = grace
	if err := meshTLS.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the MeshTLSAuthentication reconciler: %w", err)
	}
	network := NewNetworkAuthenticationReconciler(c, mgr.GetEventRecorder("networkauthentication-controller"))
	network.MissingRefGrace = grace
	if err := network.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the NetworkAuthentication reconciler: %w", err)
	}
	limits := NewHTTPLocalRateLimitPolicyReconciler(c, mgr.GetEventRecorder("httplocalratelimitpolicy-controller"))
	limits.MissingRefGrace = grace
	if err := limits.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the HTTPLocalRateLimitPolicy reconciler: %w", err)
	}
	return nil
}

// objects returns pointers to a list's items as client.Objects, for the items functions
// of the generic reconcilers' kinds.
func objects[T any, P interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}
