package inject_test

import (
	"maps"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/weftmesh/weft/internal/inject"
)

// TestScrapeAnnotations: the injector points Prometheus' annotation discovery at the
// proxy's admin port, never overwrites a pod's own prometheus.io/* annotations (they
// describe the application's metrics), and Uninject removes only what it added.
func TestScrapeAnnotations(t *testing.T) {
	cases := []struct {
		name string
		own  map[string]string
		want map[string]string
	}{
		{"no annotations of the pod's own", nil, map[string]string{
			inject.AnnotationPrometheusScrape: "true", inject.AnnotationPrometheusPort: "4191", inject.AnnotationPrometheusPath: "/metrics"}},
		{"the application's own port kept, nothing added", map[string]string{inject.AnnotationPrometheusPort: "8080"},
			map[string]string{inject.AnnotationPrometheusPort: "8080"}},
		{"scraping turned off by the pod stays off", map[string]string{inject.AnnotationPrometheusScrape: "false"},
			map[string]string{inject.AnnotationPrometheusScrape: "false"}},
		{"the application's own path kept", map[string]string{inject.AnnotationPrometheusPath: "/stats"},
			map[string]string{inject.AnnotationPrometheusPath: "/stats"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(maps.Clone(tc.own), nil)
			original := tpl.DeepCopy()
			if errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
				t.Fatal(errs)
			}
			got := map[string]string{}
			for _, k := range []string{inject.AnnotationPrometheusScrape, inject.AnnotationPrometheusPort, inject.AnnotationPrometheusPath} {
				if v, ok := tpl.Annotations[k]; ok {
					got[k] = v
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("prometheus.io annotations %v, want %v", got, tc.want)
			}
			inject.Uninject(tpl)
			if !apiequality.Semantic.DeepEqual(original.Annotations, tpl.Annotations) {
				t.Fatalf("after Uninject annotations %v, want %v", tpl.Annotations, original.Annotations)
			}
		})
	}
	t.Run("the admin port annotation follows the admin-port knob", func(t *testing.T) {
		tpl := template(map[string]string{inject.AnnotationAdminPort: "4291"}, nil)
		if errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
			t.Fatal(errs)
		}
		if p := tpl.Annotations[inject.AnnotationPrometheusPort]; p != "4291" {
			t.Fatalf("prometheus.io/port = %q, want 4291", p)
		}
	})
}
