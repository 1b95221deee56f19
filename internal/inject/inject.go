// Package inject turns a pod template into a meshed one. It is the only place that knows
// what a meshed pod looks like: the mutating webhook (webhooks/) and the CLI (weft inject)
// both call Inject, so a pod injected by either is the same pod.
//
// Everything here is pure: the inputs are the pod template, its namespace's labels and
// annotations, the Mesh's spec and a few facts about the control plane; nothing reads the
// cluster.
package inject

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/svcname"
)

// Version is the version of the injector, recorded in AnnotationInjected. Release builds
// set it with -ldflags "-X github.com/weftmesh/weft/internal/inject.Version=...".
var Version = "dev"

// Names of what injection adds to a pod.
const (
	InitContainerName = "weft-init"
	// ValidatorContainerName replaces InitContainerName in CNI redirect mode.
	ValidatorContainerName = meshdefaults.ValidatorContainerName
	ProxyContainerName     = meshdefaults.ProxyContainerName
	TokenVolumeName        = "weft-identity-token"
	TrustVolumeName        = "weft-trust-roots"

	// TrustRootsConfigMap and TrustRootsKey are published by the Mesh reconciler into
	// every meshed namespace.
	TrustRootsConfigMap = meshdefaults.TrustRootsConfigMap
	TrustRootsKey       = meshdefaults.TrustRootsKey

	// Where the proxy finds its identity inputs.
	TokenDir       = "/var/run/weft/identity"
	TokenPath      = TokenDir + "/token"
	TrustDir       = "/var/run/weft/trust"
	TrustRootsPath = TrustDir + "/" + TrustRootsKey

	// TokenAudience is the audience the identity service accepts in TokenReview.
	TokenAudience = meshdefaults.TokenAudience
	// TokenExpirationSeconds is the projected token's lifetime; the kubelet refreshes it
	// at 80% of that, and the proxy only needs it when it asks for a certificate.
	TokenExpirationSeconds = 3600

	// IdentityPort and DestinationPort are the control-plane service ports.
	IdentityPort    = meshdefaults.IdentityPort
	DestinationPort = meshdefaults.DestinationPort
)

// AdminPortName names the proxy container's admin port (probes, /metrics).
const AdminPortName = "weft-admin"

// Env is what injection knows about the control plane beyond the Mesh.
type Env struct {
	// ControlPlaneNamespace is where weft-controller runs; its pods are never injected.
	// Default: weft-system.
	ControlPlaneNamespace string
	// ClusterDomain is the cluster's DNS suffix for service names. Default: cluster.local.
	ClusterDomain string
}

func (e Env) withDefaults() Env {
	if e.ControlPlaneNamespace == "" {
		e.ControlPlaneNamespace = meshdefaults.ControlPlaneNamespace
	}
	if e.ClusterDomain == "" {
		e.ClusterDomain = meshdefaults.ClusterDomain
	}
	return e
}

// IdentityAddr is the identity service's address as proxies dial it.
func (e Env) IdentityAddr() string {
	e = e.withDefaults()
	return svcname.Service{Namespace: e.ControlPlaneNamespace, Name: meshdefaults.IdentityServiceName}.Authority(e.ClusterDomain, IdentityPort)
}

// DestinationAddr is the destination service's address as proxies dial it.
func (e Env) DestinationAddr() string {
	e = e.withDefaults()
	return svcname.Service{Namespace: e.ControlPlaneNamespace, Name: meshdefaults.DestinationServiceName}.Authority(e.ClusterDomain, DestinationPort)
}

// Namespace is what injection reads from the pod's namespace.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Status is the JSON value of AnnotationInjected: what was added, so that uninjection
// removes exactly that and an operator can see which injector and proxy a pod got.
type Status struct {
	InitContainers []string `json:"initContainers"`
	Volumes        []string `json:"volumes"`
	ProxyImage     string   `json:"proxyImage"`
	ProxyVersion   string   `json:"proxyVersion"`
	Injector       string   `json:"injector"`
	// Scrape says the injector added the prometheus.io/* annotations (addScrape), so
	// that Uninject removes them and nothing the application set.
	Scrape bool `json:"scrape,omitempty"`
}

// IsInjected says whether a pod already carries the proxy, by the annotation or, for
// pods whose annotations were edited away, by the container.
func IsInjected(tpl *corev1.PodTemplateSpec) bool {
	return meshdefaults.Injected(tpl.Annotations, ContainerNames(&tpl.Spec))
}

// ContainerNames yields the names of a pod's init containers and containers, the
// argument meshdefaults.Injected takes.
func ContainerNames(spec *corev1.PodSpec) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for i := range cs {
				if !yield(cs[i].Name) {
					return
				}
			}
		}
	}
}

// Decide says whether a pod should be injected and, when not, why. The pod's own
// weft.dev/inject (annotation, else label) wins over its namespace's.
func Decide(tpl *corev1.PodTemplateSpec, ns Namespace, env Env) (bool, string) {
	env = env.withDefaults()
	switch {
	case IsInjected(tpl):
		return false, "already injected"
	case tpl.Spec.HostNetwork:
		return false, "the pod uses the host network, which the proxy cannot intercept"
	case ns.Name != "" && ns.Name == env.ControlPlaneNamespace:
		return false, "the control-plane namespace is never injected"
	}
	switch injectValue(tpl.Annotations, tpl.Labels) {
	case InjectDisabled:
		return false, "the pod has weft.dev/inject: disabled"
	case InjectEnabled:
		return true, "the pod has weft.dev/inject: enabled"
	}
	if injectValue(ns.Annotations, ns.Labels) == InjectEnabled {
		return true, "the namespace has weft.dev/inject: enabled"
	}
	return false, "neither the pod nor its namespace has weft.dev/inject: enabled"
}

func injectValue(annotations, labels map[string]string) string {
	if v, ok := annotations[AnnotationInject]; ok {
		return v
	}
	return labels[AnnotationInject]
}

// Inject adds the proxy to tpl in place, with the Mesh's proxy defaults overridden by
// the namespace's and then the pod's config.weft.dev/* annotations. It does not decide
// whether to inject (see Decide), but it is idempotent: an injected template is left as
// is. Errors name the offending annotation or field; on error tpl is unchanged.
func Inject(tpl *corev1.PodTemplateSpec, ns Namespace, mesh meshv1alpha1.MeshSpec, env Env) field.ErrorList {
	if IsInjected(tpl) {
		return nil
	}
	env = env.withDefaults()
	mesh = WithMeshDefaults(mesh)
	nsPath := field.NewPath("namespace", "metadata", "annotations")
	if ns.Name != "" {
		nsPath = field.NewPath("namespace "+ns.Name, "metadata", "annotations")
	}
	cfg, errs := ResolveConfig(mesh.Proxy, withoutDefaultInboundPolicy(ns.Annotations), withoutDefaultInboundPolicy(tpl.Annotations),
		nsPath, field.NewPath("metadata", "annotations"))
	errs = append(errs, checkConflicts(&tpl.Spec, &cfg)...)
	cfg.DefaultInboundPolicy = string(DefaultInboundPolicy(mesh.Proxy, ns.Annotations, tpl.Annotations).Policy.Name())
	cfg.ClusterNetworks = clusterNetworks(mesh)
	probes, _, err := ProbePaths(&tpl.Spec)
	if err != nil {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "containers"), err.Error()))
	}
	cfg.ProbePaths = probes
	if len(errs) > 0 {
		return errs
	}

	// A projected ServiceAccount token needs an explicit ServiceAccount. The API
	// server's ServiceAccount admission sets it before webhooks run; the CLI and
	// clusters without that plugin need it set here, to the same value.
	if tpl.Spec.ServiceAccountName == "" {
		tpl.Spec.ServiceAccountName = tpl.Spec.DeprecatedServiceAccount
		if tpl.Spec.ServiceAccountName == "" {
			tpl.Spec.ServiceAccountName = "default"
		}
	}

	proxy := proxyContainer(&cfg, mesh.TrustDomain, renewAtPercent(mesh), env)
	// In CNI mode the node's weft-cni plugin has written the rules before any container
	// starts; the validator only proves it did, with no privilege at all.
	first := initContainer(&cfg)
	if mesh.Proxy.RedirectMode == meshv1alpha1.RedirectCNI {
		first = validatorContainer(&cfg)
	}
	tpl.Spec.InitContainers = append([]corev1.Container{first, proxy}, tpl.Spec.InitContainers...)
	tpl.Spec.Volumes = append(tpl.Spec.Volumes, volumes()...)

	status := Status{
		InitContainers: []string{first.Name, ProxyContainerName},
		Volumes:        []string{TokenVolumeName, TrustVolumeName},
		ProxyImage:     cfg.ProxyImage,
		ProxyVersion:   ImageVersion(cfg.ProxyImage),
		Injector:       Version,
	}
	if tpl.Annotations == nil {
		tpl.Annotations = map[string]string{}
	}
	status.Scrape = addScrape(tpl.Annotations, cfg.AdminPort)
	raw, err := json.Marshal(status)
	if err != nil {
		// Status holds only strings; this cannot fail, but an unrecorded injection
		// would break idempotency, so do not hide it.
		return field.ErrorList{field.InternalError(field.NewPath("metadata", "annotations").Key(AnnotationInjected), err)}
	}
	tpl.Annotations[AnnotationInjected] = string(raw)
	tpl.Annotations[AnnotationProxyVersion] = status.ProxyVersion
	if tpl.Labels == nil {
		tpl.Labels = map[string]string{}
	}
	tpl.Labels[LabelInjected] = "true"
	return nil
}

// Uninject removes what Inject added and reports whether there was anything to remove.
func Uninject(tpl *corev1.PodTemplateSpec) bool {
	if !IsInjected(tpl) {
		return false
	}
	status := Status{
		InitContainers: []string{InitContainerName, ProxyContainerName},
		Volumes:        []string{TokenVolumeName, TrustVolumeName},
	}
	if raw, ok := tpl.Annotations[AnnotationInjected]; ok {
		// A status we cannot read (edited by hand) falls back to the standard names.
		var s Status
		if json.Unmarshal([]byte(raw), &s) == nil && len(s.InitContainers) > 0 {
			status = s
		}
	}
	if status.Scrape {
		for _, k := range scrapeAnnotations {
			delete(tpl.Annotations, k)
		}
	}
	tpl.Spec.InitContainers = slices.DeleteFunc(tpl.Spec.InitContainers, func(c corev1.Container) bool {
		return slices.Contains(status.InitContainers, c.Name)
	})
	tpl.Spec.Volumes = slices.DeleteFunc(tpl.Spec.Volumes, func(v corev1.Volume) bool {
		return slices.Contains(status.Volumes, v.Name)
	})
	if len(tpl.Spec.InitContainers) == 0 {
		tpl.Spec.InitContainers = nil
	}
	if len(tpl.Spec.Volumes) == 0 {
		tpl.Spec.Volumes = nil
	}
	delete(tpl.Annotations, AnnotationInjected)
	delete(tpl.Annotations, AnnotationProxyVersion)
	delete(tpl.Labels, LabelInjected)
	if len(tpl.Annotations) == 0 {
		tpl.Annotations = nil
	}
	if len(tpl.Labels) == 0 {
		tpl.Labels = nil
	}
	return true
}

// The annotations by which Prometheus' kubernetes_sd configurations (the community's
// "prometheus.io/scrape" convention, and config/prometheus/scrape-config.yaml) find
// the proxy's metrics.
const (
	AnnotationPrometheusScrape = "prometheus.io/scrape"
	AnnotationPrometheusPort   = "prometheus.io/port"
	AnnotationPrometheusPath   = "prometheus.io/path"
)

var scrapeAnnotations = [...]string{AnnotationPrometheusScrape, AnnotationPrometheusPort, AnnotationPrometheusPath}

// addScrape points Prometheus' annotation-based discovery at the proxy's admin port,
// unless the pod carries any prometheus.io/* annotation of its own: those describe
// the application's metrics, which the pod's owner chose, and one pod has one such
// set. Such a pod's proxy is scraped through its weft-admin port instead
// (config/prometheus PodMonitor). It reports whether it added them.
func addScrape(ann map[string]string, adminPort int32) bool {
	for _, k := range scrapeAnnotations {
		if _, ok := ann[k]; ok {
			return false
		}
	}
	ann[AnnotationPrometheusScrape] = "true"
	ann[AnnotationPrometheusPort] = strconv.Itoa(int(adminPort))
	ann[AnnotationPrometheusPath] = "/metrics"
	return true
}

// ImageVersion is the tag (or digest) of an image reference, "latest" when it has none.
func ImageVersion(image string) string {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		return digest
	}
	// A colon after the last slash separates the tag; one before it is a registry port.
	name := image[strings.LastIndex(image, "/")+1:]
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return "latest"
}

// checkConflicts finds what would make the injected pod invalid or broken: names the
// injector needs, and application ports the proxy would shadow.
func checkConflicts(spec *corev1.PodSpec, cfg *Config) field.ErrorList {
	var errs field.ErrorList
	reserved := []string{InitContainerName, ValidatorContainerName, ProxyContainerName}
	for i, c := range spec.InitContainers {
		if slices.Contains(reserved, c.Name) {
			errs = append(errs, field.Duplicate(field.NewPath("spec", "initContainers").Index(i).Child("name"), c.Name))
		}
	}
	proxyPorts := map[int32]string{cfg.OutboundPort: "outbound", cfg.InboundPort: "inbound", cfg.AdminPort: "admin", meshdefaults.TapPort: "tap"}
	for i, c := range spec.Containers {
		p := field.NewPath("spec", "containers").Index(i)
		if slices.Contains(reserved, c.Name) {
			errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
		}
		for j, port := range c.Ports {
			if use, clash := proxyPorts[port.ContainerPort]; clash && (port.Protocol == "" || port.Protocol == corev1.ProtocolTCP) {
				msg := fmt.Sprintf("the proxy's %s port; move the app or set config.weft.dev/%s-port", use, use)
				if use == "tap" {
					msg = "the proxy's tap port, fixed at 4190 (the control plane dials every proxy there); move the app to another port"
				}
				errs = append(errs, field.Invalid(p.Child("ports").Index(j).Child("containerPort"), port.ContainerPort, msg))
			}
		}
	}
	for i, v := range spec.Volumes {
		if v.Name == TokenVolumeName || v.Name == TrustVolumeName {
			errs = append(errs, field.Duplicate(field.NewPath("spec", "volumes").Index(i).Child("name"), v.Name))
		}
	}
	return append(errs, checkProxyUID(spec, cfg.ProxyUID)...)
}

// checkProxyUID refuses containers that would run as the proxy's UID. weft-init exempts
// that UID's outbound traffic from redirection (iptables -m owner --uid-owner), so such a
// container would bypass the proxy: no mTLS, no policy, no metrics, silently. Only what
// the pod spec declares can be seen here: a container that runs as the proxy's UID
// because its image says USER 2102 is not caught, which docs/injection.md says.
func checkProxyUID(spec *corev1.PodSpec, uid int64) field.ErrorList {
	var errs field.ErrorList
	podUID := (*int64)(nil)
	if spec.SecurityContext != nil {
		podUID = spec.SecurityContext.RunAsUser
	}
	msg := fmt.Sprintf("runs as UID %d, the proxy's UID, whose traffic bypasses the proxy; run the container as another UID, "+
		"or move the proxy with config.weft.dev/proxy-uid", uid)
	var inheritors []string
	check := func(p *field.Path, cs []corev1.Container) {
		for i, c := range cs {
			switch {
			case c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil:
				if *c.SecurityContext.RunAsUser == uid {
					errs = append(errs, field.Forbidden(p.Index(i).Child("securityContext", "runAsUser"), "the container "+msg))
				}
			case podUID != nil && *podUID == uid:
				inheritors = append(inheritors, c.Name)
			}
		}
	}
	check(field.NewPath("spec", "initContainers"), spec.InitContainers)
	check(field.NewPath("spec", "containers"), spec.Containers)
	if len(inheritors) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "securityContext", "runAsUser"),
			fmt.Sprintf("container(s) %s inherit it: each %s", strings.Join(inheritors, ", "), msg)))
	}
	return errs
}

// ruleArgs are weft-init's rule flags for this pod (iptables.RegisterFlags): the
// contract that weft-init and, in CNI mode, the weft-cni plugin both read.
func ruleArgs(cfg *Config) []string {
	args := []string{
		"--proxy-uid=" + strconv.FormatInt(cfg.ProxyUID, 10),
		"--inbound-port=" + strconv.Itoa(int(cfg.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(cfg.OutboundPort)),
		// The admin port must stay reachable from the kubelet (probes) and Prometheus,
		// and the tap port from the control plane's tap API (which authenticates to
		// the tap server itself, with mTLS), without passing through the proxy's
		// inbound listener. Nothing else is skipped by default: a skipped port that
		// the proxy does not listen on is a side door for any app listening there,
		// past inbound policy (the proxy holds both ports from before the app starts).
		"--skip-inbound-ports=" + rangesString(withPorts(cfg.SkipInboundPorts, cfg.AdminPort, meshdefaults.TapPort)),
	}
	if len(cfg.SkipOutboundPorts) > 0 {
		args = append(args, "--skip-outbound-ports="+rangesString(cfg.SkipOutboundPorts))
	}
	if len(cfg.SkipSubnets) > 0 {
		args = append(args, "--skip-subnets="+subnetsString(cfg.SkipSubnets))
	}
	return args
}

func initContainer(cfg *Config) corev1.Container {
	args := ruleArgs(cfg)
	return corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.InitImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("10Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// iptables needs root with NET_ADMIN and NET_RAW, and nothing else: not
		// privileged, no other capability, no privilege escalation. runAsNonRoot is set
		// to false explicitly so that a pod-level runAsNonRoot does not block it.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// validatorUID is the UID the validator runs as: any non-root UID but the proxy's,
// whose traffic the rules exempt from redirection on purpose (the validator's probe
// would not be redirected and it would always fail).
func validatorUID(proxyUID int64) int64 {
	if proxyUID >= 2147483647 {
		return proxyUID - 1
	}
	return proxyUID + 1
}

// validatorContainer is CNI mode's first init container: weft-init --validate, which
// changes nothing and checks that the weft-cni plugin wrote the rules (docs/cni.md).
// Its arguments are also what the plugin reads to write them. It needs no privilege:
// non-root, no capability, read-only root, so the pod passes Pod Security "restricted"
// as far as Weft's containers go.
func validatorContainer(cfg *Config) corev1.Container {
	uid := validatorUID(cfg.ProxyUID)
	return corev1.Container{
		Name:            ValidatorContainerName,
		Image:           cfg.InitImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            append(ruleArgs(cfg), "--"+meshdefaults.ValidateFlag),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("10Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
		},
		// The validator writes its verdict (what failed, what to do) to
		// /dev/termination-log, which the pod's status shows.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(uid),
			RunAsGroup:               ptr.To(uid),
			RunAsNonRoot:             ptr.To(true),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// renewAtPercent is the Mesh's spec.identity.workload.renewAtPercent, or its default for
// a Mesh written by hand without it.
func renewAtPercent(m meshv1alpha1.MeshSpec) int32 {
	if p := m.Identity.Workload.RenewAtPercent; p != 0 {
		return p
	}
	return DefaultMeshSpec().Identity.Workload.RenewAtPercent
}

func proxyContainer(cfg *Config, trustDomain string, renewAt int32, env Env) corev1.Container {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	admin := intstr.FromInt32(cfg.AdminPort)
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		// A native sidecar: started before the app containers, which wait for its
		// postStart hook, and stopped after them, so Jobs complete when the app exits.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Args: []string{
			"--identity-mode=mesh",
			"--identity-roots=" + TrustRootsPath,
			"--inbound-port=" + strconv.Itoa(int(cfg.InboundPort)),
			"--outbound-port=" + strconv.Itoa(int(cfg.OutboundPort)),
			"--admin-port=" + strconv.Itoa(int(cfg.AdminPort)),
			"--log-level=" + proxyLogLevel(cfg.LogLevel),
			"--connect-timeout=" + cfg.ConnectTimeout.String(),
			"--identity-renew-at-percent=" + strconv.Itoa(int(renewAt)),
		},
		Env: []corev1.EnvVar{
			// The pod's identity inputs, from the downward API.
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			fieldEnv("POD_IPS", "status.podIPs"),
			fieldEnv("NODE_NAME", "spec.nodeName"),
			fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			{Name: "WEFT_TRUST_DOMAIN", Value: trustDomain},
			// $(VAR) is expanded by the kubelet from the variables above.
			{Name: "WEFT_IDENTITY_LOCAL_NAME", Value: "spiffe://" + trustDomain + "/ns/$(POD_NAMESPACE)/sa/$(SERVICE_ACCOUNT)"},
			{Name: "WEFT_IDENTITY_TOKEN_FILE", Value: TokenPath},
			{Name: "WEFT_IDENTITY_ADDR", Value: env.IdentityAddr()},
			{Name: "WEFT_DESTINATION_ADDR", Value: env.DestinationAddr()},
			{Name: "WEFT_CONTROL_PLANE_NAMESPACE", Value: env.ControlPlaneNamespace},
			{Name: "WEFT_OPAQUE_PORTS", Value: rangesString(cfg.OpaquePorts)},
			{Name: "WEFT_DEFAULT_INBOUND_POLICY", Value: cfg.DefaultInboundPolicy},
			{Name: "WEFT_CLUSTER_NETWORKS", Value: cfg.ClusterNetworks},
			{Name: "WEFT_INBOUND_PROBE_PATHS", Value: cfg.ProbePaths},
			{Name: "WEFT_DETECT_TIMEOUT", Value: cfg.DetectTimeout.String()},
			{Name: "WEFT_MESH_TLS_MODE", Value: cfg.MeshTLSMode},
			// The only client of the tap server (4190): the control plane's tap API,
			// whose certificate it signs itself for this identity.
			{Name: "WEFT_TAP_IDENTITY", Value: meshdefaults.TapIdentity(trustDomain, env.ControlPlaneNamespace)},
		},
		Ports: []corev1.ContainerPort{
			{Name: "weft-inbound", ContainerPort: cfg.InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: AdminPortName, ContainerPort: cfg.AdminPort, Protocol: corev1.ProtocolTCP},
			{Name: "weft-tap", ContainerPort: meshdefaults.TapPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: *cfg.Resources.DeepCopy(),
		// The postStart hook holds the app containers back until the proxy holds a
		// certificate: the kubelet starts the next container only once a native
		// sidecar's postStart hook has returned. It replaces a startup probe, which the
		// kubelet runs on a ticker of at least 1 s, and only after its status shows
		// the container running: measured on the local cluster, that cost every pod
		// one to two probe periods although the proxy is ready ~30 ms after it
		// starts (TestPodStart, docs/injection.md "Start-up order"). A proxy not ready
		// within AwaitTimeout fails the hook; the kubelet then kills and restarts it.
		Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: AwaitCommand(cfg.AdminPort)}}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: admin}},
			PeriodSeconds:    10,
			TimeoutSeconds:   1,
			FailureThreshold: 3,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: admin}},
			PeriodSeconds:    10,
			TimeoutSeconds:   1,
			FailureThreshold: 3,
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true},
			{Name: TrustVolumeName, MountPath: TrustDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(cfg.ProxyUID),
			RunAsGroup:               ptr.To(cfg.ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// ProxyBinary is where the proxy image (hack/images.sh) holds weft-proxy: the postStart
// hook runs it a second time, as `weft-proxy await`.
const ProxyBinary = "/weft-proxy"

// AwaitTimeout is how long the proxy may take to become ready (in practice: to obtain
// its first certificate) before the kubelet restarts it; as long as the startup probe
// it replaces allowed (120 checks a second apart).
const AwaitTimeout = 2 * time.Minute

// AwaitCommand is the proxy's postStart hook: it returns once the proxy's admin server
// answers /ready (proxy/cli/await.go).
func AwaitCommand(adminPort int32) []string {
	return []string{ProxyBinary, "await", "--admin-port=" + strconv.Itoa(int(adminPort)), "--timeout=" + AwaitTimeout.String()}
}

func volumes() []corev1.Volume {
	return []corev1.Volume{
		{
			Name: TokenVolumeName,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience:          TokenAudience,
					ExpirationSeconds: ptr.To[int64](TokenExpirationSeconds),
					Path:              "token",
				}}},
			}},
		},
		{
			Name: TrustVolumeName,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: TrustRootsConfigMap},
			}},
		},
	}
}

// proxyLogLevel maps the Mesh's log levels onto weft-proxy's --log-level, which takes
// error, warn, info, debug or a verbosity number: trace is verbosity 2, one step more
// verbose than debug.
func proxyLogLevel(l string) string {
	if l == "trace" {
		return "2"
	}
	return l
}

// ProxyAdminPort finds a pod's injected proxy (a native sidecar, or a regular container
// in older injections) and its admin port: the port named weft-admin, else the default.
func ProxyAdminPort(p *corev1.Pod) (injected bool, port int32) {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if c.Name != ProxyContainerName {
				continue
			}
			for _, port := range c.Ports {
				if port.Name == AdminPortName {
					return true, port.ContainerPort
				}
			}
			return true, meshdefaults.AdminPort
		}
	}
	return false, 0
}
