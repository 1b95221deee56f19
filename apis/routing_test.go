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

package apis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/validation"
)

const profileHeader = `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata:
  name: web.default.svc.cluster.local
  namespace: default
`

func TestServiceProfileSchema(t *testing.T) {
	profile := func(spec string) string { return profileHeader + "spec:\n" + spec }
	route := func(body string) string { return profile("  routes:\n  - name: r\n" + body) }
	runSchemaCases(t, []schemaCase{
		{name: "Linkerd-style profile is valid", yaml: profile(`
  routes:
  - name: GET /books/{id}
    condition:
      method: GET
      pathRegex: /books/[^/]*
    responseClasses:
    - condition:
        status: {min: 500, max: 599}
      isFailure: true
    isRetryable: true
    timeout: 300ms
  - name: writes
    condition:
      any:
      - method: POST
      - all:
        - method: PUT
        - pathRegex: /books/.*
      - not:
          pathRegex: /admin/.*
    responseClasses:
    - condition:
        any:
        - status: {min: 500}
        - all:
          - status: {min: 429, max: 429}
      isFailure: true
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
  dstOverrides:
  - {authority: web-v1.default.svc.cluster.local:80, weight: 900m}
  - {authority: web-v2.default.svc.cluster.local:80, weight: 100m}
  opaquePorts: [6379]
`)},
		{name: "external authority name is valid", yaml: `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata:
  name: api.example.com
  namespace: default
spec: {}
`},
		{name: "name is not a qualified name", yaml: `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata:
  name: web
  namespace: default
spec: {}
`, wantErr: []string{"metadata.name must be the fully qualified name clients use"}},
		{name: "missing spec", yaml: profileHeader, wantErr: []string{"spec", "Required value"}},
		{name: "duplicate route names", yaml: profile("  routes:\n  - {name: a, condition: {method: GET}}\n  - {name: a, condition: {method: POST}}\n"),
			wantErr: []string{"spec.routes[1]", "Duplicate value"}},
		{name: "route without name", yaml: profile("  routes:\n  - {condition: {method: GET}}\n"),
			wantErr: []string{"spec.routes[0].name", "Required value"}},
		{name: "route name too long", yaml: profile(fmt.Sprintf("  routes:\n  - {name: %q, condition: {method: GET}}\n", fmt.Sprintf("r%0253d", 0))),
			wantErr: []string{"spec.routes[0].name", "253"}},
		{name: "too many routes", yaml: profile("  routes:\n" + repeat(257, 2, func(i int) string { return fmt.Sprintf("{name: r%d, condition: {method: GET}}", i) })),
			wantErr: []string{"spec.routes", "must have at most 256 items"}},
		{name: "empty condition", yaml: route("    condition: {}\n"),
			wantErr: []string{"spec.routes[0].condition", "should have at least 1 properties"}},
		// Nested conditions have no schema (as in Linkerd's CRD): the webhook and the
		// reconciler check them (internal/validation, webhooks' TestLinkerdServiceProfiles).
		// https://linkerd.io/2-edge/reference/service-profiles/#request-match-usage-examples
		{name: "Linkerd's combined condition, four levels deep", yaml: route(`    condition:
      any:
      - all:
        - method: POST
        - pathRegex: '/authors/\d+'
      - all:
        - not:
            method: DELETE
        - pathRegex: /info.txt
`)},
		{name: "lower-case method, compared upper-cased as in Linkerd", yaml: route("    condition: {method: get}\n")},
		{name: "method that is not a token", yaml: route("    condition: {method: 'GET /'}\n"),
			wantErr: []string{"spec.routes[0].condition.method", "should match"}},
		{name: "path regex too long", yaml: route(fmt.Sprintf("    condition: {pathRegex: %q}\n", fmt.Sprintf("%01025d", 0))),
			wantErr: []string{"spec.routes[0].condition.pathRegex", "1024"}},
		// Any positive duration Go's time.ParseDuration reads, which is what Linkerd takes.
		{name: "timeouts in Go's duration syntax", yaml: profile("  routes:\n  - {name: a, condition: {method: GET}, timeout: .5s}\n  - {name: b, condition: {method: GET}, timeout: 1m30.5s}\n  - {name: c, condition: {method: GET}, timeout: 250μs}\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 1.s}\n")},
		{name: "timeout that is not a duration", yaml: route("    condition: {method: GET}\n    timeout: soon\n"),
			wantErr: []string{"spec.routes[0].timeout", "should match"}},
		{name: "empty response condition", yaml: route("    condition: {method: GET}\n    responseClasses:\n    - condition: {}\n"),
			wantErr: []string{"spec.routes[0].responseClasses[0].condition", "should have at least 1 properties"}},
		{name: "status range upside down", yaml: route("    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {min: 599, max: 500}}\n"),
			wantErr: []string{"spec.routes[0].responseClasses[0].condition.status", "status.min must not be greater than status.max"}},
		{name: "status below 100", yaml: route("    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {min: 99}}\n"),
			wantErr: []string{"spec.routes[0].responseClasses[0].condition.status.min", "greater than or equal to 100"}},
		{name: "status above 599", yaml: route("    condition: {method: GET}\n    responseClasses:\n    - condition: {status: {max: 600}}\n"),
			wantErr: []string{"spec.routes[0].responseClasses[0].condition.status.max", "less than or equal to 599"}},
		// Linkerd's proxy takes ratios up to 1000; admission warns above 1.
		{name: "retry ratio above 1, as Linkerd allows", yaml: profile("  retryBudget: {retryRatio: 1.5, minRetriesPerSecond: 10, ttl: 10s}\n")},
		{name: "retry ratio above 1000", yaml: profile("  retryBudget: {retryRatio: 1001, minRetriesPerSecond: 10, ttl: 10s}\n"),
			wantErr: []string{"spec.retryBudget.retryRatio", "less than or equal to 1000"}},
		{name: "negative retry ratio", yaml: profile("  retryBudget: {retryRatio: -0.1, minRetriesPerSecond: 10, ttl: 10s}\n"),
			wantErr: []string{"spec.retryBudget.retryRatio", "greater than or equal to 0"}},
		{name: "too many retries per second", yaml: profile("  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 20000, ttl: 10s}\n"),
			wantErr: []string{"spec.retryBudget.minRetriesPerSecond", "less than or equal to 10000"}},
		{name: "budget ttl that is not a duration", yaml: profile("  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: ten}\n"),
			wantErr: []string{"spec.retryBudget.ttl", "should match"}},
		{name: "budget without ttl", yaml: profile("  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10}\n"),
			wantErr: []string{"spec.retryBudget.ttl", "Required value"}},
		{name: "duplicate override authority", yaml: profile("  dstOverrides:\n  - {authority: a:80, weight: 1}\n  - {authority: a:80, weight: 1}\n"),
			wantErr: []string{"spec", "dstOverrides[].authority must be unique"}},
		{name: "too many overrides", yaml: profile("  dstOverrides:\n" + repeat(17, 2, func(i int) string { return fmt.Sprintf("{authority: a%d:80, weight: 1}", i) })),
			wantErr: []string{"spec.dstOverrides", "must have at most 16 items"}},
		// Linkerd's CRD types opaquePorts as strings; Weft stored numbers before.
		{name: "opaque ports as strings, ranges and numbers", yaml: profile("  opaquePorts: ['3306', '4000-4100', 6379, 6379]\n")},
		{name: "opaque port that is neither", yaml: profile("  opaquePorts: [true]\n"),
			wantErr: []string{"spec.opaquePorts[0]"}},
	})
}

const splitHeader = `apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: web
  namespace: default
`

func TestTrafficSplitSchema(t *testing.T) {
	split := func(spec string) string { return splitHeader + "spec:\n" + spec }
	runSchemaCases(t, []schemaCase{
		{name: "90/10 canary is valid", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: 90}\n  - {service: web-v2, weight: 10}\n")},
		{name: "missing backends", yaml: split("  service: web\n"),
			wantErr: []string{"spec.backends", "Required value"}},
		{name: "empty backends", yaml: split("  service: web\n  backends: []\n"),
			wantErr: []string{"spec.backends", "should have at least 1 items"}},
		{name: "too many backends", yaml: split("  service: web\n  backends:\n" + repeat(17, 2, func(i int) string { return fmt.Sprintf("{service: b%d, weight: 1}", i) })),
			wantErr: []string{"spec.backends", "must have at most 16 items"}},
		{name: "duplicate backend", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: 1}\n  - {service: web-v1, weight: 2}\n"),
			wantErr: []string{"spec", "backends[].service must be unique"}},
		{name: "all weights zero", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: 0}\n"),
			wantErr: []string{"spec", "at least one backend must have a weight above 0"}},
		{name: "negative weight", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: -1}\n  - {service: web-v2, weight: 1}\n"),
			wantErr: []string{"spec.backends[0].weight", "greater than or equal to 0"}},
		{name: "weight too large", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: 2000000}\n"),
			wantErr: []string{"spec.backends[0].weight", "less than or equal to 1000000"}},
		{name: "root service not a DNS label", yaml: split("  service: Web_1\n  backends:\n  - {service: web-v1, weight: 1}\n"),
			wantErr: []string{"spec.service", "should match"}},
		{name: "backend service name too long", yaml: split(fmt.Sprintf("  service: web\n  backends:\n  - {service: a%s, weight: 1}\n", fmt.Sprintf("%063d", 0))),
			wantErr: []string{"spec.backends[0].service", "63"}},
		{name: "match of unknown kind", yaml: split("  service: web\n  backends:\n  - {service: web-v1, weight: 1}\n  matches:\n  - {kind: HTTPRoute, name: r}\n"),
			wantErr: []string{"spec.matches[0].kind", "Unsupported value"}},
	})
}

// TestServiceProfileNestedGarbageStillLists: nested conditions have no schema, so an
// object written while the webhook was down may hold anything there. Reading it back
// must not fail (a decode error fails the whole list, and with it the informer every
// profile is compiled from); the garbage surfaces as validation errors on that
// object alone.
func TestServiceProfileNestedGarbageStillLists(t *testing.T) {
	create(t, `apiVersion: v1
kind: Namespace
metadata: {name: garbage}
`)
	create(t, `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {name: bad.garbage.svc.cluster.local, namespace: garbage}
spec:
  routes:
  - name: r
    condition:
      any: ["GET", 7, {pathregex: /x}, {all: {method: GET}}, {not: [{method: GET}]}]
      not: {method: 42}
    responseClasses:
    - condition:
        all: [{status: {min: "500"}}, {status: "5xx"}]
`)
	create(t, `apiVersion: mesh.weft.dev/v1alpha1
kind: ServiceProfile
metadata: {name: good.garbage.svc.cluster.local, namespace: garbage}
spec:
  routes: [{name: r, condition: {any: [{all: [{not: {method: DELETE}}]}]}}]
`)
	var list meshv1alpha1.ServiceProfileList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace("garbage")); err != nil {
		t.Fatalf("listing must not fail on one bad object: %v", err)
	}
	got := map[string][]string{}
	for i := range list.Items {
		for _, e := range validation.ServiceProfile(&list.Items[i]) {
			got[list.Items[i].Name] = append(got[list.Items[i].Name], e.Field+": "+e.Detail)
		}
	}
	if len(got["good.garbage.svc.cluster.local"]) != 0 {
		t.Errorf("the good profile has errors: %v", got["good.garbage.svc.cluster.local"])
	}
	want := []string{
		"spec.routes[0].condition.any[0]: a request condition must be an object",
		"spec.routes[0].condition.any[1]: a request condition must be an object",
		`spec.routes[0].condition.any[2]: unknown field "pathregex"`,
		"spec.routes[0].condition.any[3]: all must be a list of conditions",
		"spec.routes[0].condition.any[4].not: a request condition must be an object",
		"spec.routes[0].condition.not: method must be a string",
		"spec.routes[0].responseClasses[0].condition.all[0]: status: min must be a whole number",
		"spec.routes[0].responseClasses[0].condition.all[1]: status: a status range must be an object",
	}
	bad := strings.Join(got["bad.garbage.svc.cluster.local"], "\n")
	for _, w := range want {
		if !strings.Contains(bad, w) {
			t.Errorf("errors of the bad profile lack %q; got:\n%s", w, bad)
		}
	}
}

// TestServiceProfileUnknownTopLevelKey: at the first level the schema knows the keys,
// so the API server's own field validation names an unknown one (kubectl asks for
// Strict); nested levels are the webhook's (TestServiceProfileConditionsRefused).
func TestServiceProfileUnknownTopLevelKey(t *testing.T) {
	obj := decode(t, profileHeader+`spec:
  routes:
  - name: r
    condition: {method: GET, pathregex: /books}
`)
	err := k8sClient.Create(context.Background(), obj, client.DryRunAll, client.FieldValidation("Strict"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.routes[0].condition.pathregex"`) {
		t.Fatalf("error = %v, want the unknown field named", err)
	}
}
