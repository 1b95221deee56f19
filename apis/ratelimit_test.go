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

import "testing"

// TestHTTPLocalRateLimitPolicySchema: each rule of the schema refuses a bad spec with a
// message that names the field, on a real API server; Linkerd's example is accepted.
func TestHTTPLocalRateLimitPolicySchema(t *testing.T) {
	rl := func(spec string) string { return policyDoc("HTTPLocalRateLimitPolicy", spec) }
	const target = "  targetRef: {group: policy.weft.dev, kind: Server, name: web-http}\n"
	const sa = "    clientRefs:\n      targetRefs: [{kind: ServiceAccount, name: batch}]\n"
	runSchemaCases(t, []schemaCase{
		{name: "linkerd's example", yaml: rl(target + "  total: {requestsPerSecond: 100}\n  identity: {requestsPerSecond: 20}\n" +
			"  overrides:\n  - requestsPerSecond: 50\n" + sa)},
		{name: "linkerd group", yaml: rl("  targetRef: {group: policy.linkerd.io, kind: Server, name: web}\n  total: {requestsPerSecond: 1}\n")},
		{name: "target only", yaml: rl(target)},
		{name: "no target", yaml: rl("  total: {requestsPerSecond: 10}\n"),
			wantErr: []string{"spec.targetRef", "Required value"}},
		{name: "target not a Server", yaml: rl("  targetRef: {group: apps, kind: Deployment, name: web}\n"),
			wantErr: []string{"spec.targetRef", "targetRef must be a Server"}},
		{name: "total zero", yaml: rl(target + "  total: {requestsPerSecond: 0}\n"),
			wantErr: []string{"spec.total.requestsPerSecond", "requestsPerSecond must be at least 1"}},
		{name: "identity negative", yaml: rl(target + "  identity: {requestsPerSecond: -5}\n"),
			wantErr: []string{"spec.identity.requestsPerSecond", "requestsPerSecond must be at least 1"}},
		{name: "total too large", yaml: rl(target + "  total: {requestsPerSecond: 1000001}\n"),
			wantErr: []string{"spec.total.requestsPerSecond", "at most 1000000"}},
		{name: "override zero", yaml: rl(target + "  overrides:\n  - requestsPerSecond: 0\n" + sa),
			wantErr: []string{"spec.overrides[0].requestsPerSecond", "overrides[].requestsPerSecond must be at least 1"}},
		{name: "identity above total", yaml: rl(target + "  total: {requestsPerSecond: 10}\n  identity: {requestsPerSecond: 11}\n"),
			wantErr: []string{"spec", "identity.requestsPerSecond must not exceed total.requestsPerSecond"}},
		{name: "override above total", yaml: rl(target + "  total: {requestsPerSecond: 10}\n  overrides:\n  - requestsPerSecond: 20\n" + sa),
			wantErr: []string{"spec", "overrides[].requestsPerSecond must not exceed total.requestsPerSecond"}},
		{name: "client not a ServiceAccount", yaml: rl(target + "  overrides:\n  - requestsPerSecond: 5\n    clientRefs:\n" +
			"      targetRefs: [{group: apps, kind: Deployment, name: batch}]\n"),
			wantErr: []string{"spec.overrides[0].clientRefs.targetRefs[0]", "must be a ServiceAccount"}},
		{name: "override without clients", yaml: rl(target + "  overrides:\n  - requestsPerSecond: 5\n    clientRefs: {targetRefs: []}\n"),
			wantErr: []string{"spec.overrides[0].clientRefs.targetRefs", "should have at least 1 items"}},
	})
}
