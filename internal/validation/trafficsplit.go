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
