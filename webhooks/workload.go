package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/weftmesh/weft/internal/inject"
)

// The workload validator checks the weft annotations of pod templates when a
// Deployment (or StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) is written, so that
// `kubectl apply` reports a bad config.weft.dev/* value at once instead of the
// workload's controller failing to create pods later. The injector enforces the same
// rules on the pods, so this webhook is only early feedback: failurePolicy=ignore.
//
// +kubebuilder:webhook:path=/validate-workload,mutating=false,failurePolicy=ignore,sideEffects=None,groups=apps;batch,resources=deployments;statefulsets;daemonsets;replicasets;jobs;cronjobs,verbs=create;update,versions=v1,name=workload.validate.weft.dev,admissionReviewVersions=v1,timeoutSeconds=5

// WorkloadValidator checks the pod template annotations of workloads.
type WorkloadValidator struct{}

// Handle validates the pod template of the object in the request.
func (h *WorkloadValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	path, ok := inject.TemplatePath(gvk.GroupVersion().String(), gvk.Kind)
	if !ok {
		return admission.Allowed("")
	}
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the %s: %w", gvk.Kind, err))
	}
	node := any(obj)
	for _, k := range path {
		m, _ := node.(map[string]any)
		if node = m[k]; node == nil {
			return admission.Allowed("") // the API server's own validation reports it
		}
	}
	raw, err := json.Marshal(node)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var tpl corev1.PodTemplateSpec
	if err := json.Unmarshal(raw, &tpl); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod template: %w", err))
	}
	meta := field.NewPath(path[0], path[1:]...).Child("metadata")
	errs := inject.ValidateMetadata(meta, tpl.Annotations, tpl.Labels)
	if len(errs) == 0 {
		return admission.Allowed("")
	}
	status := apierrors.NewInvalid(gvk.GroupKind(), req.Name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
}
