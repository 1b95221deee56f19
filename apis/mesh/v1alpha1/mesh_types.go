/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshName is the only name a Mesh may have: one mesh per cluster.
const MeshName = "default"

// Mesh configures the Weft service mesh of a cluster: its trust domain, how workload
// identities are issued, and the defaults of every injected proxy. The weft-controller
// Deployment is the control plane; a Mesh configures it, it does not install it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=weft
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="Anchor Expires",type=string,JSONPath=`.status.trustAnchor.notAfter`
// +kubebuilder:printcolumn:name="Issuer Expires",type=string,JSONPath=`.status.issuer.notAfter`
// +kubebuilder:printcolumn:name="Proxies",type=integer,JSONPath=`.status.proxies.ready`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="metadata.name: a cluster has exactly one Mesh and it must be named 'default'"
type Mesh struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired configuration of the mesh.
	// +kubebuilder:default={}
	// +optional
	Spec MeshSpec `json:"spec,omitzero"`

	// status is what the control plane observed.
	// +optional
	Status MeshStatus `json:"status,omitempty"`
}

// MeshSpec is the desired configuration of the mesh.
type MeshSpec struct {
	// trustDomain is the SPIFFE trust domain of every workload identity:
	// spiffe://<trustDomain>/ns/<namespace>/sa/<serviceaccount>. Default: cluster.local.
	// It cannot be changed once the Mesh exists: every running proxy asks for and
	// expects identities in the domain it was injected with, so a change would stop the
	// identity service renewing their certificates and split the mesh in two. To move to
	// another trust domain, delete the Mesh, create it with the new domain and restart
	// every meshed workload (docs/identity.md, "Changing the trust domain").
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="trustDomain cannot be changed: running proxies hold identities in the old domain; delete the Mesh, create it with the new trustDomain and restart the meshed workloads"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// identity configures the certificate chain that backs workload identities.
	// +kubebuilder:default={}
	// +optional
	Identity IdentitySpec `json:"identity,omitzero"`

	// proxy holds the defaults of every injected proxy; namespaces and pods override them
	// with config.weft.dev/* annotations.
	// +kubebuilder:default={}
	// +optional
	Proxy ProxySpec `json:"proxy,omitzero"`

	// clusterNetworks are the cluster's pod and node networks: the clients that the
	// cluster-authenticated and cluster-unauthenticated policies admit, and the
	// destinations a proxy treats as possibly meshed when the control plane has not told
	// it (it then tries mTLS first). Default: the private ranges, as Linkerd's
	// (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16, fd00::/8).
	// +kubebuilder:default={"10.0.0.0/8","100.64.0.0/10","172.16.0.0/12","192.168.0.0/16","fd00::/8"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="each clusterNetworks entry must be a CIDR such as 10.0.0.0/8 or fd00::/8"
	// +listType=set
	// +optional
	ClusterNetworks []string `json:"clusterNetworks,omitempty"`

	// tracing turns on distributed tracing: every proxy reports a span per HTTP request
	// on each of its sides to an OpenTelemetry (OTLP/gRPC) collector. Applying it,
	// changing it or removing it reaches running proxies within seconds, without a
	// restart. Default: unset, and proxies do no tracing work. See docs/tracing.md.
	// +optional
	Tracing *TracingSpec `json:"tracing,omitempty"`
}

// TracingSpec says where proxies send their spans and how many traces they start.
type TracingSpec struct {
	// collector is the OTLP/gRPC receiver, host:port: a DNS name (usually a Service,
	// jaeger.tracing.svc.cluster.local:4317) or an IP address ([fd00::1]:4317 for IPv6).
	// Proxies dial it from their pods in plaintext, as OTLP does by default. Required.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\\\\[[0-9a-fA-F:.]+\\\\]):[0-9]{1,5}$') && int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535",message="collector must be host:port with a lower-case DNS name or an IP address and a port from 1 to 65535, such as jaeger.tracing.svc.cluster.local:4317"
	Collector string `json:"collector"`

	// samplingRate is the share of new traces a proxy starts, a decimal from "0" to "1"
	// with at most six decimal places: "0.01" starts one trace in a hundred requests,
	// "1" traces every request, "0" starts none. It applies to requests that carry no
	// sampling decision; a request that continues a trace (W3C traceparent or B3
	// headers) keeps the decision of whoever started it, so "0" still reports the
	// traces an application starts. Default: "0.01".
	// +kubebuilder:default="0.01"
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0(\\\\.[0-9]{1,6})?|1(\\\\.0{1,6})?)$')",message="samplingRate must be a decimal from 0 to 1 with at most six decimal places, such as 0.01 (1% of traces) or 1 (every trace)"
	// +optional
	SamplingRate string `json:"samplingRate,omitempty"`

	// serviceName is the spans' service.name resource attribute: the service a trace
	// viewer such as Jaeger lists the proxies' spans under. Each span also carries the
	// pod's k8s.namespace.name, k8s.pod.name and owner (k8s.deployment.name,
	// k8s.statefulset.name, ...), so one name serves the whole mesh. Default:
	// weft-proxy.
	// +kubebuilder:default="weft-proxy"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$`
	// +optional
	ServiceName string `json:"serviceName,omitempty"`

	// attributes are further resource attributes every proxy's spans carry, such as
	// deployment.environment. service.name and the k8s.* attributes are the control
	// plane's to set. Default: none.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Attributes []TracingAttribute `json:"attributes,omitempty"`
}

// TracingAttribute is one resource attribute of the proxies' spans.
//
// +kubebuilder:validation:XValidation:rule="self.name != 'service.name' && !self.name.startsWith('k8s.')",message="attributes cannot set service.name (use serviceName) or k8s.* (the control plane sets them for each pod)"
type TracingAttribute struct {
	// name of the attribute, in OpenTelemetry's dotted style (deployment.environment).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_.-]*$`
	Name string `json:"name"`

	// value of the attribute.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value"`
}

// IdentitySpec configures the chain trust anchor -> identity issuer -> workload leaf.
// cert-manager issues and renews the anchor and the issuer; the identity service signs
// the leaves.
//
// +kubebuilder:validation:XValidation:rule="!has(self.trustAnchor) || !has(self.issuer) || duration(self.trustAnchor.duration) > duration(self.issuer.duration)",message="trustAnchor.duration must be longer than issuer.duration"
// +kubebuilder:validation:XValidation:rule="!has(self.issuer) || !has(self.workload) || !has(self.workload.duration) || duration(self.issuer.duration) > duration(self.workload.duration)",message="issuer.duration must be longer than workload.duration, or leaves would outlive their issuer"
// +kubebuilder:validation:XValidation:rule="!has(self.issuer) || !has(self.workload) || !has(self.workload.duration) || duration(self.issuer.renewBefore) > duration(self.workload.duration)",message="issuer.renewBefore must be longer than workload.duration: the identity service stops signing when the issuer has less than one workload lifetime left, so a shorter renewBefore would stop it before every renewal"
type IdentitySpec struct {
	// trustAnchor is the root of trust. Default: duration 8760h (one year), renewBefore
	// 1440h (60 days). Ignored for issuance when externalIssuerRef is set, but still used
	// for expiry warnings.
	// +kubebuilder:default={duration: "8760h", renewBefore: "1440h"}
	// +optional
	TrustAnchor CertificateLifetime `json:"trustAnchor,omitzero"`

	// issuer is the intermediate CA that signs workload certificates. Default: duration
	// 720h (30 days), renewBefore 480h (20 days). The identity service refuses to sign
	// with an issuer that has less than one workload lifetime left, so renewBefore minus
	// the workload duration is how long cert-manager may be down before new workloads
	// get no certificate: 19 days with the defaults (the IssuerReady condition turns
	// False with reason RenewalOverdue an hour after the renewal was due). The anchor's
	// renewBefore (60 days) exceeds this duration, so a renewed issuer is never cut
	// short by its anchor.
	// +kubebuilder:default={duration: "720h", renewBefore: "480h"}
	// +optional
	Issuer CertificateLifetime `json:"issuer,omitzero"`

	// workload is the lifetime of each proxy's leaf certificate. Default: 24h, renewed
	// by the proxy at 70% of its life (renewAtPercent), spread by up to 5 points either
	// way so that a rollout does not renew in lockstep.
	// +kubebuilder:default={duration: "24h", renewAtPercent: 70}
	// +optional
	Workload WorkloadCertificate `json:"workload,omitzero"`

	// externalIssuerRef names an existing cert-manager Issuer (in the control-plane
	// namespace) or ClusterIssuer that signs the trust anchor instead of Weft's
	// self-signed bootstrap issuer: bring your own CA. Default: unset (self-signed).
	// +optional
	ExternalIssuerRef *IssuerReference `json:"externalIssuerRef,omitempty"`
}

// CertificateLifetime is the lifetime and renewal point of a CA certificate.
//
// +kubebuilder:validation:XValidation:rule="duration(self.renewBefore) < duration(self.duration)",message="renewBefore must be shorter than duration"
type CertificateLifetime struct {
	// duration is how long the certificate is valid. At least 1h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="duration must be at least 1h"
	Duration metav1.Duration `json:"duration"`

	// renewBefore is how long before expiry cert-manager renews the certificate. At
	// least 5m.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="renewBefore must be at least 5m"
	RenewBefore metav1.Duration `json:"renewBefore"`
}

// WorkloadCertificate is the lifetime of workload (leaf) certificates.
type WorkloadCertificate struct {
	// duration is how long a workload certificate is valid, between 10m and 720h.
	// Default: 24h.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m') && duration(self) <= duration('720h')",message="workload duration must be between 10m and 720h"
	// +optional
	Duration metav1.Duration `json:"duration,omitzero"`

	// renewAtPercent is the share of its life after which a proxy renews its
	// certificate, between 50 and 90. Default: 70. The injector passes it to each proxy
	// (--identity-renew-at-percent), so a change reaches proxies injected after it;
	// each proxy renews at a random point within 5 points of it (never past 90% of
	// the life), so that proxies started together do not all renew together.
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=50
	// +kubebuilder:validation:Maximum=90
	// +optional
	RenewAtPercent int32 `json:"renewAtPercent,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// name of the Issuer or ClusterIssuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// kind is Issuer (in the control-plane namespace) or ClusterIssuer. Default: Issuer.
	// +kubebuilder:default=Issuer
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	// +optional
	Kind string `json:"kind,omitempty"`

	// group of the issuer. Default: cert-manager.io; external issuers have their own.
	// +kubebuilder:default="cert-manager.io"
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Group string `json:"group,omitempty"`
}

// InboundPolicy says which clients an injected proxy admits on a port that no Server
// selects. The values are Linkerd's: "authenticated" admits only clients with a verified
// mesh identity, "cluster" only clients from the Mesh's clusterNetworks, "all" any
// address; audit admits everyone and counts and logs each request as a would-be denial;
// deny admits no one. Kubelet probes of the pod's declared HTTP probe paths are admitted
// under every policy.
// +kubebuilder:validation:Enum=all-unauthenticated;all-authenticated;cluster-unauthenticated;cluster-authenticated;deny;audit
type InboundPolicy string

// The default inbound policies.
const (
	InboundAllUnauthenticated     InboundPolicy = "all-unauthenticated"
	InboundAllAuthenticated       InboundPolicy = "all-authenticated"
	InboundClusterUnauthenticated InboundPolicy = "cluster-unauthenticated"
	InboundClusterAuthenticated   InboundPolicy = "cluster-authenticated"
	InboundDeny                   InboundPolicy = "deny"
	InboundAudit                  InboundPolicy = "audit"
)

// MeshTLSMode says whether a client proxy may send plaintext to a destination it cannot
// prove is unmeshed.
// +kubebuilder:validation:Enum=Opportunistic;Strict
type MeshTLSMode string

// The mesh TLS modes.
const (
	// MeshTLSOpportunistic: a destination the control plane says is meshed always gets
	// mTLS; one it knows nothing about (control plane unreachable, pod not seen yet)
	// inside clusterNetworks gets mTLS when its proxy answers on the inbound port, and
	// plaintext (counted) when nothing does.
	MeshTLSOpportunistic MeshTLSMode = "Opportunistic"
	// MeshTLSStrict: plaintext only to destinations the control plane says are not
	// meshed, and to addresses outside clusterNetworks; anything else that cannot be
	// reached over mTLS is refused.
	MeshTLSStrict MeshTLSMode = "Strict"
)

// RedirectMode says what writes a meshed pod's traffic redirection rules.
// +kubebuilder:validation:Enum=InitContainer;CNI
type RedirectMode string

// The redirect modes.
const (
	// RedirectInitContainer: the injector adds the weft-init init container, which runs
	// as root with NET_ADMIN and NET_RAW. Meshed namespaces must admit such pods (Pod
	// Security "privileged", or Weft's weft-baseline policy).
	RedirectInitContainer RedirectMode = "InitContainer"
	// RedirectCNI: the weft-cni plugin, installed on every node by the weft-cni
	// DaemonSet, writes the rules when the pod's sandbox is created. The injector adds
	// only an unprivileged validator init container that fails the pod if the rules are
	// missing, so meshed pods pass the Pod Security "baseline" and "restricted" levels.
	RedirectCNI RedirectMode = "CNI"
)

// LogLevel is the verbosity of a proxy's log.
// +kubebuilder:validation:Enum=error;warn;info;debug;trace
type LogLevel string

// Port is a TCP port number.
// +kubebuilder:validation:Minimum=1
// +kubebuilder:validation:Maximum=65535
type Port int32

// ProxySpec holds the defaults of every injected proxy.
//
// +kubebuilder:validation:XValidation:rule="!has(self.ports) || [self.ports.outbound, self.ports.inbound, self.ports.admin].all(p, [self.ports.outbound, self.ports.inbound, self.ports.admin].filter(q, q == p).size() == 1)",message="ports.outbound, ports.inbound and ports.admin must all differ"
type ProxySpec struct {
	// image of the weft-proxy sidecar. Default: weft-proxy:dev, the image `make images`
	// builds.
	// +kubebuilder:default="weft-proxy:dev"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// initImage of the weft-init container that sets up traffic redirection. Default:
	// weft-init:dev.
	// +kubebuilder:default="weft-init:dev"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	InitImage string `json:"initImage,omitempty"`

	// redirectMode says what sets up each meshed pod's traffic redirection:
	// InitContainer (default), the privileged weft-init container; or CNI, the weft-cni
	// plugin, which must be installed on every node first (config/cni, or the weft Helm
	// chart's cni.enabled). With CNI the initImage runs only as an unprivileged
	// validator. Changing it affects pods created afterwards. See docs/cni.md.
	// +kubebuilder:default=InitContainer
	// +optional
	RedirectMode RedirectMode `json:"redirectMode,omitempty"`

	// imagePullPolicy of both images. Default: IfNotPresent.
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// resources of the proxy container. Default: requests cpu 10m, memory 20Mi;
	// limits memory 250Mi.
	// +kubebuilder:default={requests: {cpu: "10m", memory: "20Mi"}, limits: {memory: "250Mi"}}
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`

	// logLevel of the proxy. Default: info.
	// +kubebuilder:default=info
	// +optional
	LogLevel LogLevel `json:"logLevel,omitempty"`

	// uid the proxy runs as; weft-init exempts its traffic from redirection.
	// Default: 2102.
	// +kubebuilder:default=2102
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	UID int64 `json:"uid,omitempty"`

	// ports the proxy listens on. Default: outbound 4140, inbound 4143, admin 4191.
	// (There is no tap port until the proxy has a tap server: a port weft-init leaves
	// unredirected with nothing of the proxy's behind it would let any app listening
	// there escape inbound policy.)
	// +kubebuilder:default={outbound: 4140, inbound: 4143, admin: 4191}
	// +optional
	Ports ProxyPorts `json:"ports,omitzero"`

	// opaquePorts are forwarded as TCP without protocol detection: use it for
	// server-speaks-first protocols. Default: 25, 587, 3306, 4444, 5432, 6379, 9300,
	// 11211 (SMTP, MySQL, Galera, PostgreSQL, Redis, Elasticsearch, Memcached).
	// +kubebuilder:default={25,587,3306,4444,5432,6379,9300,11211}
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	OpaquePorts []Port `json:"opaquePorts,omitempty"`

	// skipInboundPorts are inbound ports that bypass the proxy entirely. Default: none.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	SkipInboundPorts []Port `json:"skipInboundPorts,omitempty"`

	// skipOutboundPorts are outbound destination ports that bypass the proxy entirely.
	// Default: none.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	SkipOutboundPorts []Port `json:"skipOutboundPorts,omitempty"`

	// defaultInboundPolicy says which clients a proxy admits when no policy resource
	// applies. Default: all-unauthenticated (meshed and unmeshed clients alike, so
	// meshing a workload never breaks its existing callers).
	// +kubebuilder:default=all-unauthenticated
	// +optional
	DefaultInboundPolicy InboundPolicy `json:"defaultInboundPolicy,omitempty"`

	// inboundPolicyFloor is the least strict default inbound policy a namespace or pod
	// may choose with config.weft.dev/default-inbound-policy: a weaker choice is
	// narrowed to what both admit (e.g. floor cluster-unauthenticated and a pod's
	// all-authenticated give cluster-authenticated), and the pod gets a warning Event.
	// audit is not a floor. Default: none (all-unauthenticated).
	// +kubebuilder:validation:XValidation:rule="self != 'audit'",message="audit cannot be a floor: it admits every client"
	// +optional
	InboundPolicyFloor InboundPolicy `json:"inboundPolicyFloor,omitempty"`

	// meshTLSMode says whether client proxies may send plaintext to destinations they
	// cannot prove are unmeshed: Opportunistic (default) or Strict. Namespaces and pods
	// override it with config.weft.dev/mesh-tls-mode.
	// +kubebuilder:default=Opportunistic
	// +optional
	MeshTLSMode MeshTLSMode `json:"meshTLSMode,omitempty"`

	// connectTimeout bounds establishing a connection to an endpoint, between 10ms and
	// 1m. Default: 1s.
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1m')",message="connectTimeout must be between 10ms and 1m"
	// +optional
	ConnectTimeout metav1.Duration `json:"connectTimeout,omitzero"`

	// detectTimeout bounds protocol detection on a new connection; when it passes the
	// connection is forwarded as opaque TCP. Between 10ms and 1m. Default: 10s.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1m')",message="detectTimeout must be between 10ms and 1m"
	// +optional
	DetectTimeout metav1.Duration `json:"detectTimeout,omitzero"`
}

// ProxyPorts are the ports a proxy listens on.
type ProxyPorts struct {
	// outbound receives the pod's redirected outgoing connections. Default: 4140.
	// +kubebuilder:default=4140
	// +optional
	Outbound Port `json:"outbound,omitempty"`
	// inbound receives the pod's redirected incoming connections. Default: 4143.
	// +kubebuilder:default=4143
	// +optional
	Inbound Port `json:"inbound,omitempty"`
	// admin serves /metrics, /ready, /live and /shutdown. Default: 4191.
	// +kubebuilder:default=4191
	// +optional
	Admin Port `json:"admin,omitempty"`
}

// MeshStatus is what the control plane observed.
type MeshStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, and one per subsystem (Accepted, TrustAnchorReady, IssuerReady,
	// IdentityReady, and TracingReady while spec.tracing is set).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// trustAnchor describes the current trust anchor certificate.
	// +optional
	TrustAnchor *CertificateStatus `json:"trustAnchor,omitempty"`

	// issuer describes the current identity issuer certificate.
	// +optional
	Issuer *CertificateStatus `json:"issuer,omitempty"`

	// proxies counts the injected proxies in the cluster.
	// +optional
	Proxies ProxyCounts `json:"proxies,omitempty"`
}

// CertificateStatus describes an issued certificate.
type CertificateStatus struct {
	// notAfter is when the certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// renewalTime is when cert-manager will renew it.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
	// serialNumber of the certificate, hex encoded.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	SerialNumber string `json:"serialNumber,omitempty"`
}

// ProxyCounts counts injected proxies.
type ProxyCounts struct {
	// injected is the number of pods with a weft-proxy sidecar.
	// +optional
	Injected int32 `json:"injected"`
	// ready is the number of those pods whose proxy is ready.
	// +optional
	Ready int32 `json:"ready"`
}

// MeshList is a list of Mesh.
// +kubebuilder:object:root=true
type MeshList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Mesh `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Mesh{}, &MeshList{})
}
