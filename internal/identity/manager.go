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

package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/replicacache"
)

// Options configure the identity service in weft-controller.
type Options struct {
	// Namespace is the control-plane namespace.
	Namespace string
	// Addr is the listen address. Default: :8080.
	Addr string
	// Limits bound callers (see Limits for the defaults).
	Limits Limits
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=secrets,resourceNames=weft-identity-issuer,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=configmaps,resourceNames=weft-trust-roots,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes,verbs=get;list;watch

// AddToManager runs the identity service on every replica (it does not need the leader
// lease). The issuer Secret and the bundle ConfigMap are read through a cache of their
// own, restricted to those two objects, so the service never caches other Secrets.
func AddToManager(mgr ctrl.Manager, opts Options) error {
	_, err := Setup(mgr, opts)
	return err
}

// Setup is AddToManager returning the Service, for the parts of weft-controller that
// sign with the same issuer (the tap API's client certificate).
func Setup(mgr ctrl.Manager, opts Options) (*Service, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{opts.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Field: fields.OneTermEqualSelector("metadata.name", IssuerSecretName)},
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", TrustRootsConfigMapName)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the identity cache: %w", err)
	}
	if err := replicacache.Add(mgr, c); err != nil {
		return nil, fmt.Errorf("adding the identity cache: %w", err)
	}
	svc, err := New(Config{
		Namespace: opts.Namespace,
		Reader:    splitReader{ns: c, cluster: mgr.GetCache()},
		Reviewer:  mgr.GetClient(),
		Log:       mgr.GetLogger().WithName("identity"),
		Limits:    opts.Limits,
	})
	if err != nil {
		return nil, err
	}
	r := &runnable{svc: svc, addr: opts.Addr, cache: c}
	// A replica is ready once it can answer Certify: before, the weft-identity
	// Service should send proxies to the others.
	if err := mgr.AddReadyzCheck("identity", func(*http.Request) error {
		if !r.serving.Load() {
			return errors.New("the identity service has not synced its cache and started listening yet")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("adding the identity readiness check: %w", err)
	}
	return svc, mgr.Add(r)
}

// splitReader reads the Mesh from the manager's cache and everything else from the
// identity service's namespaced cache.
type splitReader struct {
	ns      client.Reader
	cluster client.Reader
}

func (r splitReader) Get(ctx context.Context, key types.NamespacedName, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*meshv1alpha1.Mesh); ok {
		return r.cluster.Get(ctx, key, obj, opts...)
	}
	return r.ns.Get(ctx, key, obj, opts...)
}

func (r splitReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*meshv1alpha1.MeshList); ok {
		return r.cluster.List(ctx, list, opts...)
	}
	return r.ns.List(ctx, list, opts...)
}

type runnable struct {
	svc     *Service
	addr    string
	cache   cache.Cache
	serving atomic.Bool // listening, with a synced cache
}

// NeedLeaderElection is false: every replica signs certificates.
func (r *runnable) NeedLeaderElection() bool { return false }

func (r *runnable) Start(ctx context.Context) error {
	if !r.cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("the identity cache did not sync")
	}
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.addr, err)
	}
	r.serving.Store(true)
	defer r.serving.Store(false)
	return r.svc.Serve(ctx, lis)
}
