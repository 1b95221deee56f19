package inject

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/defaultpolicy"
	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// The annotations and labels injection reads and writes.
const (
	// AnnotationInject is "enabled" or "disabled" on a namespace or a pod (also accepted
	// as a label, which is what the webhook's selectors can see). A pod's value wins over
	// its namespace's. The keys shared with the compiler and the destination service are
	// defined in internal/meshdefaults; these names keep injection's vocabulary.
	AnnotationInject = meshdefaults.AnnotationInject
	// InjectEnabled and InjectDisabled are the values of AnnotationInject.
	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"

	// AnnotationInjected records, as JSON, what injection added (see Status). Its
	// presence is what makes injection idempotent and uninjection exact.
	AnnotationInjected = meshdefaults.AnnotationInjected
	// AnnotationProxyVersion is the version (image tag) of the injected proxy.
	AnnotationProxyVersion = meshdefaults.AnnotationProxyVersion
	// LabelInjected marks injected pods so that they can be selected (proxy counts,
	// dashboards) without parsing annotations.
	LabelInjected = meshdefaults.LabelInjected

	// ConfigPrefix starts every per-workload proxy setting.
	ConfigPrefix = meshdefaults.ConfigPrefix
)

// The config.weft.dev/* annotations. docs/injection.md lists them with their meaning.
const (
	AnnotationImagePullPolicy      = ConfigPrefix + "image-pull-policy"
	AnnotationProxyCPURequest      = ConfigPrefix + "proxy-cpu-request"
	AnnotationProxyCPULimit        = ConfigPrefix + "proxy-cpu-limit"
	AnnotationProxyMemoryRequest   = ConfigPrefix + "proxy-memory-request"
	AnnotationProxyMemoryLimit     = ConfigPrefix + "proxy-memory-limit"
	AnnotationLogLevel             = ConfigPrefix + "log-level"
	AnnotationProxyUID             = ConfigPrefix + "proxy-uid"
	AnnotationOutboundPort         = ConfigPrefix + "outbound-port"
	AnnotationInboundPort          = meshdefaults.AnnotationInboundPort
	AnnotationAdminPort            = ConfigPrefix + "admin-port"
	AnnotationOpaquePorts          = ConfigPrefix + "opaque-ports"
	AnnotationSkipInboundPorts     = ConfigPrefix + "skip-inbound-ports"
	AnnotationSkipOutboundPorts    = ConfigPrefix + "skip-outbound-ports"
	AnnotationSkipSubnets          = ConfigPrefix + "skip-subnets"
	AnnotationDefaultInboundPolicy = meshdefaults.AnnotationDefaultInboundPolicy
	AnnotationConnectTimeout       = ConfigPrefix + "connect-timeout"
	AnnotationDetectTimeout        = ConfigPrefix + "detect-timeout"
	AnnotationMeshTLSMode          = ConfigPrefix + "mesh-tls-mode"
)

// Annotations that earlier versions accepted and that are now refused, each with what
// to do instead. They are refused rather than ignored so that nothing changes silently.
const (
	// AnnotationProxyImage and AnnotationInitImage let any pod author pick the images
	// of the injected containers, and weft-init runs as root with NET_ADMIN and
	// NET_RAW: a pod could run any image with those privileges. Images come from the
	// Mesh only.
	AnnotationProxyImage = ConfigPrefix + "proxy-image"
	AnnotationInitImage  = ConfigPrefix + "init-image"
	// AnnotationTapPort would move the tap server. The port is fixed: the control
	// plane's tap API dials <pod IP>:4190 on every proxy, and weft-init skips exactly
	// that port for it.
	AnnotationTapPort = ConfigPrefix + "tap-port"
)

// removedKnobs says, for each refused annotation, why and what to do instead.
var removedKnobs = map[string]string{
	AnnotationProxyImage: "pods may not choose the proxy image: it comes from the Mesh's spec.proxy.image, " +
		"which the cluster's mesh operator sets; remove the annotation",
	AnnotationInitImage: "pods may not choose the weft-init image (it runs as root with NET_ADMIN and NET_RAW): " +
		"it comes from the Mesh's spec.proxy.initImage, which the cluster's mesh operator sets; remove the annotation",
	AnnotationTapPort: "the tap port is fixed at 4190: the control plane's tap API dials every proxy there; remove the annotation",
}

// Config is the effective proxy configuration of one pod: the Mesh's spec.proxy, then
// the namespace's config.weft.dev/* annotations, then the pod's.
type Config struct {
	// ClusterNetworks and ProbePaths are the values of WEFT_CLUSTER_NETWORKS and
	// WEFT_INBOUND_PROBE_PATHS, from the Mesh and the pod's spec (no annotation sets
	// them).
	ClusterNetworks string
	ProbePaths      string

	ProxyImage           string
	InitImage            string
	ImagePullPolicy      corev1.PullPolicy
	Resources            corev1.ResourceRequirements
	LogLevel             string
	ProxyUID             int64
	OutboundPort         int32
	InboundPort          int32
	AdminPort            int32
	OpaquePorts          []iptables.PortRange
	SkipInboundPorts     []iptables.PortRange
	SkipOutboundPorts    []iptables.PortRange
	SkipSubnets          []netip.Prefix
	DefaultInboundPolicy string
	ConnectTimeout       time.Duration
	DetectTimeout        time.Duration
	MeshTLSMode          string
}

// configFromMesh is the starting point before any annotation applies.
func configFromMesh(p meshv1alpha1.ProxySpec) Config {
	p = WithDefaults(p)
	return Config{
		ProxyImage:           p.Image,
		InitImage:            p.InitImage,
		ImagePullPolicy:      p.ImagePullPolicy,
		Resources:            *p.Resources.DeepCopy(),
		LogLevel:             string(p.LogLevel),
		ProxyUID:             p.UID,
		OutboundPort:         int32(p.Ports.Outbound),
		InboundPort:          int32(p.Ports.Inbound),
		AdminPort:            int32(p.Ports.Admin),
		OpaquePorts:          portRanges(p.OpaquePorts),
		SkipInboundPorts:     portRanges(p.SkipInboundPorts),
		SkipOutboundPorts:    portRanges(p.SkipOutboundPorts),
		DefaultInboundPolicy: string(p.DefaultInboundPolicy),
		ConnectTimeout:       p.ConnectTimeout.Duration,
		DetectTimeout:        p.DetectTimeout.Duration,
		MeshTLSMode:          string(p.MeshTLSMode),
	}
}

func portRanges(ps []meshv1alpha1.Port) []iptables.PortRange {
	out := make([]iptables.PortRange, 0, len(ps))
	for _, p := range ps {
		out = append(out, iptables.PortRange{From: uint16(p), To: uint16(p)})
	}
	return out
}

// knob parses one annotation value into the config, or says why it cannot.
type knob struct {
	help  string
	apply func(c *Config, v string) error
}

// knobs is the documented list of config.weft.dev/* annotations. Each apply function
// validates as strictly as the Mesh CRD validates the same field, so an annotation can
// never produce a proxy the Mesh could not have.
var knobs = map[string]knob{
	AnnotationImagePullPolicy: {"Always, IfNotPresent or Never", func(c *Config, v string) error {
		switch p := corev1.PullPolicy(v); p {
		case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
			c.ImagePullPolicy = p
			return nil
		}
		return fmt.Errorf("must be Always, IfNotPresent or Never")
	}},
	AnnotationProxyCPURequest:    {"quantity", resourceKnob(false, corev1.ResourceCPU)},
	AnnotationProxyCPULimit:      {"quantity", resourceKnob(true, corev1.ResourceCPU)},
	AnnotationProxyMemoryRequest: {"quantity", resourceKnob(false, corev1.ResourceMemory)},
	AnnotationProxyMemoryLimit:   {"quantity", resourceKnob(true, corev1.ResourceMemory)},
	AnnotationLogLevel: {"error, warn, info, debug or trace", func(c *Config, v string) error {
		switch v {
		case "error", "warn", "info", "debug", "trace":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("must be one of error, warn, info, debug, trace")
	}},
	AnnotationProxyUID: {"integer 1..2147483647", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 2147483647 {
			return fmt.Errorf("must be an integer between 1 and 2147483647")
		}
		c.ProxyUID = n
		return nil
	}},
	AnnotationOutboundPort: {"port", portKnob(func(c *Config) *int32 { return &c.OutboundPort })},
	AnnotationInboundPort:  {"port", portKnob(func(c *Config) *int32 { return &c.InboundPort })},
	AnnotationAdminPort:    {"port", portKnob(func(c *Config) *int32 { return &c.AdminPort })},
	AnnotationOpaquePorts:  {"ports and ranges", portListKnob(func(c *Config) *[]iptables.PortRange { return &c.OpaquePorts })},
	AnnotationSkipInboundPorts: {"ports and ranges", portListKnob(func(c *Config) *[]iptables.PortRange {
		return &c.SkipInboundPorts
	})},
	AnnotationSkipOutboundPorts: {"ports and ranges", portListKnob(func(c *Config) *[]iptables.PortRange {
		return &c.SkipOutboundPorts
	})},
	AnnotationSkipSubnets: {"CIDRs", func(c *Config, v string) error {
		p, err := iptables.ParseSubnets(v)
		if err != nil {
			return err
		}
		c.SkipSubnets = p
		return nil
	}},
	AnnotationDefaultInboundPolicy: {"inbound policy", func(c *Config, v string) error {
		// The same names the Mesh's spec.proxy.defaultInboundPolicy takes; Inject
		// decides the value with the Mesh's floor (DefaultInboundPolicy).
		if _, ok := defaultpolicy.Parse(meshv1alpha1.InboundPolicy(v)); ok {
			c.DefaultInboundPolicy = v
			return nil
		}
		return fmt.Errorf("must be one of %s", strings.Join(inboundPolicyNames, ", "))
	}},
	AnnotationConnectTimeout: {"duration 10ms..1m", durationKnob(func(c *Config) *time.Duration { return &c.ConnectTimeout })},
	AnnotationDetectTimeout:  {"duration 10ms..1m", durationKnob(func(c *Config) *time.Duration { return &c.DetectTimeout })},
	AnnotationMeshTLSMode: {"Opportunistic or Strict", func(c *Config, v string) error {
		switch meshv1alpha1.MeshTLSMode(v) {
		case meshv1alpha1.MeshTLSOpportunistic, meshv1alpha1.MeshTLSStrict:
			c.MeshTLSMode = v
			return nil
		}
		return fmt.Errorf("must be Opportunistic or Strict")
	}},
}

// KnownAnnotations lists the config.weft.dev/* annotations, sorted.
func KnownAnnotations() []string {
	out := make([]string, 0, len(knobs))
	for k := range knobs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func resourceKnob(limit bool, name corev1.ResourceName) func(*Config, string) error {
	return func(c *Config, v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("must be a quantity such as 100m or 64Mi: %w", err)
		}
		if q.Sign() < 0 {
			return fmt.Errorf("must not be negative")
		}
		list := &c.Resources.Requests
		if limit {
			list = &c.Resources.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
}

func portKnob(f func(*Config) *int32) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("must be a port number between 1 and 65535")
		}
		*f(c) = int32(n)
		return nil
	}
}

func portListKnob(f func(*Config) *[]iptables.PortRange) func(*Config, string) error {
	return func(c *Config, v string) error {
		p, err := iptables.ParsePorts(v)
		if err != nil {
			return err
		}
		if p == nil {
			// An explicitly empty value clears the inherited list.
			p = []iptables.PortRange{}
		}
		*f(c) = p
		return nil
	}
}

func durationKnob(f func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("must be a duration such as 500ms or 2s")
		}
		if d < 10*time.Millisecond || d > time.Minute {
			return fmt.Errorf("must be between 10ms and 1m")
		}
		*f(c) = d
		return nil
	}
}

// applyAnnotations applies the config.weft.dev/* annotations in a deterministic order
// and returns one error per bad annotation, each naming it under path (the annotations
// map of the object they came from).
func applyAnnotations(c *Config, annotations map[string]string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, ConfigPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if why, removed := removedKnobs[k]; removed {
			errs = append(errs, field.Forbidden(path.Key(k), why))
			continue
		}
		kn, ok := knobs[k]
		if !ok {
			errs = append(errs, field.NotSupported(path.Key(k), k, KnownAnnotations()))
			continue
		}
		if err := kn.apply(c, annotations[k]); err != nil {
			errs = append(errs, field.Invalid(path.Key(k), annotations[k], err.Error()))
		}
	}
	return errs
}

// check reports combinations no single annotation can catch.
func (c *Config) check(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	ports := map[int32]string{}
	for _, p := range []struct {
		key  string
		port int32
	}{
		{AnnotationOutboundPort, c.OutboundPort},
		{AnnotationInboundPort, c.InboundPort},
		{AnnotationAdminPort, c.AdminPort},
	} {
		if other, dup := ports[p.port]; dup {
			errs = append(errs, field.Invalid(path.Key(p.key), strconv.Itoa(int(p.port)),
				fmt.Sprintf("the proxy's outbound, inbound and admin ports must differ, and %s is also %d", other, p.port)))
		}
		ports[p.port] = p.key
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(path.Key(ConfigPrefix+"proxy-"+string(r)+"-request"), req.String(),
				fmt.Sprintf("must not exceed the %s limit %s", r, lim.String())))
		}
	}
	return errs
}

// ResolveConfig computes a pod's proxy configuration: the Mesh's proxy spec, then the
// namespace's config.weft.dev/* annotations, then the pod's. Every malformed annotation
// is reported, named by its key under nsPath or podPath.
func ResolveConfig(proxy meshv1alpha1.ProxySpec, nsAnnotations, podAnnotations map[string]string, nsPath, podPath *field.Path) (Config, field.ErrorList) {
	c := configFromMesh(proxy)
	errs := applyAnnotations(&c, nsAnnotations, nsPath)
	errs = append(errs, applyAnnotations(&c, podAnnotations, podPath)...)
	if len(errs) == 0 {
		errs = append(errs, c.check(podPath)...)
	}
	return c, errs
}

// ValidateAnnotations checks the config.weft.dev/* and weft.dev/inject annotations of one
// object on their own, as the validating webhooks do for namespaces and pods.
func ValidateAnnotations(annotations map[string]string, path *field.Path) field.ErrorList {
	c := configFromMesh(meshv1alpha1.ProxySpec{})
	errs := applyAnnotations(&c, annotations, path)
	if v, ok := annotations[AnnotationInject]; ok && v != InjectEnabled && v != InjectDisabled {
		errs = append(errs, field.NotSupported(path.Key(AnnotationInject), v, []string{InjectEnabled, InjectDisabled}))
	}
	return errs
}

// rangesString renders port ranges the way weft-init's flags read them ("a-b").
func rangesString(rs []iptables.PortRange) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		if r.From == r.To {
			s[i] = strconv.Itoa(int(r.From))
		} else {
			s[i] = fmt.Sprintf("%d-%d", r.From, r.To)
		}
	}
	return strings.Join(s, ",")
}

func subnetsString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// withPorts adds single ports to a list of ranges unless a range already covers them.
func withPorts(rs []iptables.PortRange, ports ...int32) []iptables.PortRange {
	out := slices.Clone(rs)
	for _, p := range ports {
		covered := slices.ContainsFunc(out, func(r iptables.PortRange) bool {
			return uint16(p) >= r.From && uint16(p) <= r.To
		})
		if !covered {
			out = append(out, iptables.PortRange{From: uint16(p), To: uint16(p)})
		}
	}
	return out
}

// ValidateMetadata checks the weft metadata of a namespace or a pod template, under
// meta (the path of its metadata): the config.weft.dev/* and weft.dev/inject annotations
// parse the way the injector reads them (the parser is the injector's own, so the two
// cannot disagree), and a weft.dev/inject label, which the injector's namespaceSelector
// and objectSelector match on, has one of the two values the selectors know.
func ValidateMetadata(meta *field.Path, annotations, labels map[string]string) field.ErrorList {
	errs := ValidateAnnotations(annotations, meta.Child("annotations"))
	if v, ok := labels[AnnotationInject]; ok && v != InjectEnabled && v != InjectDisabled {
		errs = append(errs, field.NotSupported(meta.Child("labels").Key(AnnotationInject), v,
			[]string{InjectEnabled, InjectDisabled}))
	}
	return errs
}
