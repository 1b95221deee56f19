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

package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// MeshFinalizer lets the reconciler remove what it created before the Mesh goes.
const MeshFinalizer = "mesh.weft.dev/finalizer"

// Mesh Event reasons.
const (
	ReasonTrustAnchorIssued      = "TrustAnchorIssued"
	ReasonTrustAnchorRotated     = "TrustAnchorRotated"
	ReasonIssuerIssued           = "IssuerIssued"
	ReasonIssuerRotated          = "IssuerRotated"
	ReasonIssuerRenewalTriggered = "IssuerRenewalTriggered"
	ReasonTrustBundleUpdated     = "TrustBundleUpdated"
	// ReasonCertificateRenewalOverdue (Warning): the anchor or issuer was not renewed
	// by cert-manager in time, or expired, or is not valid yet.
	ReasonCertificateRenewalOverdue = "CertificateRenewalOverdue"
	ReasonCleanedUp                 = "CleanedUp"
)

// resync bounds how long the reconciler goes without looking, so expiry warnings and
// anchor retention do not depend on an event arriving.
const resync = 10 * time.Minute

// MeshReconciler turns the Mesh into a cert-manager chain (self-signed or external
// issuer -> trust anchor -> CA issuer -> identity issuer), publishes the trust bundle
// and reports the chain's health in the Mesh status.
type MeshReconciler struct {
	client.Client
	// APIReader reads Secrets and ConfigMaps live, so the manager does not cache every
	// Secret of the cluster.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Namespace is the control-plane namespace.
	Namespace string
	// Now is the clock for expiry and rotation decisions. Default: time.Now.
	Now func() time.Time
	// BundlePropagation is how long a bundle with a new anchor is published before the
	// identity issuer is re-issued under that anchor, so every proxy (whose ConfigMap
	// volume the kubelet refreshes within about a minute) trusts the new anchor before
	// it sees a leaf from it. Default: 2m.
	BundlePropagation time.Duration
	// RetentionGrace is added to an old anchor's retention after the issuer moved off
	// it. Default: 5m.
	RetentionGrace time.Duration
	// MissingRefGrace is how long the external issuer may be missing before the Mesh
	// is Stalled; until then it is Reconciling, so a Mesh applied together with its
	// Issuer does not fail a fail-fast health check. Default: DefaultMissingRefGrace.
	MissingRefGrace time.Duration
}

// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes/finalizers,verbs=update
// +kubebuilder:rbac:groups=cert-manager.io,resources=clusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces;pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// The chain lives in the control-plane namespace only (a Role there, config/rbac). A
// create cannot be limited by name in RBAC; everything else names the objects. The
// anchor's Secret may be deleted (with the Mesh) but never read: its key is the root of
// every workload identity, and the anchor certificate comes from its public
// CertificateRequest instead (loadAnchor).
// +kubebuilder:rbac:groups=cert-manager.io,namespace=weft-system,resources=certificates;issuers;certificaterequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=cert-manager.io,namespace=weft-system,resources=certificates;issuers,verbs=create
// +kubebuilder:rbac:groups=cert-manager.io,namespace=weft-system,resources=certificates,resourceNames=weft-trust-anchor;weft-identity-issuer,verbs=update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,namespace=weft-system,resources=issuers,resourceNames=weft-selfsigned;weft-trust-anchor,verbs=update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,namespace=weft-system,resources=certificates/status,resourceNames=weft-identity-issuer,verbs=update;patch
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=secrets,resourceNames=weft-identity-issuer,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=weft-system,resources=secrets,resourceNames=weft-trust-anchor;weft-identity-issuer,verbs=delete

// The trust bundle is published in every meshed namespace, under one name. A create
// cannot be limited by name in RBAC: the ValidatingAdmissionPolicy
// weft-controller-configmaps (config/rbac) refuses the controller any other name.
// +kubebuilder:rbac:groups="",resources=configmaps,resourceNames=weft-trust-roots,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create

// Reconcile brings the chain, the bundle and the status of the Mesh up to date.
func (r *MeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	mesh := &meshv1alpha1.Mesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("mesh", klog.KObj(mesh))
	ctx = ctrl.LoggerInto(ctx, log)

	before := mesh.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, mesh.Status) {
			return
		}
		if err := r.Status().Patch(ctx, mesh, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, fmt.Errorf("patching Mesh status: %w", err))
		}
	}()

	if !mesh.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mesh)
	}
	if !controllerutil.ContainsFinalizer(mesh, MeshFinalizer) {
		patch := client.MergeFrom(mesh.DeepCopy())
		controllerutil.AddFinalizer(mesh, MeshFinalizer)
		if err := r.Patch(ctx, mesh, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		before.Finalizers = mesh.Finalizers
		before.ResourceVersion = mesh.ResourceVersion
	}
	return r.reconcileNormal(ctx, mesh)
}

// reconcileNormal runs the phases in order; each sets its condition. A phase that cannot
// go on returns the time to look again (or an error for the workqueue's backoff).
func (r *MeshReconciler) reconcileNormal(ctx context.Context, mesh *meshv1alpha1.Mesh) (ctrl.Result, error) {
	conds := conditions{list: &mesh.Status.Conditions, generation: mesh.Generation}
	mesh.Status.ObservedGeneration = mesh.Generation
	st := &meshState{next: r.now().Add(resync)}

	phases := []func(context.Context, *meshv1alpha1.Mesh, conditions, *meshState) error{
		r.reconcileAccepted,
		r.reconcileChain,
		r.reconcileTrustAnchor,
		r.reconcileIssuer,
		r.reconcileBundle,
		r.reconcileIdentity,
		r.reconcileProxies,
		r.reconcileTracing,
	}
	var errs []error
	for _, phase := range phases {
		if err := phase(ctx, mesh, conds, st); err != nil {
			errs = append(errs, err)
		}
	}
	conds.summarizeReady(readyConditions(mesh)...)
	r.setProgress(conds, st)
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: max(st.next.Sub(r.now()), time.Second)}, nil
}

// setProgress sets kstatus's Stalled or Reconciling. The only spec error is a missing
// external issuer, which gets the grace every missing reference gets; a chain being
// issued or renewed is progress, which kstatus reads from Ready being False.
func (r *MeshReconciler) setProgress(conds conditions, st *meshState) {
	acc := meta.FindStatusCondition(*conds.list, meshv1alpha1.ConditionAccepted)
	if acc == nil || acc.Status != metav1.ConditionFalse {
		conds.settled()
		return
	}
	grace := cmp.Or(r.MissingRefGrace, DefaultMissingRefGrace)
	if left := conds.stallAfterGrace(acc, grace, r.now()); left > 0 {
		st.wakeAt(r.now().Add(left))
	}
}

// reconcileAccepted: the API server has enforced the schema; what is left to check is
// what CEL cannot see, the external issuer's existence. A missing issuer is a spec error
// until the user creates it or changes the reference: cert-manager cannot issue the
// anchor the spec asks for, so the Mesh is not Accepted (and so neither Ready), and
// setProgress makes it Stalled once the grace for missing references has passed. It
// used to be checked only while no anchor existed, so a Mesh switched from its
// self-signed root to a missing issuer stayed Accepted and Ready, and GitOps tools
// reported the change healthy while cert-manager could not act on it.
func (r *MeshReconciler) reconcileAccepted(ctx context.Context, mesh *meshv1alpha1.Mesh, conds conditions, st *meshState) error {
	if ref := mesh.Spec.Identity.ExternalIssuerRef; ref != nil && (ref.Group == "" || ref.Group == "cert-manager.io") {
		var obj client.Object = &cmv1.Issuer{}
		key := types.NamespacedName{Namespace: r.Namespace, Name: ref.Name}
		if ref.Kind == cmv1.ClusterIssuerKind {
			obj, key = &cmv1.ClusterIssuer{}, types.NamespacedName{Name: ref.Name}
		}
		if err := r.Get(ctx, key, obj); apierrors.IsNotFound(err) {
			what := key.String()
			if ref.Kind == cmv1.ClusterIssuerKind {
				what = key.Name
			}
			st.anchorBlocked = fmt.Sprintf("%s %s named by spec.identity.externalIssuerRef does not exist; create it or remove the reference", ref.Kind, what)
			conds.set(meshv1alpha1.ConditionAccepted, false, meshv1alpha1.ReasonRefNotFound, st.anchorBlocked)
			return nil
		} else if err != nil {
			return fmt.Errorf("getting the external issuer: %w", err)
		}
	}
	conds.set(meshv1alpha1.ConditionAccepted, true, meshv1alpha1.ReasonAccepted, "The Mesh is valid")
	return nil
}

// reconcileChain applies the cert-manager objects.
func (r *MeshReconciler) reconcileChain(ctx context.Context, mesh *meshv1alpha1.Mesh, _ conditions, _ *meshState) error {
	return r.applyChain(ctx, mesh)
}

// reconcileDelete removes every object the reconciler created, then the finalizer.
// cert-manager does not delete the Secrets of a deleted Certificate, and test API
// servers run no garbage collector, so nothing is left to owner references alone. A
// cert-manager worker that was mid-issuance can write a Secret back just after it was
// deleted, so the finalizer goes only once a pass finds nothing left to delete.
func (r *MeshReconciler) reconcileDelete(ctx context.Context, mesh *meshv1alpha1.Mesh) (ctrl.Result, error) {
	ns := r.Namespace
	objs := []client.Object{
		&cmv1.Certificate{ObjectMeta: objectMeta(IdentityIssuerName, ns)},
		&cmv1.Issuer{ObjectMeta: objectMeta(TrustAnchorName, ns)},
		&cmv1.Certificate{ObjectMeta: objectMeta(TrustAnchorName, ns)},
		&cmv1.Issuer{ObjectMeta: objectMeta(SelfSignedIssuerName, ns)},
		&corev1.Secret{ObjectMeta: objectMeta(IdentityIssuerName, ns)},
		&corev1.Secret{ObjectMeta: objectMeta(TrustAnchorName, ns)},
	}
	deleted := 0
	for _, o := range objs {
		err := r.Delete(ctx, o)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("deleting %T %s: %w", o, o.GetName(), err)
		default:
			deleted++
		}
	}
	if err := r.deleteBundles(ctx, nil); err != nil {
		return ctrl.Result{}, err
	}
	if deleted > 0 {
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeNormal, ReasonCleanedUp, "Delete",
			"Deleted the trust chain (%d objects) and the published trust bundles", deleted)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	patch := client.MergeFrom(mesh.DeepCopy())
	if controllerutil.RemoveFinalizer(mesh, MeshFinalizer) {
		if err := r.Patch(ctx, mesh, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
		}
	}
	return ctrl.Result{}, nil
}

func (r *MeshReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func objectMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}

// SetupWithManager watches the Mesh, the cert-manager objects of the chain, namespaces
// (to publish the bundle where injection is enabled) and pods (proxy counts).
func (r *MeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.BundlePropagation == 0 {
		r.BundlePropagation = 2 * time.Minute
	}
	if r.RetentionGrace == 0 {
		r.RetentionGrace = 5 * time.Minute
	}
	toMesh := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: meshv1alpha1.MeshName}}}
	})
	inControlPlane := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == r.Namespace })
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.Mesh{}).
		Watches(&cmv1.Certificate{}, toMesh, builder.WithPredicates(inControlPlane)).
		Watches(&cmv1.Issuer{}, toMesh, builder.WithPredicates(inControlPlane)).
		Watches(&cmv1.ClusterIssuer{}, toMesh).
		Watches(&corev1.Namespace{}, toMesh).
		Watches(&corev1.Pod{}, toMesh, builder.WithPredicates(meshedPodChanged)).
		// A published copy that someone changed or deleted is put back at once.
		Watches(&corev1.ConfigMap{}, toMesh, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == TrustRootsName
		}))).
		Named("mesh").
		Complete(r)
}

// meshedPodChanged passes the pod events that move the Mesh's proxy counts: a pod with
// a weft-proxy appearing or going, its proxy's readiness changing, or its phase ending.
// Any other pod of the cluster (most of them, and each readiness change of each) used
// to trigger a full reconcile too.
var meshedPodChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return isMeshedPod(e.Object) },
	DeleteFunc: func(e event.DeleteEvent) bool { return isMeshedPod(e.Object) },
	UpdateFunc: func(e event.UpdateEvent) bool {
		if !isMeshedPod(e.ObjectNew) {
			return false
		}
		return podReady(e.ObjectOld) != podReady(e.ObjectNew) || podEnded(e.ObjectOld) != podEnded(e.ObjectNew)
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func isMeshedPod(o client.Object) bool {
	p, ok := o.(*corev1.Pod)
	return ok && hasProxy(p)
}

func podEnded(o client.Object) bool {
	p, ok := o.(*corev1.Pod)
	return ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)
}
