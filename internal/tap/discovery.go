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

package tap

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Resources are the kinds a user can tap, by their plural resource name; each is
// served as "<name>/tap" with verb watch. namespaces taps every meshed pod of one
// namespace.
var Resources = []string{"namespaces", "pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs"}

func groupVersion() metav1.GroupVersionForDiscovery {
	return metav1.GroupVersionForDiscovery{GroupVersion: Group + "/" + Version, Version: Version}
}

// apiGroup is the discovery document of /apis/tap.weft.dev.
func apiGroup() *metav1.APIGroup {
	return &metav1.APIGroup{
		TypeMeta:         metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:             Group,
		Versions:         []metav1.GroupVersionForDiscovery{groupVersion()},
		PreferredVersion: groupVersion(),
	}
}

// apiGroupList is /apis as the tap API serves it: only its own group.
func apiGroupList() *metav1.APIGroupList {
	return &metav1.APIGroupList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups:   []metav1.APIGroup{*apiGroup()},
	}
}

// apiResourceList is /apis/tap.weft.dev/v1alpha1: each resource (no verbs of its own,
// so kubectl never lists or gets it) and its tap subresource (watch), which is what
// `kubectl auth can-i` and RBAC rules name.
func apiResourceList() *metav1.APIResourceList {
	l := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: Group + "/" + Version,
	}
	for _, r := range Resources {
		namespaced := r != "namespaces"
		l.APIResources = append(l.APIResources,
			metav1.APIResource{Name: r, Namespaced: namespaced, Kind: "Tap", Verbs: metav1.Verbs{}},
			metav1.APIResource{Name: r + "/" + Subresource, Namespaced: namespaced, Kind: "Tap", Verbs: metav1.Verbs{Verb}},
		)
	}
	return l
}
