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
)

// MeshTLSAuthentication is a set of mesh identities: clients that proved one of them
// with their certificate satisfy it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=meshtlsauthn,categories=weft;policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Identities",type=string,JSONPath=`.spec.identities`
// +kubebuilder:printcolumn:name="Identity Refs",type=string,JSONPath=`.spec.identityRefs[*].name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshTLSAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec lists the identities.
	// +required
	Spec MeshTLSAuthenticationSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// MeshTLSAuthenticationSpec lists the identities, by name or by reference (one of the
// two).
//
// +kubebuilder:validation:XValidation:rule="has(self.identities) != has(self.identityRefs)",message="set exactly one of identities or identityRefs"
type MeshTLSAuthenticationSpec struct {
	// identities are the clients' identities: SPIFFE IDs
	// (spiffe://<trust domain>/ns/<namespace>/sa/<service account>), where a final /*
	// matches every ID under that prefix; "*" for every authenticated client; or
	// Linkerd's DNS-like identity names (<sa>.<ns>.serviceaccount.identity.<...>),
	// read as that ServiceAccount's identity, with a leading "*." matching every
	// name under the rest.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Identities []Identity `json:"identities,omitempty"`

	// identityRefs are ServiceAccounts (name omitted: every ServiceAccount of the
	// namespace) and Namespaces (every workload of the namespace), by reference.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +optional
	IdentityRefs []IdentityReference `json:"identityRefs,omitempty"`
}

// Identity is a client identity or a pattern of them (see
// MeshTLSAuthenticationSpec.identities).
// +kubebuilder:validation:MaxLength=512
// +kubebuilder:validation:Pattern=`^(\*|spiffe://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9._~-]+)*(/\*)?|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$`
type Identity string

// IdentityReference names a ServiceAccount or a Namespace.
//
// +kubebuilder:validation:XValidation:rule="(!has(self.group) || size(self.group) == 0) && self.kind in ['ServiceAccount', 'Namespace']",message="an identity reference must be a ServiceAccount or a Namespace (core group, group omitted)"
// +kubebuilder:validation:XValidation:rule="self.kind != 'Namespace' || !has(self.namespace)",message="a Namespace reference names the namespace in name, not namespace"
type IdentityReference struct {
	// group of the referent; empty or omitted for the core API group.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Group string `json:"group,omitempty"`
	// kind of the referent: ServiceAccount or Namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// name of the referent; omitted: every object of the kind in the namespace (for
	// Namespace: every namespace, that is every mesh identity).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`
	// namespace of a ServiceAccount; omitted: the authentication's own.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// +kubebuilder:object:root=true

// MeshTLSAuthenticationList is a list of MeshTLSAuthentications.
type MeshTLSAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshTLSAuthentication `json:"items"`
}

// NetworkAuthentication is a set of client networks: clients connecting from one of
// them satisfy it, authenticated or not.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=netauthn,categories=weft;policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Networks",type=string,JSONPath=`.spec.networks[*].cidr`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NetworkAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec lists the networks.
	// +required
	Spec NetworkAuthenticationSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// NetworkAuthenticationSpec lists the networks.
type NetworkAuthenticationSpec struct {
	// networks are the client networks.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Networks []Network `json:"networks"`
}

// Network is an IP network, less the parts of it listed in except.
//
// +kubebuilder:validation:XValidation:rule="!has(self.except) || (isCIDR(self.cidr) && self.except.all(e, (isCIDR(e) && cidr(self.cidr).containsCIDR(e)) || (isIP(e) && cidr(self.cidr).containsIP(e))))",message="every except entry must lie inside cidr"
type Network struct {
	// cidr is the network, such as 10.0.0.0/8 or fd00::/8, or a single address.
	// +required
	Cidr NetworkAddress `json:"cidr"`
	// except lists networks or addresses inside cidr that are not part of it.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Except []NetworkAddress `json:"except,omitempty"`
}

// NetworkAddress is an IP network in CIDR notation, or a single IP address.
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || isIP(self)",message="must be an IP network such as 10.0.0.0/8 or fd00::/8, or a single IP address"
type NetworkAddress string

// NetworkAuthenticationList is a list of NetworkAuthentications.
//
// +kubebuilder:object:root=true
type NetworkAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkAuthentication `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshTLSAuthentication{}, &MeshTLSAuthenticationList{},
		&NetworkAuthentication{}, &NetworkAuthenticationList{})
}
