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

// Package v1alpha1 contains Weft's authorization policy kinds of the policy.weft.dev API
// group: Server, AuthorizationPolicy, MeshTLSAuthentication and NetworkAuthentication.
// They keep the field names and semantics of Linkerd's policy.linkerd.io kinds, so a
// Linkerd policy migrates by changing its apiVersion.
// +kubebuilder:object:generate=true
// +groupName=policy.weft.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the kinds in this package.
	GroupVersion = schema.GroupVersion{Group: "policy.weft.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// LinkerdGroup is Linkerd's policy API group. References that name it (a Linkerd policy
// whose apiVersion alone was changed) mean this group.
const LinkerdGroup = "policy.linkerd.io"

// PolicyStatus is what the control plane observed of a policy object.
type PolicyStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted (the spec is usable), ResolvedRefs (every object it names
	// exists), Ready (both).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
