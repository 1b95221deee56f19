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

// TestHTTPFaultSchema: each rule refuses a bad fault with a message naming the field,
// on a real API server.
func TestHTTPFaultSchema(t *testing.T) {
	f := func(spec string) string {
		return "apiVersion: mesh.weft.dev/v1alpha1\nkind: HTTPFault\nmetadata:\n  name: f\n  namespace: default\nspec:\n" + spec
	}
	runSchemaCases(t, []schemaCase{
		{name: "abort and delay", yaml: f("  abort: {httpStatus: 503, percentage: 10}\n  delay: {fixedDelay: 1.5s, percentage: 100}\n")},
		{name: "grpc abort", yaml: f("  abort: {grpcStatus: 14, percentage: 0}\n")},
		{name: "nothing", yaml: f("  {}\n"), wantErr: []string{"spec", "set abort, delay or both"}},
		{name: "percentage above 100", yaml: f("  abort: {httpStatus: 500, percentage: 101}\n"),
			wantErr: []string{"spec.abort.percentage", "abort.percentage must be from 0 to 100"}},
		{name: "negative percentage", yaml: f("  delay: {fixedDelay: 1s, percentage: -1}\n"),
			wantErr: []string{"spec.delay.percentage", "delay.percentage must be from 0 to 100"}},
		{name: "both statuses", yaml: f("  abort: {httpStatus: 500, grpcStatus: 2, percentage: 5}\n"),
			wantErr: []string{"spec.abort", "exactly one of httpStatus and grpcStatus"}},
		{name: "no status", yaml: f("  abort: {percentage: 5}\n"),
			wantErr: []string{"spec.abort", "exactly one of httpStatus and grpcStatus"}},
		{name: "status 200", yaml: f("  abort: {httpStatus: 200, percentage: 5}\n"),
			wantErr: []string{"spec.abort.httpStatus", "abort.httpStatus must be from 400 to 599"}},
		{name: "grpc status 0", yaml: f("  abort: {grpcStatus: 0, percentage: 5}\n"),
			wantErr: []string{"spec.abort.grpcStatus", "abort.grpcStatus must be from 1 to 16"}},
		{name: "delay not a duration", yaml: f("  delay: {fixedDelay: soon, percentage: 5}\n"),
			wantErr: []string{"spec.delay.fixedDelay", "delay.fixedDelay must be a duration from 1ms to 1h"}},
		{name: "delay above an hour", yaml: f("  delay: {fixedDelay: 2h, percentage: 5}\n"),
			wantErr: []string{"spec.delay.fixedDelay", "delay.fixedDelay must be a duration from 1ms to 1h"}},
	})
}
