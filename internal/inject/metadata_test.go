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

package inject

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidateMetadata(t *testing.T) {
	tpl := field.NewPath("spec", "template", "metadata")
	cases := []struct {
		name        string
		meta        *field.Path
		annotations map[string]string
		labels      map[string]string
		want        []string
	}{
		{"nothing weft", field.NewPath("metadata"), map[string]string{"team": "books"}, map[string]string{"app": "web"}, nil},
		{"valid knobs", tpl, map[string]string{AnnotationInject: InjectEnabled, AnnotationLogLevel: "debug"},
			map[string]string{AnnotationInject: InjectDisabled}, nil},
		{"bad annotation under a template's path", tpl, map[string]string{AnnotationProxyUID: "root"}, nil,
			[]string{"spec.template.metadata.annotations[config.weft.dev/proxy-uid]"}},
		{"mesh TLS mode is Opportunistic or Strict, case-sensitive as in the Mesh", field.NewPath("metadata"), map[string]string{AnnotationMeshTLSMode: "strict"}, nil,
			[]string{"metadata.annotations[config.weft.dev/mesh-tls-mode]|Opportunistic or Strict"}},
		{"bad inject annotation", field.NewPath("metadata"), map[string]string{AnnotationInject: "yes"}, nil,
			[]string{"metadata.annotations[weft.dev/inject]|supported values"}},
		{"bad inject label", tpl, nil, map[string]string{AnnotationInject: "on"},
			[]string{"spec.template.metadata.labels[weft.dev/inject]|supported values"}},
		{"annotation and label both named", field.NewPath("metadata"), map[string]string{AnnotationSkipSubnets: "10.0.0.0/33"},
			map[string]string{AnnotationInject: "true"},
			[]string{"metadata.annotations[config.weft.dev/skip-subnets]", "metadata.labels[weft.dev/inject]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantFieldErrors(t, ValidateMetadata(tc.meta, tc.annotations, tc.labels), tc.want)
		})
	}
}

// wantFieldErrors checks that errs holds exactly one error per entry of want, in
// order, each naming the field (and, after a "|", containing the text) given.
func wantFieldErrors(t *testing.T, errs field.ErrorList, want []string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors %v, want %d naming %q", len(errs), errs, len(want), want)
	}
	for i, w := range want {
		fieldPath, text, _ := strings.Cut(w, "|")
		if errs[i].Field != fieldPath {
			t.Errorf("error %d is on %s, want %s (%v)", i, errs[i].Field, fieldPath, errs[i])
		}
		if !strings.Contains(errs[i].Error(), text) {
			t.Errorf("error %d = %q, want one containing %q", i, errs[i].Error(), text)
		}
	}
}
