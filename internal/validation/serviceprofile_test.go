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
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// wantErrors checks that errs holds exactly one error per entry of want, in order, each
// naming the field (and, after a "|", containing the text) given.
func wantErrors(t *testing.T, errs field.ErrorList, want []string) {
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

func sp(name string, mutate func(*meshv1alpha1.ServiceProfileSpec)) *meshv1alpha1.ServiceProfile {
	p := &meshv1alpha1.ServiceProfile{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func regexRoute(re string) meshv1alpha1.RouteSpec {
	return meshv1alpha1.RouteSpec{Name: "r", Condition: meshv1alpha1.RequestMatch{PathRegex: re}}
}

func overrides(ds ...meshv1alpha1.WeightedDst) func(*meshv1alpha1.ServiceProfileSpec) {
	return func(s *meshv1alpha1.ServiceProfileSpec) { s.DstOverrides = ds }
}

func dst(authority, weight string) meshv1alpha1.WeightedDst {
	return meshv1alpha1.WeightedDst{Authority: authority, Weight: resource.MustParse(weight)}
}

func TestServiceProfile(t *testing.T) {
	nested := regexRoute("")
	nested.Condition = meshv1alpha1.RequestMatch{All: []meshv1alpha1.RequestMatch{{Method: "GET"},
		{Any: []meshv1alpha1.RequestMatch{{PathRegex: "/ok"}, {PathRegex: "/bad/[z-a]"}}}}}
	negated := regexRoute("")
	negated.Condition = meshv1alpha1.RequestMatch{Not: &meshv1alpha1.RequestMatch{Not: &meshv1alpha1.RequestMatch{PathRegex: "("}}}

	cases := []struct {
		name string
		spec func(*meshv1alpha1.ServiceProfileSpec)
		want []string
	}{
		{"empty spec", nil, nil},
		{"valid routes, timeout and budget", func(s *meshv1alpha1.ServiceProfileSpec) {
			r := regexRoute("/books/[^/]*")
			r.Timeout = "300ms"
			s.Routes = []meshv1alpha1.RouteSpec{r}
			s.RetryBudget = &meshv1alpha1.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, TTL: "10s"}
		}, nil},
		{"pathRegex that does not compile", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.Routes = []meshv1alpha1.RouteSpec{regexRoute("/ok"), regexRoute("/books/(")}
		}, []string{"spec.routes[1].condition.pathRegex|not a valid RE2 regular expression"}},
		// Perl look-ahead is not RE2: Linkerd's profiles sometimes carry it.
		{"look-ahead is not RE2", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.Routes = []meshv1alpha1.RouteSpec{regexRoute("/(?!admin).*")}
		}, []string{"spec.routes[0].condition.pathRegex|RE2"}},
		{"nested pathRegex is named by its full path", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.Routes = []meshv1alpha1.RouteSpec{nested}
		}, []string{"spec.routes[0].condition.all[1].any[1].pathRegex|RE2"}},
		{"pathRegex under two nots", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.Routes = []meshv1alpha1.RouteSpec{negated}
		}, []string{"spec.routes[0].condition.not.not.pathRegex|RE2"}},
		{"timeout that does not parse", func(s *meshv1alpha1.ServiceProfileSpec) {
			r := regexRoute("/")
			r.Timeout = "10"
			s.Routes = []meshv1alpha1.RouteSpec{r}
		}, []string{"spec.routes[0].timeout|not a duration"}},
		{"zero timeout", func(s *meshv1alpha1.ServiceProfileSpec) {
			r := regexRoute("/")
			r.Timeout = "0s"
			s.Routes = []meshv1alpha1.RouteSpec{r}
		}, []string{"spec.routes[0].timeout|greater than 0"}},
		{"negative budget ttl", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.RetryBudget = &meshv1alpha1.RetryBudget{TTL: "-1s"}
		}, []string{"spec.retryBudget.ttl|greater than 0"}},
		{"empty budget ttl", func(s *meshv1alpha1.ServiceProfileSpec) {
			s.RetryBudget = &meshv1alpha1.RetryBudget{}
		}, []string{"spec.retryBudget.ttl|not a duration"}},
		{"weights that add up", overrides(dst("web-v1.shop.svc.cluster.local:80", "1"), dst("web-v2.shop.svc.cluster.local:80", "0")), nil},
		{"milli weights add up", overrides(dst("web-v1.shop.svc.cluster.local:80", "100m")), nil},
		{"negative weight", overrides(dst("a.shop.svc.cluster.local", "-1"), dst("b.shop.svc.cluster.local", "2")),
			[]string{"spec.dstOverrides[0].weight|must not be negative"}},
		{"weights that add up to 0", overrides(dst("a.shop.svc.cluster.local", "0"), dst("b.shop.svc.cluster.local", "0")),
			[]string{"spec.dstOverrides|no traffic"}},
		{"every problem at once, in field order", func(s *meshv1alpha1.ServiceProfileSpec) {
			r := regexRoute("(")
			r.Timeout = "soon"
			s.Routes = []meshv1alpha1.RouteSpec{r}
			s.RetryBudget = &meshv1alpha1.RetryBudget{TTL: "0s"}
			s.DstOverrides = []meshv1alpha1.WeightedDst{dst("a.shop.svc.cluster.local", "-1")}
		}, []string{"spec.routes[0].condition.pathRegex", "spec.routes[0].timeout", "spec.retryBudget.ttl",
			"spec.dstOverrides[0].weight", "spec.dstOverrides|no traffic"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantErrors(t, ServiceProfile(sp("web.shop.svc.cluster.local", tc.spec)), tc.want)
		})
	}
}

func TestServiceProfileNames(t *testing.T) {
	cases := []struct {
		name     string
		profile  *meshv1alpha1.ServiceProfile
		domain   string
		want     []string
		wantRefs []ServiceRef
	}{
		{"service FQDN", sp("web.shop.svc.cluster.local", nil), "cluster.local", nil,
			[]ServiceRef{{field.NewPath("metadata", "name"), types.NamespacedName{Namespace: "shop", Name: "web"}}}},
		{"service FQDN in the configured cluster domain", sp("web.shop.svc.corp.example", nil), "corp.example", nil,
			[]ServiceRef{{field.NewPath("metadata", "name"), types.NamespacedName{Namespace: "shop", Name: "web"}}}},
		{"cluster.local is not the cluster domain here", sp("web.shop.svc.cluster.local", nil), "corp.example",
			[]string{"metadata.name|looks like a Service name"}, nil},
		{"external DNS name refers to no Service", sp("api.example.com", nil), "cluster.local", nil, nil},
		{"too many labels before .svc", sp("a.web.shop.svc.cluster.local", nil), "cluster.local",
			[]string{"metadata.name|<service>.<namespace>"}, nil},
		{"svc without the cluster domain", sp("web.shop.svc", nil), "cluster.local",
			[]string{"metadata.name|looks like a Service name"}, nil},
		{"overrides refer to Services and external names", sp("web.shop.svc.cluster.local",
			overrides(dst("web-v2.shop.svc.cluster.local:80", "1"), dst("backup.example.com:443", "1"), dst("web-v3.other.svc.cluster.local", "1"))),
			"cluster.local", nil, []ServiceRef{
				{field.NewPath("metadata", "name"), types.NamespacedName{Namespace: "shop", Name: "web"}},
				{field.NewPath("spec", "dstOverrides").Index(0).Child("authority"), types.NamespacedName{Namespace: "shop", Name: "web-v2"}},
				{field.NewPath("spec", "dstOverrides").Index(2).Child("authority"), types.NamespacedName{Namespace: "other", Name: "web-v3"}},
			}},
		{"override with a bad port", sp("api.example.com", overrides(dst("web-v2:http", "1"))), "cluster.local",
			[]string{"spec.dstOverrides[0].authority|between 1 and 65535"}, nil},
		{"override that is not fully qualified", sp("api.example.com", overrides(dst("web-v2:80", "1"))), "cluster.local",
			[]string{"spec.dstOverrides[0].authority|fully qualified"}, nil},
		{"a bad name does not hide a bad override", sp("Web", overrides(dst("a:b:c", "1"))), "cluster.local",
			[]string{"metadata.name|DNS name", "spec.dstOverrides[0].authority|host or host:port"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs, refs := ServiceProfileNames(tc.profile, tc.domain)
			wantErrors(t, errs, tc.want)
			if len(refs) != len(tc.wantRefs) {
				t.Fatalf("refs = %v, want %v", refs, tc.wantRefs)
			}
			for i := range refs {
				if refs[i].Path.String() != tc.wantRefs[i].Path.String() || refs[i].Key != tc.wantRefs[i].Key {
					t.Errorf("ref %d = %s %s, want %s %s", i, refs[i].Path, refs[i].Key, tc.wantRefs[i].Path, tc.wantRefs[i].Key)
				}
			}
		})
	}
}
