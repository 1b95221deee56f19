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

// AuthorizationPolicy authorizes the clients that satisfy every one of its required
// authentications to reach its target: a Server, the requests of an HTTPRoute or
// GRPCRoute attached to a Server, or every Server of its Namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=authzpolicy,categories=weft;policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Target Kind",type=string,JSONPath=`.spec.targetRef.kind`
// +kubebuilder:printcolumn:name="Target Name",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the target and the authentications a client needs.
	// +required
	Spec AuthorizationPolicySpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// AuthorizationPolicySpec names the target and the authentications a client needs.
type AuthorizationPolicySpec struct {
	// targetRef is what clients are authorized to reach, in the policy's namespace: a
	// Server (group policy.weft.dev), an HTTPRoute or GRPCRoute whose parentRef is a
	// Server (group gateway.networking.k8s.io; only the requests the route matches),
	// or the Namespace itself (core group, the policy's own namespace: every Server
	// in it).
	// +required
	TargetRef TargetReference `json:"targetRef"`

	// requiredAuthenticationRefs are the authentications a client must satisfy, all
	// of them: MeshTLSAuthentication and NetworkAuthentication (group
	// policy.weft.dev), or a ServiceAccount (core group: mesh clients running as it).
	// An empty list authorizes every client, authenticated or not.
	// +required
	// +kubebuilder:validation:MaxItems=16
	RequiredAuthenticationRefs []AuthenticationReference `json:"requiredAuthenticationRefs"`
}

// TargetReference names an object in the referrer's namespace.
//
// +kubebuilder:validation:XValidation:rule="((!has(self.group) || size(self.group) == 0) && self.kind == 'Namespace') || ((has(self.group) && self.group in ['policy.weft.dev', 'policy.linkerd.io']) && self.kind == 'Server') || ((has(self.group) && self.group == 'gateway.networking.k8s.io') && self.kind in ['HTTPRoute', 'GRPCRoute'])",message="targetRef must be a Server (group policy.weft.dev), an HTTPRoute or GRPCRoute (group gateway.networking.k8s.io) or a Namespace (core group, group omitted)"
type TargetReference struct {
	// group of the referent; empty or omitted for the core API group.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Group string `json:"group,omitempty"`
	// kind of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Kind string `json:"kind"`
	// name of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// AuthenticationReference names an authentication: a MeshTLSAuthentication or
// NetworkAuthentication, or a ServiceAccount.
//
// +kubebuilder:validation:XValidation:rule="((has(self.group) && self.group in ['policy.weft.dev', 'policy.linkerd.io']) && self.kind in ['MeshTLSAuthentication', 'NetworkAuthentication']) || ((!has(self.group) || size(self.group) == 0) && self.kind == 'ServiceAccount')",message="an authentication must be a MeshTLSAuthentication or NetworkAuthentication (group policy.weft.dev) or a ServiceAccount (core group, group omitted)"
type AuthenticationReference struct {
	// group of the referent; empty or omitted for the core API group.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Group string `json:"group,omitempty"`
	// kind of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Kind string `json:"kind"`
	// name of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// namespace of the referent; omitted: the policy's own.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// +kubebuilder:object:root=true

// AuthorizationPolicyList is a list of AuthorizationPolicies.
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AuthorizationPolicy{}, &AuthorizationPolicyList{})
}
