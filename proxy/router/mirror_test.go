package router

import (
	"math"
	"testing"

	"github.com/weftmesh/weft/proxy/api"
)

func TestCompileMirrors(t *testing.T) {
	mirror := func(key, invalid string, num, den uint32) *api.Filter {
		return &api.Filter{Kind: &api.Filter_RequestMirror{RequestMirror: &api.RequestMirror{Backend: key, Invalid: invalid, Numerator: num, Denominator: den}}}
	}
	cfg := &api.DestinationConfig{
		Backends: []*api.Backend{{Key: "shop/web:80"}, {Key: "shop/shadow:80"}},
		Routes: []*api.Route{{
			Name: "r",
			Filters: []*api.Filter{
				{Kind: &api.Filter_RequestHeaderModifier{RequestHeaderModifier: &api.HeaderModifier{Remove: []string{"x"}}}},
				mirror("shop/shadow:80", "", 1, 3),
				mirror("shop/unknown:80", "", 0, 0),
				mirror("", "BackendNotFound: Service shop/gone does not exist", 0, 0),
			},
			Backends: []*api.WeightedBackend{{Backend: "shop/web:80", Weight: 1, Filters: []*api.Filter{mirror("shop/shadow:80", "", 0, 0)}}},
		}},
	}
	tab, errs := Compile(cfg)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rt := tab.Routes[0]
	if len(rt.Filters) != 1 || rt.Filters[0].RequestHeaders == nil {
		t.Errorf("the header modifier must stay the only request filter, got %d", len(rt.Filters))
	}
	if len(rt.Mirrors) != 3 {
		t.Fatalf("got %d route mirrors, want 3", len(rt.Mirrors))
	}
	if m := rt.Mirrors[0]; m.Key != "shop/shadow:80" || m.Config == nil || m.Invalid != "" {
		t.Errorf("mirror 0: %+v", m)
	}
	if m := rt.Mirrors[1]; m.Config != nil || m.Invalid != `unknown backend "shop/unknown:80"` {
		t.Errorf("mirror 1: %+v", m)
	}
	if m := rt.Mirrors[2]; m.Config != nil || m.Invalid != "BackendNotFound: Service shop/gone does not exist" {
		t.Errorf("mirror 2: %+v", m)
	}
	if bm := rt.Backends[0].Mirrors; len(bm) != 1 || bm[0].Config == nil {
		t.Errorf("backend mirrors: %+v", bm)
	}
}

func TestMirrorSample(t *testing.T) {
	const n = 30000
	for _, tc := range []struct {
		name     string
		num, den uint32
		want     float64
	}{
		{"all", 0, 0, 1}, {"none", 0, 100, 0}, {"n == d", 5, 5, 1}, {"n > d", 7, 5, 1},
		{"half", 50, 100, 0.5}, {"a third", 1, 3, 1.0 / 3}, {"1 in 1000", 1, 1000, 0.001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Mirror{num: tc.num, den: tc.den}
			hits := 0
			for range n {
				if m.Sample() {
					hits++
				}
			}
			got := float64(hits) / n
			// Exact at the ends; within 5 standard deviations elsewhere.
			tol := 0.0
			if tc.want > 0 && tc.want < 1 {
				tol = 5 * math.Sqrt(tc.want*(1-tc.want)/n)
			}
			if got < tc.want-tol || got > tc.want+tol {
				t.Errorf("sampled %.4f, want %.4f ± %.4f", got, tc.want, tol)
			}
		})
	}
}
