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
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// decodeProfile decodes YAML the way a client reads a stored object: through the
// types' UnmarshalJSON, which must never fail.
func decodeProfile(t *testing.T, spec string) *meshv1alpha1.ServiceProfile {
	t.Helper()
	doc := "apiVersion: mesh.weft.dev/v1alpha1\nkind: ServiceProfile\nmetadata: {name: web.shop.svc.cluster.local, namespace: shop}\nspec:\n" + spec
	var p meshv1alpha1.ServiceProfile
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("decoding must never fail, got: %v", err)
	}
	return &p
}

// nest wraps a leaf condition in n-1 levels of the given kind ("all", "any", "not").
func nest(kind string, n int, leaf string) string {
	s := leaf
	for range n - 1 {
		if kind == "not" {
			s = "{not: " + s + "}"
		} else {
			s = "{" + kind + ": [" + s + "]}"
		}
	}
	return s
}

// TestServiceProfileConditions covers what the schema leaves to Go below the first
// level: shape, unknown keys, depth, size, and the leaves' own rules.
func TestServiceProfileConditions(t *testing.T) {
	route := func(cond string) string { return "  routes:\n  - name: r\n    condition: " + cond + "\n" }
	class := func(cond string) string {
		return "  routes:\n  - name: r\n    condition: {method: GET}\n    responseClasses:\n    - condition: " + cond + "\n"
	}
	wide := make([]string, 0, 16)
	for i := range 16 {
		wide = append(wide, fmt.Sprintf("{pathRegex: /p%d}", i))
	}
	row := "[" + strings.Join(wide, ", ") + "]"
	cases := []struct {
		name string
		spec string
		want []string
	}{
		// https://linkerd.io/2-edge/reference/service-profiles/#request-match-usage-examples
		{"Linkerd's combined example, 4 levels", route("{any: [{all: [{method: POST}, {pathRegex: '/authors/\\d+'}]}, {all: [{not: {method: DELETE}}, {pathRegex: /info.txt}]}]}"), nil},
		{"lower-case method, compared upper-cased as Linkerd does", route("{all: [{method: get}]}"), nil},
		{"depth 8 is the bound and is accepted", route(nest("all", meshv1alpha1.MaxConditionDepth, "{method: GET}")), nil},
		{"depth 9 is refused at the 9th level", route(nest("not", meshv1alpha1.MaxConditionDepth+1, "{method: GET}")),
			[]string{"spec.routes[0].condition.not.not.not.not.not.not.not.not|nest at most 8 levels"}},
		{"a hostile depth stops at the bound with one error", route(nest("any", 2000, "{method: GET}")),
			[]string{"spec.routes[0].condition" + strings.Repeat(".any[0]", 8) + "|nest at most 8 levels"}},
		{"16 per list is accepted", route("{any: " + row + "}"), nil},
		{"17 in a nested list is refused", route("{not: {any: [" + strings.Join(append(wide, "{method: GET}"), ", ") + "]}}"),
			[]string{"spec.routes[0].condition.not.any|must have at most 16 items"}},
		{"more than 128 conditions in one tree", route("{all: [{any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}, {any: " + row + "}]}"),
			[]string{"spec.routes[0].condition.all[7].any[7]|at most 128 conditions"}},
		{"unknown key in a nested condition", route("{any: [{pathregex: /books}]}"),
			[]string{"spec.routes[0].condition.any[0]|unknown field \"pathregex\" (a request condition has only all, any, method, not, pathRegex)"}},
		{"not written as a list", route("{all: [{not: [{method: GET}]}]}"),
			[]string{"spec.routes[0].condition.all[0].not|a request condition must be an object"}},
		{"all written as an object", route("{not: {all: {method: GET}}}"),
			[]string{"spec.routes[0].condition.not|all must be a list of conditions"}},
		{"a nested condition that is a string", route("{any: [GET]}"),
			[]string{"spec.routes[0].condition.any[0]|must be an object"}},
		{"empty nested condition", route("{all: [{}]}"),
			[]string{"spec.routes[0].condition.all[0]|must set at least one of all, any, not, pathRegex or method"}},
		// Linkerd's proxy drops a condition with an empty list; Weft says so.
		{"empty lists", route("{all: [], not: {any: []}}"),
			[]string{"spec.routes[0].condition.all|must hold at least one condition", "spec.routes[0].condition.not.any|must hold at least one condition"}},
		{"nested method with a space", route("{any: [{method: 'GET /'}]}"),
			[]string{"spec.routes[0].condition.any[0].method|HTTP method"}},
		{"nested pathRegex too long", route("{any: [{pathRegex: /" + strings.Repeat("a", 1024) + "}]}"),
			[]string{"spec.routes[0].condition.any[0].pathRegex|1024"}},
		// `linkerd profile --template`: https://github.com/linkerd/linkerd2/blob/main/pkg/profiles/template.go
		{"the template's commented response condition", class("{all: [{status: {min: 500, max: 599}}, {not: {status: {min: 503}}}]}"), nil},
		{"unknown key in a nested status", class("{not: {status: {min: 500, maximum: 599}}}"),
			[]string{"spec.routes[0].responseClasses[0].condition.not|status: unknown field \"maximum\""}},
		{"nested status out of range", class("{any: [{status: {min: 500, max: 600}}]}"),
			[]string{"spec.routes[0].responseClasses[0].condition.any[0].status.max|between 100 and 599"}},
		{"nested status upside down", class("{not: {status: {min: 300, max: 200}}}"),
			[]string{"spec.routes[0].responseClasses[0].condition.not.status|min must not be greater"}},
		{"status with neither bound", class("{status: {}}"),
			[]string{"spec.routes[0].responseClasses[0].condition.status|must set min, max or both"}},
		{"response depth bound", class(nest("not", 9, "{status: {min: 500}}")),
			[]string{"spec.routes[0].responseClasses[0].condition.not.not.not.not.not.not.not.not|nest at most 8 levels"}},
		{"opaque ports as Linkerd writes them and as Weft did", "  opaquePorts: ['3306', 6379, '4000-4100']\n", nil},
		{"opaque ports that are not ports", "  opaquePorts: [0, '70000', 'http', '9-1', '1,2']\n", []string{
			"spec.opaquePorts[0]|between 1 and 65535", "spec.opaquePorts[1]|a port", "spec.opaquePorts[2]|a port",
			"spec.opaquePorts[3]|a port", "spec.opaquePorts[4]|one per entry"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantErrors(t, ServiceProfile(decodeProfile(t, tc.spec)), tc.want)
		})
	}
}

// TestConditionDepthBoundIsCheap: a condition nested far deeper than any API server
// would store (built in memory, bypassing decoding) is refused after MaxConditionDepth
// levels, without walking the rest.
func TestConditionDepthBoundIsCheap(t *testing.T) {
	leaf := &meshv1alpha1.RequestMatch{Method: "GET"}
	for range 1_000_000 {
		leaf = &meshv1alpha1.RequestMatch{Not: leaf}
	}
	w := conditionWalk{budget: &profileBudget{}}
	errs := w.request(nil, leaf, 1)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "nest at most 8 levels") {
		t.Fatalf("errors = %v, want one depth error", errs)
	}
	if w.nodes != meshv1alpha1.MaxConditionDepth {
		t.Errorf("walked %d conditions, want %d", w.nodes, meshv1alpha1.MaxConditionDepth)
	}
}

func TestServiceProfileWarnings(t *testing.T) {
	got := ServiceProfileWarnings(decodeProfile(t, `  routes:
  - name: a
    condition: {method: GET}
    responseClasses:
    - condition: {status: {min: 500, max: 599}}
  - name: b
    condition: {method: GET}
    responseClasses:
    - condition: {all: [{status: {min: 500, max: 599}}, {not: {status: {min: 503}}}]}
  retryBudget: {retryRatio: 2.5, minRetriesPerSecond: 10, ttl: 10s}
`))
	want := []string{
		"spec.routes[1].responseClasses[0].condition.all[1].not.status: only min is set, so the range matches status 503 alone (Linkerd's meaning); set max too for a range",
		"spec.retryBudget.retryRatio: 2.5 lets retries outnumber the original requests (up to 3.5x the load on a failing service); Linkerd's examples use 0.2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings = %q, want %q", got, want)
	}
	if got := ServiceProfileWarnings(decodeProfile(t, "  retryBudget: {retryRatio: 1, minRetriesPerSecond: 10, ttl: 10s}\n")); len(got) != 0 {
		t.Errorf("a ratio of 1 warns: %q", got)
	}
}

// TestProfileBudget: conditions and expression bytes are bounded across the whole
// profile, so that validating (and compiling) any profile stays cheap: the worst
// profile the per-route bounds allow (256 routes of 120 conditions, each a 1 KiB
// expression) took 8s before; now validation stops at the budget.
func TestProfileBudget(t *testing.T) {
	leaf := meshv1alpha1.RequestMatch{PathRegex: strings.Repeat("(a|b)*c[0-9]{1,9}", 1000/18)}
	row := make([]meshv1alpha1.RequestMatch, 16)
	for i := range row {
		row[i] = leaf
	}
	mid := meshv1alpha1.RequestMatch{Any: row}
	wide := meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{mid, mid, mid, mid, mid, mid, mid}} // 120 conditions
	small := meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{{Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}, {Any: []meshv1alpha1.RequestMatch{{Method: "GET"}}}}}
	routes := func(n int, c meshv1alpha1.RequestMatch) func(*meshv1alpha1.ServiceProfileSpec) {
		return func(s *meshv1alpha1.ServiceProfileSpec) {
			for i := range n {
				s.Routes = append(s.Routes, meshv1alpha1.RouteSpec{Name: fmt.Sprintf("r%d", i), Condition: c})
			}
		}
	}
	pathRoutes := func(n, size int) func(*meshv1alpha1.ServiceProfileSpec) {
		return routes(n, meshv1alpha1.RequestMatch{PathRegex: "/" + strings.Repeat("a", size-1)})
	}
	cases := []struct {
		name string
		spec func(*meshv1alpha1.ServiceProfileSpec)
		want []string
	}{
		{"256 routes of an OpenAPI profile", routes(256, meshv1alpha1.RequestMatch{Method: "GET", PathRegex: "/books/[^/]*/edit"}), nil},
		// 64 routes of 16 conditions.
		{"exactly 1024 conditions", func(s *meshv1alpha1.ServiceProfileSpec) {
			routes(64, meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{{Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Not: &meshv1alpha1.RequestMatch{Method: "GET"}}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}, {Method: "GET"}}})(s)
		}, nil},
		// 15 conditions a route: 68 routes hold 1020, the 1025th is route 68's fifth.
		{"more than 1024 conditions across routes", routes(69, small),
			[]string{"spec.routes[68].condition.all[1].any[0]|more than 1024 conditions across its routes"}},
		{"64 KiB of expressions", pathRoutes(64, 1024), nil},
		{"more than 64 KiB of expressions", pathRoutes(65, 1024),
			[]string{"spec.routes[64].condition.pathRegex|add up to more than 65536 bytes"}},
		// 935-byte expressions: the 71st passes 64 KiB, in the first route.
		{"the worst profile the per-route bounds allow", routes(256, wide),
			[]string{"spec.routes[0].condition.all[4].any[6].pathRegex|add up to more than 65536 bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			wantErrors(t, ServiceProfile(sp("web.shop.svc.cluster.local", tc.spec)), tc.want)
			t.Logf("validated in %v", time.Since(start))
		})
	}
}
