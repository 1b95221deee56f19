package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/validation"
)

// +kubebuilder:webhook:path=/validate-mesh-weft-dev-v1alpha1-serviceprofile,mutating=false,failurePolicy=fail,sideEffects=None,groups=mesh.weft.dev,resources=serviceprofiles,verbs=create;update,versions=v1alpha1,name=serviceprofile.validate.weft.dev,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch

// ServiceProfileValidator checks what the CRD's schema and CEL rules cannot: that the
// name is a well-formed service FQDN (or an external DNS name), that every pathRegex
// compiles as RE2, and that durations and authorities parse. A profile that names a
// Service which does not exist yet is accepted with a warning, so that the order in
// which GitOps applies objects never matters.
type ServiceProfileValidator struct {
	Reader        client.Reader
	ClusterDomain string
}

// ValidateCreate checks a new profile.
func (v *ServiceProfileValidator) ValidateCreate(ctx context.Context, sp *meshv1alpha1.ServiceProfile) (admission.Warnings, error) {
	return v.validate(ctx, sp)
}

// ValidateUpdate checks a changed profile.
func (v *ServiceProfileValidator) ValidateUpdate(ctx context.Context, _, sp *meshv1alpha1.ServiceProfile) (admission.Warnings, error) {
	return v.validate(ctx, sp)
}

// ValidateDelete allows every deletion.
func (v *ServiceProfileValidator) ValidateDelete(context.Context, *meshv1alpha1.ServiceProfile) (admission.Warnings, error) {
	return nil, nil
}

func (v *ServiceProfileValidator) validate(ctx context.Context, sp *meshv1alpha1.ServiceProfile) (admission.Warnings, error) {
	// The names need the cluster domain; the spec rules are the ones whose result the
	// ServiceProfile reconciler reports in its conditions.
	errs, refs := validation.ServiceProfileNames(sp, v.ClusterDomain)
	errs = append(errs, validation.ServiceProfile(sp)...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(meshv1alpha1.GroupVersion.WithKind("ServiceProfile").GroupKind(), sp.Name, errs)
	}
	warnings, err := missingServices(ctx, v.Reader, refs)
	return append(warnings, validation.ServiceProfileWarnings(sp)...), err
}

// missingServices returns a warning for each referenced Service that does not exist.
func missingServices(ctx context.Context, r client.Reader, refs []validation.ServiceRef) (admission.Warnings, error) {
	var warnings admission.Warnings
	for _, ref := range refs {
		var svc corev1.Service
		err := r.Get(ctx, ref.Key, &svc)
		switch {
		case apierrors.IsNotFound(err):
			warnings = append(warnings, fmt.Sprintf("%s: Service %s does not exist (yet); the reference takes effect when it does", ref.Path, ref.Key))
		case err != nil:
			return nil, fmt.Errorf("reading Service %s: %w", ref.Key, err)
		}
	}
	return warnings, nil
}
