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

package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrafficSplit shifts the traffic that clients send to a root Service onto backend
// Services in proportion to their weights: canaries, blue-green, A/B. The schema is SMI's
// split.smi-spec.io/v1alpha2; status is Weft's addition.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ts,categories=weft
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service`
// +kubebuilder:printcolumn:name="Backends",type=string,JSONPath=`.status.backends`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficSplit struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the root service and its weighted backends.
	// +required
	Spec TrafficSplitSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status TrafficSplitStatus `json:"status,omitempty"`
}

// TrafficSplitSpec names the root service and its weighted backends.
//
// +kubebuilder:validation:XValidation:rule="self.backends.all(b, self.backends.exists_one(c, c.service == b.service))",message="backends[].service must be unique"
// +kubebuilder:validation:XValidation:rule="self.backends.exists(b, b.weight > 0)",message="at least one backend must have a weight above 0, or the split would send traffic nowhere"
type TrafficSplitSpec struct {
	// service is the name of the root Service, in the TrafficSplit's namespace, that
	// clients address. It may also be one of the backends.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Service string `json:"service"`

	// backends are the Services that receive the traffic, each with its weight.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Backends []TrafficSplitBackend `json:"backends"`

	// matches restrict the split to requests matching SMI route groups (kind
	// HTTPRouteGroup or TCPRoute of specs.smi-spec.io). Weft does not serve those kinds:
	// a split with matches is not accepted; use a Gateway API HTTPRoute for matched
	// splits. Default: none (the split applies to all traffic).
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Matches []TrafficSplitMatch `json:"matches,omitempty"`
}

// TrafficSplitBackend is one backend Service and its weight.
type TrafficSplitBackend struct {
	// service is the name of the backend Service in the TrafficSplit's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Service string `json:"service"`

	// weight of this backend relative to the others, 0 to 1000000. 0 sends it nothing.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Weight int32 `json:"weight"`
}

// TrafficSplitMatch references an SMI route group that restricts a split.
type TrafficSplitMatch struct {
	// kind of the route group: HTTPRouteGroup or TCPRoute.
	// +required
	// +kubebuilder:validation:Enum=HTTPRouteGroup;TCPRoute
	Kind string `json:"kind"`
	// name of the route group.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// apiGroup of the route group. Default: specs.smi-spec.io.
	// +kubebuilder:default="specs.smi-spec.io"
	// +kubebuilder:validation:MaxLength=253
	// +optional
	APIGroup string `json:"apiGroup,omitempty"`
}

// TrafficSplitStatus is what the control plane observed.
type TrafficSplitStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted, ResolvedRefs, Ready.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// backends summarises the split as service:percent, e.g. "web-v1:90%,web-v2:10%".
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Backends string `json:"backends,omitempty"`
}

// TrafficSplitList is a list of TrafficSplit.
// +kubebuilder:object:root=true
type TrafficSplitList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficSplit `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TrafficSplit{}, &TrafficSplitList{})
}
