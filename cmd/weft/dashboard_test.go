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

package main

import (
	"strings"
	"testing"
)

// Bad input to weft dashboard is refused before any cluster access, with a reason.
func TestDashboardBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, `unknown command "extra" for "weft dashboard"`},
		{[]string{"--port", "70000"}, "--port must be 0-65535"},
		{[]string{"--port", "-1"}, "--port must be 0-65535"},
	} {
		var stdout, stderr strings.Builder
		if code := run(append([]string{"dashboard"}, tc.args...), nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("weft dashboard %q: code %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
