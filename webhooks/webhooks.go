// Package webhooks holds weft-controller's admission webhooks: the pod injector (which
// calls internal/inject, the same code as `weft inject`), the namespace webhooks that
// keep weft.dev/inject visible to the injector's selectors and check config.weft.dev/*
// annotations, and the validators of ServiceProfile and TrafficSplit for what CEL cannot
// express. The validators are admission plumbing only: the rules live in
// internal/validation, which the reconcilers call too. docs/injection.md describes the
// selectors and failure policies.
package webhooks

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/inject"
)

// Paths the webhooks are served on; the kubebuilder markers beside each handler name
// the same paths.
const (
	InjectPodPath              = "/inject-v1-pod"
	MutateNamespacePath        = "/mutate-v1-namespace"
	ValidateNamespacePath      = "/validate-v1-namespace"
	ValidateServiceProfilePath = "/validate-mesh-weft-dev-v1alpha1-serviceprofile"
	ValidateTrafficSplitPath   = "/validate-split-smi-spec-io-v1alpha2-trafficsplit"
	ValidateWorkloadPath       = "/validate-workload"
)

// Options configure the webhooks.
type Options struct {
	// Namespace is the control-plane namespace. Default: weft-system.
	Namespace string
	// ClusterDomain is the cluster's DNS suffix. Default: cluster.local.
	ClusterDomain string
}

func (o Options) env() inject.Env {
	e := inject.Env{ControlPlaneNamespace: o.Namespace, ClusterDomain: o.ClusterDomain}
	if e.ControlPlaneNamespace == "" {
		e.ControlPlaneNamespace = "weft-system"
	}
	if e.ClusterDomain == "" {
		e.ClusterDomain = "cluster.local"
	}
	return e
}

// AddToManager registers every webhook on the manager's webhook server. The server
// runs on every replica (webhooks do not need the leader).
func AddToManager(mgr ctrl.Manager, opts Options) error {
	env := opts.env()
	srv := mgr.GetWebhookServer()
	// Reads on the hot path (every pod creation) go through the cache, with a fall
	// back to the API server for objects created a moment ago. Reads that decide a
	// rejection (conflicting TrafficSplits) go straight to the API server.
	r := &reader{cached: mgr.GetClient(), live: mgr.GetAPIReader()}
	log := mgr.GetLogger().WithName("webhooks")

	srv.Register(InjectPodPath, &webhook.Admission{Handler: &PodInjector{Reader: r, LiveReader: mgr.GetAPIReader(), Env: env, Log: log.WithName("inject")}})
	srv.Register(MutateNamespacePath, &webhook.Admission{Handler: &NamespaceLabeler{}})
	srv.Register(ValidateNamespacePath, admission.WithValidator(mgr.GetScheme(), &NamespaceValidator{}))
	srv.Register(ValidateWorkloadPath, &webhook.Admission{Handler: &WorkloadValidator{}})
	srv.Register(ValidateServiceProfilePath, admission.WithValidator[*meshv1alpha1.ServiceProfile](mgr.GetScheme(),
		&ServiceProfileValidator{Reader: mgr.GetAPIReader(), ClusterDomain: env.ClusterDomain}))
	srv.Register(ValidateTrafficSplitPath, admission.WithValidator[*splitv1alpha2.TrafficSplit](mgr.GetScheme(),
		&TrafficSplitValidator{Reader: mgr.GetAPIReader()}))
	return nil
}

// reader reads through the cache and falls back to the API server when the cache has
// not seen an object yet.
type reader struct {
	cached client.Reader
	live   client.Reader
}

func (r *reader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.cached.Get(ctx, key, obj, opts...)
	if apierrors.IsNotFound(err) {
		err = r.live.Get(ctx, key, obj, opts...)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	return nil
}

// List lists from the cache.
func (r *reader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.cached.List(ctx, list, opts...)
}
