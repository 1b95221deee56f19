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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ServiceProfile describes how clients talk to one service: its routes, which responses
// count as failures, which routes may be retried and within what budget, timeouts, and
// traffic overrides. Its fields and their meaning are those of Linkerd's
// linkerd.io/v1alpha2 ServiceProfile, so a migrating user changes only apiVersion.
//
// The name is the fully qualified name clients use, e.g. web.shop.svc.cluster.local. A
// profile in the service's own namespace applies to all clients; a profile in a client's
// namespace applies to that namespace's clients only.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=sp,categories=weft
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Routes",type=integer,JSONPath=`.status.routes`
// +kubebuilder:printcolumn:name="Retryable",type=integer,JSONPath=`.status.retryableRoutes`
// +kubebuilder:printcolumn:name="Retry Ratio",type=number,JSONPath=`.spec.retryBudget.retryRatio`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$')",message="metadata.name must be the fully qualified name clients use, e.g. web.shop.svc.cluster.local"
type ServiceProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the service's routes and traffic policy.
	// +required
	Spec ServiceProfileSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status ServiceProfileStatus `json:"status,omitempty"`
}

// ServiceProfileSpec describes the service's routes and traffic policy.
//
// +kubebuilder:validation:XValidation:rule="!has(self.dstOverrides) || self.dstOverrides.all(d, self.dstOverrides.exists_one(o, o.authority == d.authority))",message="dstOverrides[].authority must be unique"
type ServiceProfileSpec struct {
	// routes are the service's routes, matched in order: the first whose condition
	// matches a request names it in metrics and applies its policy. Default: none (the
	// service is measured as a whole).
	//
	// Route names are unique (they are the metric label). Up to 256 routes: a profile
	// that `linkerd profile --open-api` writes has one per operation of the API.
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	// +optional
	Routes []RouteSpec `json:"routes,omitempty"`

	// retryBudget bounds retries of retryable routes, as a ratio of original requests.
	// Default: retryRatio 0.2, minRetriesPerSecond 10, ttl 10s.
	// +optional
	RetryBudget *RetryBudget `json:"retryBudget,omitempty"`

	// dstOverrides sends the service's traffic to other authorities in proportion to
	// their weights instead of to the service itself. Default: none.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	DstOverrides []WeightedDst `json:"dstOverrides,omitempty"`

	// opaquePorts of the service are forwarded as TCP without protocol detection: port
	// numbers, as numbers or strings ("3306"), or ranges as strings ("4000-4100").
	// Linkerd's CRD types them as strings; numbers are accepted too, as Weft wrote them
	// before. Default: none beyond the Mesh's.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	OpaquePorts []intstr.IntOrString `json:"opaquePorts,omitempty"`
}

// RouteSpec is one route of a service.
type RouteSpec struct {
	// name of the route, reported as the rt_route metric label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// condition a request must match to take this route.
	// +required
	Condition RequestMatch `json:"condition"`

	// responseClasses classify responses, first match wins. A response that matches no
	// class is a failure when its status is 5xx. Default: none.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	ResponseClasses []ResponseClass `json:"responseClasses,omitempty"`

	// isRetryable allows failed requests of this route to be retried within the retry
	// budget. Only mark routes whose requests are idempotent. Default: false.
	// +optional
	IsRetryable bool `json:"isRetryable,omitempty"`

	// timeout bounds the whole request, retries included: a positive Go duration, e.g.
	// 300ms or 1m30s, as Linkerd parses it. Default: 10s.
	// +kubebuilder:validation:Pattern=`^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// fault names an HTTPFault in the profile's namespace whose faults the client
	// proxy injects into this route's requests. Weft-only: Linkerd's ServiceProfile
	// has no such field (remove it before moving a profile back). While the
	// HTTPFault does not exist, the route's requests are answered 500.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	Fault string `json:"fault,omitempty"`
}

// RequestMatch is a condition on a request, Linkerd's request match: it sets one or more
// of all, any, not, pathRegex and method, and when it sets several, all must hold.
// Conditions nest to any depth Linkerd's documents use; Weft bounds them at
// MaxConditionDepth levels and MaxConditionNodes conditions per route.
//
// Why the nested members have no schema: the API server cannot describe a recursive
// type, and a schema unrolled to a fixed depth multiplies its CEL cost by the list
// bound at every level. As in Linkerd's CRD, nested conditions are stored as written
// (x-kubernetes-preserve-unknown-fields); UnmarshalJSON decodes them exactly (unknown
// keys and wrong types are recorded, never dropped or fatal, so one bad object cannot
// stop an informer), and internal/validation refuses them in the webhook and in the
// reconciler with the field path.
//
// The schema can only require that a condition sets something (minProperties; CEL
// cannot see members without a schema); internal/validation says what is missing.
//
// +kubebuilder:validation:MinProperties=1
type RequestMatch struct {
	// all holds when every one of its conditions holds: a list of 1 to 16 conditions
	// shaped like this one.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	All []RequestMatch `json:"all,omitempty"`
	// any holds when at least one of its conditions holds: a list of 1 to 16
	// conditions shaped like this one.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Any []RequestMatch `json:"any,omitempty"`
	// not holds when its condition does not: one condition shaped like this one (an
	// object, not a list).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Not *RequestMatch `json:"not,omitempty"`
	// pathRegex is a regular expression (RE2 syntax) the whole request path must match,
	// e.g. /books/[^/]*.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	PathRegex string `json:"pathRegex,omitempty"`
	// method is the HTTP method, e.g. GET. As in Linkerd it is compared upper-cased, so
	// get and GET are the same condition.
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Method string `json:"method,omitempty"`

	// decodeErr says what in the written condition did not fit this type (an unknown
	// key, a wrong type); empty when it decoded exactly.
	decodeErr string `json:"-"`
}

// ResponseClass says whether responses matching a condition are failures.
type ResponseClass struct {
	// condition a response must match to be in this class.
	// +required
	Condition ResponseMatch `json:"condition"`
	// isFailure marks responses of this class as failures (for success rate, retries
	// and failure accrual). Default: false.
	// +optional
	IsFailure bool `json:"isFailure,omitempty"`
}

// ResponseMatch is a condition on a response, Linkerd's response match: it sets one or
// more of all, any, not and status, and when it sets several, all must hold. It nests
// like RequestMatch, and for the same reason its nested members have no schema.
//
// +kubebuilder:validation:MinProperties=1
type ResponseMatch struct {
	// all holds when every one of its conditions holds: a list of 1 to 16 conditions
	// shaped like this one.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	All []ResponseMatch `json:"all,omitempty"`
	// any holds when at least one of its conditions holds: a list of 1 to 16
	// conditions shaped like this one.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Any []ResponseMatch `json:"any,omitempty"`
	// not holds when its condition does not: one condition shaped like this one (an
	// object, not a list).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Not *ResponseMatch `json:"not,omitempty"`
	// status holds when the response status is in the range.
	// +optional
	Status *StatusRange `json:"status,omitempty"`

	// decodeErr: as RequestMatch's.
	decodeErr string `json:"-"`
}

// StatusRange is an inclusive range of HTTP status codes. As in Linkerd, a range that
// sets only min or only max matches just that one status (min: 404 matches 404 only).
//
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="status.min must not be greater than status.max"
type StatusRange struct {
	// min is the lowest status in the range, 100 to 599. Default: max.
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=599
	// +optional
	Min *int32 `json:"min,omitempty"`
	// max is the highest status in the range, 100 to 599. Default: min.
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=599
	// +optional
	Max *int32 `json:"max,omitempty"`
}

// RetryBudget bounds retries: at any time, retries may add at most retryRatio of the
// original requests of the last ttl, plus minRetriesPerSecond.
type RetryBudget struct {
	// retryRatio is the share of original requests that may be retried, e.g. 0.2 adds
	// at most 20% load. 0 to 1000, the range Linkerd's proxy takes; above 1 retries may
	// outnumber the requests, and admission warns.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +required
	RetryRatio float32 `json:"retryRatio"`
	// minRetriesPerSecond allows this many retries per second regardless of the ratio,
	// so that low-traffic services can still retry. 0 to 10000.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +required
	MinRetriesPerSecond int32 `json:"minRetriesPerSecond"`
	// ttl is the window over which requests and retries are counted: a positive Go
	// duration, e.g. 10s.
	// +kubebuilder:validation:Pattern=`^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +required
	TTL string `json:"ttl"`
}

// WeightedDst is an authority and its share of traffic.
type WeightedDst struct {
	// authority to send traffic to, e.g. web-v2.shop.svc.cluster.local:80.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Authority string `json:"authority"`
	// weight of this authority relative to the others, a non-negative quantity
	// (e.g. 1, 500m).
	// +required
	Weight resource.Quantity `json:"weight"`
}

// ServiceProfileStatus is what the control plane observed.
type ServiceProfileStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted, ResolvedRefs, Ready.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// routes is the number of routes in the spec.
	// +optional
	Routes int32 `json:"routes"`
	// retryableRoutes is the number of routes marked isRetryable.
	// +optional
	RetryableRoutes int32 `json:"retryableRoutes"`
}

// ServiceProfileList is a list of ServiceProfile.
// +kubebuilder:object:root=true
type ServiceProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceProfile `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceProfile{}, &ServiceProfileList{})
}
