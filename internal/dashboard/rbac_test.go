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

package dashboard

import (
	"slices"
	"testing"

	"github.com/weftmesh/weft/internal/testenv"
)

// The dashboard's ServiceAccount only reads, and never Secrets or a way into pods
// (pods/proxy, exec, portforward): whoever can port-forward to it sees what it reads.
func TestDashboardRBACReadOnly(t *testing.T) {
	objs, err := testenv.Kustomize("config/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	roles := 0
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		roles++
		rules, _ := o.Object["rules"].([]any)
		for _, r := range rules {
			rule := r.(map[string]any)
			for _, v := range stringList(rule["verbs"]) {
				if !slices.Contains([]string{"get", "list", "watch"}, v) {
					t.Errorf("%s grants %q on %v", o.GetName(), v, rule["resources"])
				}
			}
			for _, res := range stringList(rule["resources"]) {
				if res == "secrets" || res == "*" || res == "pods/proxy" || res == "pods/exec" || res == "pods/portforward" || res == "services/proxy" {
					t.Errorf("%s grants access to %s", o.GetName(), res)
				}
			}
		}
	}
	if roles != 1 {
		t.Fatalf("config/dashboard renders %d roles, want its one ClusterRole", roles)
	}
}

func stringList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		if str, ok := s.(string); ok {
			out = append(out, str)
		}
	}
	return out
}
