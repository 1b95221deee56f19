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

	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/testenv"
)

// The dashboard's ServiceAccount only reads, and never Secrets or a way into pods
// (pods/proxy, exec, portforward): whoever can port-forward to it sees what it reads.
// Its one other verb is watch on exactly the tap API's <resource>/tap (the live tap
// view), every one the tap API serves and nothing else of tap.weft.dev, in a
// ClusterRole of its own that an operator (or Helm's dashboard.tap=false) can leave
// out.
func TestDashboardRBACReadOnly(t *testing.T) {
	objs, err := testenv.Kustomize("config/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	roles, tapRules := 0, 0
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		roles++
		rules, _ := o.Object["rules"].([]any)
		for _, r := range rules {
			rule := r.(map[string]any)
			if slices.Contains(stringList(rule["apiGroups"]), tap.Group) {
				var want []string
				for _, res := range tap.Resources {
					want = append(want, res+"/"+tap.Subresource)
				}
				if got := stringList(rule["resources"]); len(rule["apiGroups"].([]any)) != 1 || !slices.Equal(got, want) ||
					!slices.Equal(stringList(rule["verbs"]), []string{tap.Verb}) {
					t.Errorf("%s's tap rule = %v, want only watch on %v", o.GetName(), rule, want)
				}
				if o.GetName() != "weft-dashboard-tap" || len(rules) != 1 {
					t.Errorf("the tap rule is in %s with %d rules, want alone in weft-dashboard-tap", o.GetName(), len(rules))
				}
				tapRules++
				continue
			}
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
	if tapRules != 1 {
		t.Errorf("config/dashboard has %d rules on %s, want the tap view's one", tapRules, tap.Group)
	}
	if roles != 2 {
		t.Fatalf("config/dashboard renders %d roles, want its two ClusterRoles", roles)
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
