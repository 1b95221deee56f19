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

package validation

import (
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
)

// TrafficSplit checks what the CRD schema cannot: that Weft can honour the split.
func TrafficSplit(ts *splitv1alpha2.TrafficSplit) field.ErrorList {
	var errs field.ErrorList
	for i, m := range ts.Spec.Matches {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "matches").Index(i),
			"Weft does not serve SMI "+m.Kind+" route groups; remove matches and restrict the split with a Gateway API HTTPRoute"))
	}
	return errs
}

// TrafficSplitConflicts rejects a split whose root Service another split of the same
// namespace already splits: two weight tables for one Service have no meaning. others
// are the namespace's splits as the caller read them; the split itself and splits being
// deleted are not conflicts.
func TrafficSplitConflicts(ts *splitv1alpha2.TrafficSplit, others []splitv1alpha2.TrafficSplit) field.ErrorList {
	var errs field.ErrorList
	for _, o := range others {
		if o.Name == ts.Name || o.Spec.Service != ts.Spec.Service || o.DeletionTimestamp != nil {
			continue
		}
		errs = append(errs, field.Forbidden(field.NewPath("spec", "service"),
			fmt.Sprintf("TrafficSplit %s already splits Service %s; a Service has at most one split, so put these backends in that one", o.Name, ts.Spec.Service)))
	}
	return errs
}

// TrafficSplitServices returns the Services a split names, the root Service first and
// then each backend that is not the root, in spec order. A backend named twice is
// listed twice (each field is its own reference); callers that need names once dedupe.
func TrafficSplitServices(ts *splitv1alpha2.TrafficSplit) []ServiceRef {
	spec := field.NewPath("spec")
	refs := []ServiceRef{{Path: spec.Child("service"), Key: types.NamespacedName{Namespace: ts.Namespace, Name: ts.Spec.Service}}}
	for i, b := range ts.Spec.Backends {
		if b.Service == ts.Spec.Service {
			continue
		}
		refs = append(refs, ServiceRef{Path: spec.Child("backends").Index(i).Child("service"),
			Key: types.NamespacedName{Namespace: ts.Namespace, Name: b.Service}})
	}
	return refs
}
