package webhooks

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
	"github.com/weftmesh/weft/internal/validation"
)

// +kubebuilder:webhook:path=/validate-split-smi-spec-io-v1alpha2-trafficsplit,mutating=false,failurePolicy=fail,sideEffects=None,groups=split.smi-spec.io,resources=trafficsplits,verbs=create;update,versions=v1alpha2,name=trafficsplit.validate.weft.dev,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:rbac:groups=split.smi-spec.io,resources=trafficsplits,verbs=get;list;watch

// TrafficSplitValidator rejects a split whose root Service another split of the same
// namespace already splits: two weight tables for one Service have no meaning. The check
// reads the API server, not a cache, but two splits created at the same instant can
// still both pass (admission is not a transaction). Services that do not exist yet are
// warnings, so that GitOps apply order never matters.
type TrafficSplitValidator struct {
	Reader client.Reader
}

// ValidateCreate checks a new split.
func (v *TrafficSplitValidator) ValidateCreate(ctx context.Context, ts *splitv1alpha2.TrafficSplit) (admission.Warnings, error) {
	return v.validate(ctx, ts)
}

// ValidateUpdate checks a changed split.
func (v *TrafficSplitValidator) ValidateUpdate(ctx context.Context, _, ts *splitv1alpha2.TrafficSplit) (admission.Warnings, error) {
	return v.validate(ctx, ts)
}

// ValidateDelete allows every deletion.
func (v *TrafficSplitValidator) ValidateDelete(context.Context, *splitv1alpha2.TrafficSplit) (admission.Warnings, error) {
	return nil, nil
}

func (v *TrafficSplitValidator) validate(ctx context.Context, ts *splitv1alpha2.TrafficSplit) (admission.Warnings, error) {
	var others splitv1alpha2.TrafficSplitList
	if err := v.Reader.List(ctx, &others, client.InNamespace(ts.Namespace)); err != nil {
		return nil, fmt.Errorf("listing TrafficSplits in %s: %w", ts.Namespace, err)
	}
	if errs := ValidateTrafficSplit(ts, others.Items); len(errs) > 0 {
		return nil, apierrors.NewInvalid(splitv1alpha2.GroupVersion.WithKind("TrafficSplit").GroupKind(), ts.Name, errs)
	}

	var warnings admission.Warnings
	spec := field.NewPath("spec")
	refs := []serviceRef{{path: spec.Child("service"), key: types.NamespacedName{Namespace: ts.Namespace, Name: ts.Spec.Service}}}
	for i, b := range ts.Spec.Backends {
		if b.Service == ts.Spec.Service {
			continue
		}
		refs = append(refs, serviceRef{path: spec.Child("backends").Index(i).Child("service"),
			key: types.NamespacedName{Namespace: ts.Namespace, Name: b.Service}})
	}
	for _, ref := range refs {
		w, err := missingService(ctx, v.Reader, ref)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

// ValidateTrafficSplit returns the errors of a split given the other splits of its
// namespace. It reads nothing from the cluster.
func ValidateTrafficSplit(ts *splitv1alpha2.TrafficSplit, others []splitv1alpha2.TrafficSplit) field.ErrorList {
	// What Weft cannot honour (SMI route-group matches): the same checks whose result
	// the TrafficSplit reconciler reports in its conditions.
	errs := validation.TrafficSplit(ts)
	for _, o := range others {
		if o.Name == ts.Name || o.Spec.Service != ts.Spec.Service || o.DeletionTimestamp != nil {
			continue
		}
		errs = append(errs, field.Forbidden(field.NewPath("spec", "service"),
			fmt.Sprintf("TrafficSplit %s already splits Service %s; a Service has at most one split, so put these backends in that one", o.Name, ts.Spec.Service)))
	}
	return errs
}
