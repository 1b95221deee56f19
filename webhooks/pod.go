package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/validation"
)

// Two entries share the injector: one for pods in namespaces labelled
// weft.dev/inject=enabled, one for pods labelled so themselves in other namespaces. The
// selectors (config/webhook/kustomization.yaml) keep every other pod away from the
// webhook, so failurePolicy=fail only ever affects meshed workloads.
//
// +kubebuilder:webhook:path=/inject-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=namespace.inject.weft.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,timeoutSeconds=10
// +kubebuilder:webhook:path=/inject-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pod.inject.weft.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,timeoutSeconds=10
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.weft.dev,resources=meshes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,resourceNames=weft-trust-roots,verbs=get

// PodInjector is the mutating webhook that adds the proxy to new pods.
type PodInjector struct {
	Reader client.Reader
	// LiveReader reads the weft-trust-roots ConfigMaps from the API server (two GETs
	// per injected pod), so that the webhook does not cache every ConfigMap of the
	// cluster. Default: Reader.
	LiveReader client.Reader
	Env        inject.Env
	Log        logr.Logger
}

// Handle injects the pod of a CREATE request when inject.Decide says so.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	var ns corev1.Namespace
	if err := h.Reader.Get(ctx, types.NamespacedName{Name: nsName}, &ns); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading the pod's namespace: %w", err))
	}
	before := corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	tpl := *before.DeepCopy() // Inject edits in place; before must stay as sent
	nsInfo := inject.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
	if ok, reason := inject.Decide(&tpl, nsInfo, h.Env); !ok {
		return admission.Allowed(reason)
	}

	var warnings []string
	mesh := meshv1alpha1.Mesh{}
	err := h.Reader.Get(ctx, types.NamespacedName{Name: meshv1alpha1.MeshName}, &mesh)
	switch {
	case apierrors.IsNotFound(err):
		warnings = append(warnings, "weft: no Mesh named default exists; the proxy got the built-in defaults")
		mesh.Spec = inject.DefaultMeshSpec()
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading the Mesh: %w", err))
	}

	if why, err := h.foreignTrustRoots(ctx, nsName); err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	} else if why != "" {
		return admission.Denied("weft cannot inject the proxy: " + why)
	}

	if errs := inject.Inject(&tpl, nsInfo, mesh.Spec, h.Env); len(errs) > 0 {
		return admission.Denied(fmt.Sprintf("weft cannot inject the proxy: %v", errs.ToAggregate()))
	}
	// What the pod's author would not see otherwise: an ignored default-policy
	// annotation, a choice the Mesh's floor narrowed, probes the proxy cannot exempt.
	warnings = append(warnings, inject.DefaultInboundPolicyWarnings(mesh.Spec.Proxy, ns.Name, ns.Annotations, before.Annotations)...)
	if _, skipped, _ := inject.ProbePaths(&before.Spec); len(skipped) > 0 {
		for _, s := range skipped {
			warnings = append(warnings, "weft: "+s+"; the inbound policy must authorize the kubelet for it")
		}
	}
	raw, err := mergeInjected(req.Object.Raw, &before, &tpl)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the injected pod: %w", err))
	}
	h.Log.V(1).Info("Injected the proxy", "namespace", nsName, "pod", podName(&pod))
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}

// foreignTrustRoots says why the pod's namespace holds a weft-trust-roots ConfigMap that
// the proxy must not trust, or "" when it holds none (weft-controller publishes it once
// an injected pod exists there) or only anchors of the bundle weft-controller publishes
// in the control-plane namespace. The proxy trusts whatever that ConfigMap says, so one
// created by a namespace user (for a pod opted in outside a meshed namespace, before
// weft-controller got there) would make it trust their CA. The rule is
// validation.TrustRootsCopy; this reads the two ConfigMaps it compares.
func (h *PodInjector) foreignTrustRoots(ctx context.Context, ns string) (string, error) {
	live := h.LiveReader
	if live == nil {
		live = h.Reader
	}
	name := inject.TrustRootsConfigMap
	var local corev1.ConfigMap
	switch err := live.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &local); {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading ConfigMap %s/%s: %w", ns, name, err)
	}
	cp := h.Env.ControlPlaneNamespace
	if cp == "" {
		cp = meshdefaults.ControlPlaneNamespace
	}
	advice := fmt.Sprintf("delete ConfigMap %s/%s; weft-controller publishes the real trust bundle in every namespace with injected pods", ns, name)
	var published corev1.ConfigMap
	switch err := live.Get(ctx, types.NamespacedName{Namespace: cp, Name: name}, &published); {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("ConfigMap %s/%s exists but weft-controller has published no trust bundle (%s/%s) yet, so it was not written by Weft; %s",
			ns, name, cp, name, advice), nil
	case err != nil:
		return "", fmt.Errorf("reading ConfigMap %s/%s: %w", cp, name, err)
	}
	problem, err := validation.TrustRootsCopy(local.Data, published.Data, cp+"/"+name)
	if err != nil || problem == "" {
		return "", err
	}
	return fmt.Sprintf("ConfigMap %s/%s %s; %s", ns, name, problem, advice), nil
}

// podName names a pod for logs; pods of controllers have only a generateName yet.
func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "<generated>"
}

// mergeInjected writes what injection changed into the pod as the API server sent it,
// leaving everything else as it was. Re-encoding the whole typed Pod instead would drop
// fields this binary's Kubernetes types do not know (an API server newer than
// weft-controller), and the patch would then remove them from the user's pod.
func mergeInjected(raw []byte, before, after *corev1.PodTemplateSpec) ([]byte, error) {
	var pod map[string]any
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	meta := child(pod, "metadata")
	setOrDelete(meta, "labels", after.Labels, len(after.Labels) > 0)
	setOrDelete(meta, "annotations", after.Annotations, len(after.Annotations) > 0)
	spec := child(pod, "spec")
	setOrDelete(spec, "serviceAccountName", after.Spec.ServiceAccountName, after.Spec.ServiceAccountName != "")
	inits, err := mergeList(spec["initContainers"], before.Spec.InitContainers, after.Spec.InitContainers,
		func(c corev1.Container) string { return c.Name })
	if err != nil {
		return nil, err
	}
	setOrDelete(spec, "initContainers", inits, len(inits) > 0)
	vols, err := mergeList(spec["volumes"], before.Spec.Volumes, after.Spec.Volumes,
		func(v corev1.Volume) string { return v.Name })
	if err != nil {
		return nil, err
	}
	setOrDelete(spec, "volumes", vols, len(vols) > 0)
	return json.Marshal(pod)
}

// mergeList builds the new list: an element unchanged by injection keeps its original
// JSON (with any fields unknown to this binary); a new or changed one is encoded.
func mergeList[T any](raw any, before, after []T, nameOf func(T) string) ([]any, error) {
	orig, _ := raw.([]any)
	byName := map[string]int{}
	if len(orig) == len(before) {
		for i, b := range before {
			byName[nameOf(b)] = i
		}
	}
	out := make([]any, 0, len(after))
	for _, a := range after {
		if i, ok := byName[nameOf(a)]; ok && apiequality.Semantic.DeepEqual(before[i], a) {
			out = append(out, orig[i])
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func child(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}

func setOrDelete[V any](m map[string]any, key string, v V, set bool) {
	if set {
		m[key] = v
	} else {
		delete(m, key)
	}
}
