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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Server is a port of a set of pods, with the protocol it speaks: what
// AuthorizationPolicies authorize clients to reach. A meshed pod's port that no Server
// selects follows the default inbound policy (Mesh, namespace or pod); a port a Server
// selects admits only the clients an AuthorizationPolicy authorizes, and the rest per
// the Server's accessPolicy.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=srv,categories=weft;policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Port",type=string,JSONPath=`.spec.port`
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.proxyProtocol`
// +kubebuilder:printcolumn:name="Access Policy",type=string,JSONPath=`.spec.accessPolicy`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Server struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec selects the pods and the port.
	// +required
	Spec ServerSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// ServerSpec selects the pods and the port.
type ServerSpec struct {
	// podSelector selects pods in the Server's namespace. matchLabels and
	// matchExpressions are ANDed; an empty selector selects every pod.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(self.matchLabels) || size(self.matchLabels) <= 64",message="podSelector.matchLabels may have at most 64 entries"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || size(self.matchExpressions) <= 32",message="podSelector.matchExpressions may have at most 32 entries"
	PodSelector metav1.LabelSelector `json:"podSelector"`

	// port is a port number, or the name of a container port of the selected pods
	// (pods without a port of that name are not selected).
	// +required
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (size(self) <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]'))",message="port must be a number from 1 to 65535 or a container port name (at most 15 lower-case letters, digits and '-', at least one letter)"
	Port intstr.IntOrString `json:"port"`

	// proxyProtocol is how the inbound proxy reads connections to the port: unknown
	// detects HTTP/1, HTTP/2 and mesh TLS (the default); HTTP/1, HTTP/2 and gRPC skip
	// detection; opaque forwards bytes without reading them (server-speaks-first
	// protocols such as MySQL); TLS forwards the app's own TLS as opaque.
	// +kubebuilder:default=unknown
	// +optional
	ProxyProtocol ProxyProtocol `json:"proxyProtocol,omitempty"`

	// accessPolicy admits the clients that no AuthorizationPolicy of the Server
	// authorizes: deny (the default: nobody else), audit (everyone, each would-be
	// denial logged and counted), or one of the default inbound policies
	// (all-unauthenticated, all-authenticated, cluster-unauthenticated,
	// cluster-authenticated).
	// +kubebuilder:default=deny
	// +optional
	AccessPolicy AccessPolicy `json:"accessPolicy,omitempty"`
}

// ProxyProtocol is how the inbound proxy reads a port's connections.
// +kubebuilder:validation:Enum=unknown;HTTP/1;HTTP/2;gRPC;opaque;TLS
type ProxyProtocol string

// The protocols of a Server port.
const (
	ProxyProtocolUnknown ProxyProtocol = "unknown"
	ProxyProtocolHTTP1   ProxyProtocol = "HTTP/1"
	ProxyProtocolHTTP2   ProxyProtocol = "HTTP/2"
	ProxyProtocolGRPC    ProxyProtocol = "gRPC"
	ProxyProtocolOpaque  ProxyProtocol = "opaque"
	ProxyProtocolTLS     ProxyProtocol = "TLS"
)

// AccessPolicy says which clients a port admits by default.
// +kubebuilder:validation:Enum=deny;audit;all-unauthenticated;all-authenticated;cluster-unauthenticated;cluster-authenticated
type AccessPolicy string

// The access policies. "cluster" means clients from the cluster's pod and Service
// networks (the Mesh's clusterNetworks); "authenticated" means mesh clients with a
// verified identity of the Mesh's trust domain.
const (
	AccessDeny                   AccessPolicy = "deny"
	AccessAudit                  AccessPolicy = "audit"
	AccessAllUnauthenticated     AccessPolicy = "all-unauthenticated"
	AccessAllAuthenticated       AccessPolicy = "all-authenticated"
	AccessClusterUnauthenticated AccessPolicy = "cluster-unauthenticated"
	AccessClusterAuthenticated   AccessPolicy = "cluster-authenticated"
)

// +kubebuilder:object:root=true

// ServerList is a list of Servers.
type ServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Server `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Server{}, &ServerList{})
}
