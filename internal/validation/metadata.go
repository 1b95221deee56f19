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

	"github.com/weftmesh/weft/internal/inject"
)

// InjectionMetadata checks the weft metadata of a namespace or a pod template, under
// meta (the path of its metadata): the config.weft.dev/* and weft.dev/inject annotations
// parse the way the injector reads them (the parser is the injector's own, so the two
// cannot disagree), and a weft.dev/inject label, which the injector's namespaceSelector
// and objectSelector match on, has one of the two values the selectors know.
func InjectionMetadata(meta *field.Path, annotations, labels map[string]string) field.ErrorList {
	errs := inject.ValidateAnnotations(annotations, meta.Child("annotations"))
	if v, ok := labels[inject.AnnotationInject]; ok && v != inject.InjectEnabled && v != inject.InjectDisabled {
		errs = append(errs, field.NotSupported(meta.Child("labels").Key(inject.AnnotationInject), v,
			[]string{inject.InjectEnabled, inject.InjectDisabled}))
	}
	return errs
}
