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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splitv1alpha2 "github.com/weftmesh/weft/apis/split/v1alpha2"
)

func split(name, service string, backends ...string) splitv1alpha2.TrafficSplit {
	ts := splitv1alpha2.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: splitv1alpha2.TrafficSplitSpec{Service: service}}
	for _, b := range backends {
		ts.Spec.Backends = append(ts.Spec.Backends, splitv1alpha2.TrafficSplitBackend{Service: b, Weight: 50})
	}
	return ts
}

func TestTrafficSplit(t *testing.T) {
	withMatches := split("canary", "web", "web-v1")
	withMatches.Spec.Matches = []splitv1alpha2.TrafficSplitMatch{{Kind: "HTTPRouteGroup", Name: "a"}, {Kind: "TCPRoute", Name: "b"}}
	cases := []struct {
		name string
		ts   splitv1alpha2.TrafficSplit
		want []string
	}{
		{"plain split", split("canary", "web", "web-v1", "web-v2"), nil},
		{"every match is refused and named", withMatches,
			[]string{"spec.matches[0]|HTTPRouteGroup route groups", "spec.matches[1]|TCPRoute route groups"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantErrors(t, TrafficSplit(&tc.ts), tc.want) })
	}
}

func TestTrafficSplitConflicts(t *testing.T) {
	deleting := split("old", "web", "web-v0")
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	cases := []struct {
		name   string
		others []splitv1alpha2.TrafficSplit
		want   []string
	}{
		{"alone", nil, nil},
		{"itself (an update) is no conflict", []splitv1alpha2.TrafficSplit{split("canary", "web", "web-v1")}, nil},
		{"a split of another Service", []splitv1alpha2.TrafficSplit{split("api", "api", "api-v1")}, nil},
		{"a split being deleted", []splitv1alpha2.TrafficSplit{deleting}, nil},
		{"another split of the same Service", []splitv1alpha2.TrafficSplit{split("api", "api"), split("web-other", "web", "web-v3")},
			[]string{"spec.service|TrafficSplit web-other already splits Service web"}},
		{"each conflicting split is named", []splitv1alpha2.TrafficSplit{split("a", "web"), split("b", "web")},
			[]string{"spec.service|TrafficSplit a already", "spec.service|TrafficSplit b already"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := split("canary", "web", "web-v1", "web-v2")
			wantErrors(t, TrafficSplitConflicts(&ts, tc.others), tc.want)
		})
	}
}

func TestTrafficSplitServices(t *testing.T) {
	cases := []struct {
		name string
		ts   splitv1alpha2.TrafficSplit
		want []string // path=namespace/name
	}{
		{"root then backends", split("canary", "web", "web-v1", "web-v2"),
			[]string{"spec.service=shop/web", "spec.backends[0].service=shop/web-v1", "spec.backends[1].service=shop/web-v2"}},
		{"the root as a backend is listed once", split("canary", "web", "web", "web-v2"),
			[]string{"spec.service=shop/web", "spec.backends[1].service=shop/web-v2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refs := TrafficSplitServices(&tc.ts)
			if len(refs) != len(tc.want) {
				t.Fatalf("got %v, want %v", refs, tc.want)
			}
			for i, r := range refs {
				if got := r.Path.String() + "=" + r.Key.String(); got != tc.want[i] {
					t.Errorf("ref %d = %s, want %s", i, got, tc.want[i])
				}
			}
		})
	}
}
