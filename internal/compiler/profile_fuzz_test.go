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

package compiler

import (
	"encoding/json"
	"testing"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/validation"
)

// FuzzProfileConditions: any JSON a user can store in a condition's nested members
// decodes without error, and whatever validation accepts, the compiler converts; what
// it refuses never reaches the compiler. Seeds are Linkerd's documented conditions.
func FuzzProfileConditions(f *testing.F) {
	for _, seed := range []string{
		`{"pathRegex": "/authors/\\d+"}`,
		`{"method": "POST"}`,
		`{"all": [{"pathRegex": "/authors/\\d+"}, {"method": "POST"}]}`,
		`{"any": [{"all": [{"method": "POST"}, {"pathRegex": "/authors/\\d+"}]}, {"all": [{"not": {"method": "DELETE"}}, {"pathRegex": "/info.txt"}]}]}`,
		`{"not": [{"method": "GET"}]}`,
		`{"all": [], "not": {"any": []}}`,
		`{"any": ["GET", 7, null, {"pathregex": "/x"}]}`,
	} {
		f.Add([]byte(seed), []byte(`{"all": [{"status": {"min": 500, "max": 599}}, {"not": {"status": {"min": 503}}}]}`))
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		var rt meshv1alpha1.RouteSpec
		rt.Name = "r"
		if err := json.Unmarshal(req, &rt.Condition); err != nil {
			if json.Valid(req) {
				t.Fatalf("decoding %s failed: %v", req, err)
			}
			return
		}
		var rc meshv1alpha1.ResponseClass
		if err := json.Unmarshal(resp, &rc.Condition); err != nil {
			if json.Valid(resp) {
				t.Fatalf("decoding %s failed: %v", resp, err)
			}
			return
		}
		rt.ResponseClasses = []meshv1alpha1.ResponseClass{rc}
		sp := &meshv1alpha1.ServiceProfile{Spec: meshv1alpha1.ServiceProfileSpec{Routes: []meshv1alpha1.RouteSpec{rt}}}
		if len(validation.ServiceProfile(sp)) > 0 {
			return
		}
		if _, err := requestCondition(&rt.Condition, 1); err != nil {
			t.Fatalf("validation accepted %s, the compiler refused it: %v", req, err)
		}
		if _, err := responseCondition(&rc.Condition, 1); err != nil {
			t.Fatalf("validation accepted %s, the compiler refused it: %v", resp, err)
		}
	})
}
