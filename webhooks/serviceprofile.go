package webhooks

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
	errs, refs := ValidateServiceProfile(sp, v.ClusterDomain)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(meshv1alpha1.GroupVersion.WithKind("ServiceProfile").GroupKind(), sp.Name, errs)
	}
	var warnings admission.Warnings
	for _, ref := range refs {
		w, err := missingService(ctx, v.Reader, ref)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

// serviceRef is a cluster Service a profile refers to, and where it does so.
type serviceRef struct {
	path *field.Path
	key  types.NamespacedName
}

// missingService returns a warning when the Service does not exist.
func missingService(ctx context.Context, r client.Reader, ref serviceRef) (admission.Warnings, error) {
	var svc corev1.Service
	err := r.Get(ctx, ref.key, &svc)
	switch {
	case apierrors.IsNotFound(err):
		return admission.Warnings{fmt.Sprintf("%s: Service %s does not exist (yet); the reference takes effect when it does", ref.path, ref.key)}, nil
	case err != nil:
		return nil, fmt.Errorf("reading Service %s: %w", ref.key, err)
	}
	return nil, nil
}

// ValidateServiceProfile returns the errors of a profile and the cluster Services it
// refers to (for the existence warnings). It reads nothing from the cluster.
func ValidateServiceProfile(sp *meshv1alpha1.ServiceProfile, clusterDomain string) (field.ErrorList, []serviceRef) {
	var errs field.ErrorList
	var refs []serviceRef
	namePath := field.NewPath("metadata", "name")
	if ref, err := parseServiceName(sp.Name, clusterDomain); err != nil {
		errs = append(errs, field.Invalid(namePath, sp.Name, err.Error()))
	} else if ref != nil {
		refs = append(refs, serviceRef{path: namePath, key: *ref})
	}

	// Routes, regular expressions, durations and weights: the same checks whose result
	// the ServiceProfile reconciler reports in its conditions.
	errs = append(errs, validation.ServiceProfile(sp)...)
	for i, d := range sp.Spec.DstOverrides {
		ap := field.NewPath("spec", "dstOverrides").Index(i).Child("authority")
		host, err := parseAuthority(d.Authority)
		if err != nil {
			errs = append(errs, field.Invalid(ap, d.Authority, err.Error()))
			continue
		}
		if ref, err := parseServiceName(host, clusterDomain); err != nil {
			errs = append(errs, field.Invalid(ap, d.Authority, err.Error()))
		} else if ref != nil {
			refs = append(refs, serviceRef{path: ap, key: *ref})
		}
	}
	return errs, refs
}

// parseServiceName accepts a DNS name. A name inside the cluster domain must be a
// Service's FQDN, <service>.<namespace>.svc.<clusterDomain>, which it returns; other
// DNS names are external and return nil.
func parseServiceName(name, clusterDomain string) (*types.NamespacedName, error) {
	if msgs := k8svalidation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("must be a DNS name: %s", strings.Join(msgs, "; "))
	}
	if !strings.Contains(name, ".") {
		return nil, fmt.Errorf("must be fully qualified, e.g. web.shop.svc.%s", clusterDomain)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 {
			return nil, fmt.Errorf("DNS label %q is longer than 63 characters", label)
		}
	}
	suffix := ".svc." + clusterDomain
	if !strings.HasSuffix(name, suffix) {
		if strings.HasSuffix(name, ".svc") || strings.Contains(name, ".svc.") {
			return nil, fmt.Errorf("looks like a Service name but is not <service>.<namespace>.svc.%s", clusterDomain)
		}
		return nil, nil
	}
	parts := strings.Split(strings.TrimSuffix(name, suffix), ".")
	if len(parts) != 2 {
		return nil, fmt.Errorf("a Service's name is <service>.<namespace>.svc.%s", clusterDomain)
	}
	if msgs := k8svalidation.IsDNS1035Label(parts[0]); len(msgs) > 0 {
		return nil, fmt.Errorf("service name %q: %s", parts[0], strings.Join(msgs, "; "))
	}
	if msgs := k8svalidation.IsDNS1123Label(parts[1]); len(msgs) > 0 {
		return nil, fmt.Errorf("namespace %q: %s", parts[1], strings.Join(msgs, "; "))
	}
	return &types.NamespacedName{Namespace: parts[1], Name: parts[0]}, nil
}

// parseAuthority splits host[:port] and checks the port.
func parseAuthority(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: the whole authority is the host.
		if strings.Contains(a, ":") {
			return "", fmt.Errorf("must be host or host:port")
		}
		return a, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q must be a number between 1 and 65535", port)
	}
	return host, nil
}
