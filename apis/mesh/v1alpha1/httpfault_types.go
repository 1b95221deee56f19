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

// HTTPFault injects faults into the requests of a route, in the client's proxy: a share
// of them answered with an error status without reaching the backend (abort), and a
// share delayed before they are sent (delay). A route uses it through a Gateway API
// filter of type ExtensionRef (group mesh.weft.dev, kind HTTPFault, name) on an
// HTTPRoute or GRPCRoute rule in the same namespace, or through the Weft-only fault
// field of a ServiceProfile route. Meant for chaos testing: deleting it (or the
// filter) ends the faults at once.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=fault,categories=weft
// +kubebuilder:printcolumn:name="Abort %",type=integer,JSONPath=`.spec.abort.percentage`
// +kubebuilder:printcolumn:name="Abort Status",type=integer,JSONPath=`.spec.abort.httpStatus`
// +kubebuilder:printcolumn:name="Delay %",type=integer,JSONPath=`.spec.delay.percentage`
// +kubebuilder:printcolumn:name="Delay",type=string,JSONPath=`.spec.delay.fixedDelay`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type HTTPFault struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the faults.
	// +required
	Spec HTTPFaultSpec `json:"spec"`
}

// HTTPFaultSpec is the faults: abort, delay or both. A request may be both delayed and
// aborted (the delay first); the two shares are drawn independently.
//
// +kubebuilder:validation:XValidation:rule="has(self.abort) || has(self.delay)",message="set abort, delay or both"
type HTTPFaultSpec struct {
	// abort answers a share of the requests with an error instead of sending them.
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
	// delay holds a share of the requests for a fixed time before sending them.
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
}

// FaultAbort answers a share of the requests with an HTTP status or a gRPC status.
//
// +kubebuilder:validation:XValidation:rule="has(self.httpStatus) != has(self.grpcStatus)",message="abort sets exactly one of httpStatus and grpcStatus"
type FaultAbort struct {
	// httpStatus is the status of the answer, 400 to 599. A gRPC request aborted
	// with it gets the gRPC status gRPC maps it to (503: UNAVAILABLE).
	// +kubebuilder:validation:XValidation:rule="self >= 400 && self <= 599",message="abort.httpStatus must be from 400 to 599"
	// +optional
	HTTPStatus *int32 `json:"httpStatus,omitempty"`
	// grpcStatus is the gRPC status code of the answer, 1 (CANCELLED) to 16
	// (UNAUTHENTICATED), in a trailers-only response. An HTTP request (not gRPC)
	// aborted with it gets 500.
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 16",message="abort.grpcStatus must be from 1 to 16"
	// +optional
	GRPCStatus *int32 `json:"grpcStatus,omitempty"`
	// percentage of the requests aborted, 0 to 100.
	// +required
	// +kubebuilder:validation:XValidation:rule="self >= 0 && self <= 100",message="abort.percentage must be from 0 to 100"
	Percentage int32 `json:"percentage"`
}

// FaultDelay holds a share of the requests before sending them.
type FaultDelay struct {
	// fixedDelay is how long, a Go duration from 1ms to 1h (e.g. 500ms, 2s). The
	// delay comes before the route's request timeout starts (as in Envoy's fault
	// filter), so it does not count against it.
	// +required
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]+(\\\\.[0-9]*)?|\\\\.[0-9]+)(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="delay.fixedDelay must be a duration from 1ms to 1h, e.g. 500ms"
	FixedDelay string `json:"fixedDelay"`
	// percentage of the requests delayed, 0 to 100.
	// +required
	// +kubebuilder:validation:XValidation:rule="self >= 0 && self <= 100",message="delay.percentage must be from 0 to 100"
	Percentage int32 `json:"percentage"`
}

// +kubebuilder:object:root=true

// HTTPFaultList is a list of HTTPFaults.
type HTTPFaultList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HTTPFault `json:"items"`
}

func init() {
	SchemeBuilder.Register(&HTTPFault{}, &HTTPFaultList{})
}
