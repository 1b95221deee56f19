package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/weftmesh/weft/internal/inject"
)

// Admission webhooks can select namespaces by label only, but weft.dev/inject is an
// annotation first. The labeler copies the annotation's value to the label of the same
// name so that the injector's namespaceSelector sees it. It never blocks a namespace
// (failurePolicy=ignore); while it is unavailable a newly annotated namespace needs the
// label set by hand, which docs/injection.md says.
//
// +kubebuilder:webhook:path=/mutate-v1-namespace,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=namespaces,verbs=create;update,versions=v1,name=label.namespace.weft.dev,admissionReviewVersions=v1,timeoutSeconds=5

// NamespaceLabeler mirrors the weft.dev/inject annotation of a namespace to its label.
type NamespaceLabeler struct{}

// Handle sets the label when the annotation has a valid value that the label lacks,
// and removes the label when an update removes the annotation it was copied from (a
// label that matches no removed annotation was set by hand and stays).
func (h *NamespaceLabeler) Handle(_ context.Context, req admission.Request) admission.Response {
	var ns corev1.Namespace
	if err := json.Unmarshal(req.Object.Raw, &ns); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the namespace: %w", err))
	}
	label, hasLabel := ns.Labels[inject.AnnotationInject]
	v, ok := ns.Annotations[inject.AnnotationInject]
	switch {
	case ok && (v == inject.InjectEnabled || v == inject.InjectDisabled) && label != v:
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[inject.AnnotationInject] = v
	case !ok && hasLabel && len(req.OldObject.Raw) > 0:
		var old corev1.Namespace
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old namespace: %w", err))
		}
		if was, had := old.Annotations[inject.AnnotationInject]; !had || was != label {
			return admission.Allowed("")
		}
		delete(ns.Labels, inject.AnnotationInject)
	default:
		return admission.Allowed("")
	}
	raw, err := json.Marshal(&ns)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the namespace: %w", err))
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// The namespace validator rejects config.weft.dev/* annotations the injector could not
// use, when they are written rather than when the next pod fails to start. It never
// blocks a namespace when weft-controller is down (failurePolicy=ignore); the injector
// reports the same errors on the pods then.
//
// +kubebuilder:webhook:path=/validate-v1-namespace,mutating=false,failurePolicy=ignore,sideEffects=None,groups="",resources=namespaces,verbs=create;update,versions=v1,name=namespace.validate.weft.dev,admissionReviewVersions=v1,timeoutSeconds=5

// NamespaceValidator checks a namespace's weft annotations.
type NamespaceValidator struct{}

// ValidateCreate checks the annotations of a new namespace.
func (v *NamespaceValidator) ValidateCreate(_ context.Context, ns *corev1.Namespace) (admission.Warnings, error) {
	return nil, validateNamespace(ns)
}

// ValidateUpdate checks the annotations of a changed namespace.
func (v *NamespaceValidator) ValidateUpdate(_ context.Context, _, ns *corev1.Namespace) (admission.Warnings, error) {
	return nil, validateNamespace(ns)
}

// ValidateDelete allows every deletion.
func (v *NamespaceValidator) ValidateDelete(context.Context, *corev1.Namespace) (admission.Warnings, error) {
	return nil, nil
}

func validateNamespace(ns *corev1.Namespace) error {
	errs := inject.ValidateMetadata(field.NewPath("metadata"), ns.Annotations, ns.Labels)
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Namespace").GroupKind(), ns.Name, errs)
}
