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

// HTTPLocalRateLimitPolicy limits the rate of HTTP and gRPC requests the inbound proxy
// of each pod a Server selects admits on the Server's port: in total, per client
// identity, and per named client (overrides). The limits are local: each pod's proxy
// counts its own requests, so a Deployment of N replicas admits up to N times the
// rate. A request over a limit is answered 429 Too Many Requests with Retry-After
// (gRPC: RESOURCE_EXHAUSTED) without reaching the application. A Server takes at most
// one policy; a younger one on the same Server is Conflicted and ignored.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ratelimit,categories=weft;policy
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Total RPS",type=integer,JSONPath=`.spec.total.requestsPerSecond`
// +kubebuilder:printcolumn:name="Identity RPS",type=integer,JSONPath=`.spec.identity.requestsPerSecond`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type HTTPLocalRateLimitPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the Server and the limits.
	// +required
	Spec RateLimitPolicySpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// RateLimitPolicySpec names the Server and the limits (Linkerd's schema).
//
// +kubebuilder:validation:XValidation:rule="!has(self.total) || !has(self.identity) || self.identity.requestsPerSecond <= self.total.requestsPerSecond",message="identity.requestsPerSecond must not exceed total.requestsPerSecond"
// +kubebuilder:validation:XValidation:rule="!has(self.total) || !has(self.overrides) || self.overrides.all(o, o.requestsPerSecond <= self.total.requestsPerSecond)",message="overrides[].requestsPerSecond must not exceed total.requestsPerSecond"
type RateLimitPolicySpec struct {
	// targetRef is the Server whose port the limits apply to, in the policy's
	// namespace (group policy.weft.dev, kind Server).
	// +required
	TargetRef RateLimitTargetReference `json:"targetRef"`

	// total limits every request to the Server's port together, whoever sends it.
	// Omitted: no overall limit.
	// +optional
	Total *Limit `json:"total,omitempty"`

	// identity limits each client identity on its own: every verified mesh identity
	// has a budget of this rate, and all clients without a mesh identity share one.
	// Omitted: no per-identity limit (overrides still apply).
	// +optional
	Identity *Limit `json:"identity,omitempty"`

	// overrides give named clients a rate of their own instead of identity's. When a
	// client matches several, the first applies.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Overrides []Override `json:"overrides,omitempty"`
}

// RateLimitTargetReference names the Server a rate limit applies to.
//
// +kubebuilder:validation:XValidation:rule="self.group in ['policy.weft.dev', 'policy.linkerd.io'] && self.kind == 'Server'",message="targetRef must be a Server (group policy.weft.dev, kind Server)"
type RateLimitTargetReference struct {
	// group of the referent: policy.weft.dev (Linkerd's policy.linkerd.io is read as
	// it).
	// +required
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group"`
	// kind of the referent: Server.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// name of the Server, in the policy's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Limit is a rate of requests.
type Limit struct {
	// requestsPerSecond is the sustained rate admitted; a burst of up to one second's
	// worth is admitted after a quiet second. At least 1: to refuse every request, use
	// an AuthorizationPolicy instead.
	// +required
	// +kubebuilder:validation:XValidation:rule="self >= 1",message="requestsPerSecond must be at least 1"
	// +kubebuilder:validation:XValidation:rule="self <= 1000000",message="requestsPerSecond must be at most 1000000"
	RequestsPerSecond int32 `json:"requestsPerSecond"`
}

// Override is a rate for named clients.
type Override struct {
	// requestsPerSecond is the rate each matching client identity gets, instead of
	// identity's.
	// +required
	// +kubebuilder:validation:XValidation:rule="self >= 1",message="overrides[].requestsPerSecond must be at least 1"
	// +kubebuilder:validation:XValidation:rule="self <= 1000000",message="overrides[].requestsPerSecond must be at most 1000000"
	RequestsPerSecond int32 `json:"requestsPerSecond"`
	// clientRefs names the clients.
	// +required
	ClientRefs ClientRefs `json:"clientRefs"`
}

// ClientRefs names clients.
type ClientRefs struct {
	// targetRefs are ServiceAccounts (core group): the mesh clients running as them.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	TargetRefs []ClientReference `json:"targetRefs"`
}

// ClientReference names a ServiceAccount whose mesh identity an override applies to.
//
// +kubebuilder:validation:XValidation:rule="(!has(self.group) || size(self.group) == 0) && self.kind == 'ServiceAccount'",message="clientRefs.targetRefs[] must be a ServiceAccount (core group, group omitted)"
type ClientReference struct {
	// group of the referent: empty (the core group).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Group string `json:"group,omitempty"`
	// kind of the referent: ServiceAccount.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// name of the ServiceAccount.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// namespace of the ServiceAccount; omitted: the policy's own.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// +kubebuilder:object:root=true

// HTTPLocalRateLimitPolicyList is a list of HTTPLocalRateLimitPolicies.
type HTTPLocalRateLimitPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HTTPLocalRateLimitPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&HTTPLocalRateLimitPolicy{}, &HTTPLocalRateLimitPolicyList{})
}
