package webhooks

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	// What Weft cannot honour (SMI route-group matches) is the rule whose result the
	// TrafficSplit reconciler reports in its conditions; conflicts need the other splits.
	errs := validation.TrafficSplit(ts)
	errs = append(errs, validation.TrafficSplitConflicts(ts, others.Items)...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(splitv1alpha2.GroupVersion.WithKind("TrafficSplit").GroupKind(), ts.Name, errs)
	}
	return missingServices(ctx, v.Reader, validation.TrafficSplitServices(ts))
}
