package inject

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// DefaultMeshSpec returns the spec the API server gives an empty Mesh: every value here
// is also a +kubebuilder:default marker in apis/mesh/v1alpha1, and
// TestDefaultsMatchCRD creates an empty Mesh in a real API server to prove the two agree.
// The CLI needs them because it runs without a cluster; the webhook needs them when no
// Mesh exists yet.
func DefaultMeshSpec() meshv1alpha1.MeshSpec {
	return meshv1alpha1.MeshSpec{
		TrustDomain: meshdefaults.TrustDomain,
		Identity: meshv1alpha1.IdentitySpec{
			TrustAnchor: meshv1alpha1.CertificateLifetime{
				Duration:    metav1.Duration{Duration: 8760 * time.Hour},
				RenewBefore: metav1.Duration{Duration: 1440 * time.Hour},
			},
			Issuer: meshv1alpha1.CertificateLifetime{
				Duration:    metav1.Duration{Duration: 720 * time.Hour},
				RenewBefore: metav1.Duration{Duration: 480 * time.Hour},
			},
			Workload: meshv1alpha1.WorkloadCertificate{
				Duration:       metav1.Duration{Duration: 24 * time.Hour},
				RenewAtPercent: 70,
			},
		},
		Proxy:           DefaultProxySpec(),
		ClusterNetworks: meshdefaults.ClusterNetworks(),
	}
}

// DefaultProxySpec returns the proxy defaults of an empty Mesh.
func DefaultProxySpec() meshv1alpha1.ProxySpec {
	return meshv1alpha1.ProxySpec{
		Image:           "weft-proxy:dev",
		InitImage:       "weft-init:dev",
		RedirectMode:    meshv1alpha1.RedirectInitContainer,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("20Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("250Mi"),
			},
		},
		LogLevel: "info",
		UID:      meshdefaults.ProxyUID,
		Ports: meshv1alpha1.ProxyPorts{
			Outbound: meshdefaults.OutboundPort,
			Inbound:  meshdefaults.InboundPort,
			Admin:    meshdefaults.AdminPort,
		},
		OpaquePorts:          opaquePorts(),
		DefaultInboundPolicy: meshv1alpha1.InboundAllUnauthenticated,
		MeshTLSMode:          meshv1alpha1.MeshTLSOpportunistic,
		ConnectTimeout:       metav1.Duration{Duration: time.Second},
		DetectTimeout:        metav1.Duration{Duration: 10 * time.Second},
	}
}

// WithDefaults fills the zero fields of a proxy spec with the defaults. A Mesh read from
// the API server is already complete; this guards Mesh objects written by hand for the
// CLI's --mesh flag, where nothing applied the CRD defaults. Lists are left alone when
// set, including set to empty, because "no opaque ports" is a legitimate choice; only a
// nil list takes the default.
func WithDefaults(p meshv1alpha1.ProxySpec) meshv1alpha1.ProxySpec {
	d := DefaultProxySpec()
	if p.Image == "" {
		p.Image = d.Image
	}
	if p.InitImage == "" {
		p.InitImage = d.InitImage
	}
	if p.RedirectMode == "" {
		p.RedirectMode = d.RedirectMode
	}
	if p.ImagePullPolicy == "" {
		p.ImagePullPolicy = d.ImagePullPolicy
	}
	if p.Resources.Requests == nil && p.Resources.Limits == nil {
		p.Resources = d.Resources
	}
	if p.LogLevel == "" {
		p.LogLevel = d.LogLevel
	}
	if p.UID == 0 {
		p.UID = d.UID
	}
	if p.Ports.Outbound == 0 {
		p.Ports.Outbound = d.Ports.Outbound
	}
	if p.Ports.Inbound == 0 {
		p.Ports.Inbound = d.Ports.Inbound
	}
	if p.Ports.Admin == 0 {
		p.Ports.Admin = d.Ports.Admin
	}
	if p.OpaquePorts == nil {
		p.OpaquePorts = d.OpaquePorts
	}
	if p.DefaultInboundPolicy == "" {
		p.DefaultInboundPolicy = d.DefaultInboundPolicy
	}
	if p.MeshTLSMode == "" {
		p.MeshTLSMode = d.MeshTLSMode
	}
	if p.ConnectTimeout.Duration == 0 {
		p.ConnectTimeout = d.ConnectTimeout
	}
	if p.DetectTimeout.Duration == 0 {
		p.DetectTimeout = d.DetectTimeout
	}
	if p.MeshTLSMode == "" {
		p.MeshTLSMode = d.MeshTLSMode
	}
	return p
}

// WithMeshDefaults is WithDefaults for the parts of a MeshSpec that injection reads.
func WithMeshDefaults(m meshv1alpha1.MeshSpec) meshv1alpha1.MeshSpec {
	if m.TrustDomain == "" {
		m.TrustDomain = DefaultMeshSpec().TrustDomain
	}
	m.Proxy = WithDefaults(m.Proxy)
	if m.ClusterNetworks == nil {
		m.ClusterNetworks = meshdefaults.ClusterNetworks()
	}
	return m
}

func opaquePorts() []meshv1alpha1.Port {
	var out []meshv1alpha1.Port
	for _, p := range meshdefaults.OpaquePorts() {
		out = append(out, meshv1alpha1.Port(p))
	}
	return out
}
