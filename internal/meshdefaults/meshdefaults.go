// Package meshdefaults defines, once, the names and defaults that the control plane,
// the injector, the CLI and the proxy's configuration must agree on: the control-plane
// namespace, the cluster and trust domains, the annotation and label keys that mark a
// meshed workload, and the proxy's fixed ports.
//
// Why a package of its own: the compiler and the destination store read the same
// annotations the injector writes, and used to import the injection webhook's package
// to learn their names, which tied the pure compiler to admission code. Literal copies
// of "weft-system" and "cluster.local" sat in 13 places. This package imports only the
// standard library, so any package of either plane can use it.
package meshdefaults

import "iter"

// Control-plane placement and naming defaults.
const (
	// TrustRootsConfigMap is the ConfigMap the Mesh reconciler publishes the trust
	// bundle in (in the control-plane namespace and every meshed one), under
	// TrustRootsKey.
	TrustRootsConfigMap = "weft-trust-roots"
	TrustRootsKey       = "ca-bundle.pem"

	// ControlPlaneNamespace is where weft-controller runs unless told otherwise.
	ControlPlaneNamespace = "weft-system"
	// ClusterDomain is Kubernetes' default DNS suffix for Service names.
	ClusterDomain = "cluster.local"
	// TrustDomain is the SPIFFE trust domain of an empty Mesh (the Mesh CRD's default
	// marker in apis/mesh/v1alpha1 says the same; TestDefaultsMatchCRD in
	// internal/inject checks them against a real API server).
	TrustDomain = "cluster.local"
	// TokenAudience is the audience of the proxies' projected ServiceAccount tokens,
	// the one the identity service accepts in its TokenReview.
	TokenAudience = "identity.weft.dev"
)

// The annotations and labels that mark a meshed workload. The injector writes them;
// the compiler and the destination service read them.
const (
	// AnnotationInject is "enabled" or "disabled" on a namespace or a pod (also accepted
	// as a label, which is what the webhook's selectors can see). A pod's value wins over
	// its namespace's.
	AnnotationInject = "weft.dev/inject"
	// AnnotationInjected records, as JSON, what injection added. Its presence is what
	// makes injection idempotent and uninjection exact, and what marks a pod as meshed.
	AnnotationInjected = "weft.dev/injected"
	// AnnotationProxyVersion is the version (image tag) of the injected proxy.
	AnnotationProxyVersion = "weft.dev/proxy-version"
	// LabelInjected marks injected pods so that they can be selected (proxy counts,
	// dashboards) without parsing annotations.
	LabelInjected = "weft.dev/injected"
	// ConfigPrefix starts every per-workload proxy setting (config.weft.dev/<knob>).
	ConfigPrefix = "config.weft.dev/"
	// AnnotationInboundPort moves a pod's proxy inbound port; peers' proxies must dial
	// it, so the compiler reads it too.
	AnnotationInboundPort = ConfigPrefix + "inbound-port"
	// AnnotationDefaultInboundPolicy chooses the default inbound policy of a namespace
	// or a pod; the injector gives it to the proxy and the inbound policy compiler reads
	// it, so both live here.
	AnnotationDefaultInboundPolicy = ConfigPrefix + "default-inbound-policy"
)

// The control-plane Services in ControlPlaneNamespace that proxies call; the injector
// writes their addresses into every proxy, the services mint certificates for them.
const (
	IdentityServiceName    = "weft-identity"
	DestinationServiceName = "weft-destination"
	// IdentityPort and DestinationPort are those Services' ports.
	IdentityPort    = 8080
	DestinationPort = 8086
)

// ProxyContainerName is the proxy sidecar's container name.
const ProxyContainerName = "weft-proxy"

// ValidatorContainerName is the init container the injector adds in CNI redirect mode.
// Its arguments are weft-init's rule flags plus --validate; the weft-cni plugin finds
// the container by this name and installs the rules those flags describe.
const ValidatorContainerName = "weft-validate"

// ValidateFlag is the weft-init flag that turns it into the validator.
const ValidateFlag = "validate"

// The proxy's ports and user (DESIGN.md, "Fixed decisions").
const (
	OutboundPort = 4140
	InboundPort  = 4143
	AdminPort    = 4191
	TapPort      = 4190
	ProxyUID     = 2102
)

// The defaults of a Mesh's spec.tracing (the Mesh CRD's default markers say the same;
// TestMeshTracingDefaults in apis checks those against a real API server).
const (
	// TracingServiceName is the spans' service.name when the Mesh names none.
	TracingServiceName = "weft-proxy"
	// TracingSamplingRate is the share of new traces proxies start when the Mesh sets
	// none: 1%, enough to see every path of a busy service without the cost of
	// tracing every request.
	TracingSamplingRate = "0.01"
)

// TapServiceAccount names the control plane's tap identity,
// spiffe://<trust domain>/ns/<control plane namespace>/sa/weft-tap: the only client a
// proxy's tap server answers. No ServiceAccount of that name runs anything; the tap API
// in weft-controller signs its own client certificate for it with the identity issuer
// it already holds, so a pod cannot obtain it by running as some ServiceAccount.
const TapServiceAccount = "weft-tap"

// TapIdentity is the tap identity's SPIFFE ID for a trust domain and control-plane
// namespace.
func TapIdentity(trustDomain, controlPlaneNamespace string) string {
	return "spiffe://" + trustDomain + "/ns/" + controlPlaneNamespace + "/sa/" + TapServiceAccount
}

// ClusterNetworks are the cluster's networks when a Mesh sets none: the private ranges,
// as Linkerd's (the Mesh CRD's default marker says the same). A new slice each call.
func ClusterNetworks() []string {
	return []string{"10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"}
}

// OpaquePorts are the ports treated as opaque TCP when a Mesh sets none: server-speaks-
// first protocols (SMTP, MySQL, PostgreSQL, Redis, memcached, ...) on which protocol
// detection would only wait for its timeout. A new slice each call: callers may keep it.
func OpaquePorts() []int32 {
	return []int32{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}
}

// Injected says whether a pod carries the proxy: by AnnotationInjected or, for a pod
// whose annotations were edited away, by a container named ProxyContainerName among
// containers (init containers included, since the proxy is a native sidecar).
func Injected(annotations map[string]string, containers iter.Seq[string]) bool {
	if _, ok := annotations[AnnotationInjected]; ok {
		return true
	}
	for name := range containers {
		if name == ProxyContainerName {
			return true
		}
	}
	return false
}
