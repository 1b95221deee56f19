package grafana

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/promtext"
)

// The dashboards the issue asks for: the mesh, a namespace, a workload, its routes and
// the control plane.
var wantDashboards = []string{"weft-control-plane", "weft-mesh", "weft-namespace", "weft-route", "weft-workload"}

// Standard series of the controller's Prometheus client (controller-runtime's and
// client_golang's collectors), which the control plane dashboard reads.
var clientLibraryNames = map[string]bool{
	"controller_runtime_reconcile_total": true,
	"workqueue_depth":                    true,
	"go_goroutines":                      true,
	"process_resident_memory_bytes":      true,
	"process_start_time_seconds":         true,
}

// weftNames are the weft_* series names written in the proxy's and the control
// plane's sources (not tests): what a dashboard may read besides Linkerd's names.
func weftNames(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(weft_[a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, root := range []string{"../../proxy", "../../internal"} {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
				names[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !names["weft_destination_subscribers"] || !names["weft_route_retry_total"] {
		t.Fatalf("the source scan found no known weft_* names (%d found): the scan is broken", len(names))
	}
	return names
}

var (
	// Quoted strings, label matchers and grouping clauses hold label names and
	// values, not series names.
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers   = regexp.MustCompile(`\{[^}]*\}`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	rangeSel   = regexp.MustCompile(`\[[^\]]*\]`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames are the series names a PromQL expression selects: identifiers that are
// not functions, keywords, label names or durations.
func metricNames(expr string) []string {
	e := stringLit.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, "{}")
	e = grouping.ReplaceAllString(e, "")
	e = rangeSel.ReplaceAllString(e, "")
	var out []string
	for _, m := range identifier.FindAllStringSubmatch(e, -1) {
		if m[1] != "" || keywords[strings.ToLower(m[0])] {
			continue // a function call, or a keyword
		}
		out = append(out, m[0])
	}
	return out
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (le, namespace) (rate(response_latency_ms_bucket{job="x", a=~"b{c}"}[$__rate_interval])) / on (pod) group_left (x) weft_a or vector(0) - time()`)
	if want := []string{"response_latency_ms_bucket", "weft_a"}; !slices.Equal(got, want) {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
}

// TestDashboards: every dashboard parses, has panels, and every panel that is not a
// row has at least one query; every query names only series Weft exposes (Linkerd's
// proxy names, weft_* names found in the sources, the controller's client library
// series), uses only the dashboard's own template variables, and carries a job
// matcher so it reads Weft's scrape jobs only.
func TestDashboards(t *testing.T) {
	ds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, d := range ds {
		uids = append(uids, d.UID)
	}
	slices.Sort(uids)
	if !slices.Equal(uids, wantDashboards) {
		t.Fatalf("dashboards %v, want %v", uids, wantDashboards)
	}
	weft := weftNames(t)
	known := func(name string) bool {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && (promtext.LinkerdNames[base] || weft[base]) {
				return true
			}
		}
		return promtext.LinkerdNames[name] || weft[name] || clientLibraryNames[name]
	}
	varRef := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	for _, d := range ds {
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		var walk func([]Panel)
		walk = func(ps []Panel) {
			for _, p := range ps {
				if p.Type != "row" && len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", d.File, p.Title)
				}
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) == "" {
						t.Errorf("%s: panel %q query %s is empty", d.File, p.Title, tg.RefID)
					}
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		qs := d.Queries()
		if len(qs) == 0 {
			t.Errorf("%s: no queries", d.File)
		}
		for _, q := range qs {
			names := metricNames(q.Expr)
			if len(names) == 0 {
				t.Errorf("%s: panel %q: no series in %s", d.File, q.Panel, q.Expr)
			}
			for _, n := range names {
				if !known(n) {
					t.Errorf("%s: panel %q reads %s, which Weft does not expose", d.File, q.Panel, n)
				}
			}
			for _, m := range varRef.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("%s: panel %q uses $%s, not a variable of the dashboard", d.File, q.Panel, m[1])
				}
			}
			if !strings.Contains(q.Expr, `job="weft-`) {
				t.Errorf("%s: panel %q does not select a Weft scrape job: %s", d.File, q.Panel, q.Expr)
			}
		}
	}
}

func TestExpand(t *testing.T) {
	got := Expand(`x{namespace="$namespace", d="${deployment}", e="[[deployment]]"}[$__rate_interval]`, map[string]string{"namespace": "weft-demo", "deployment": "web"}, "1m")
	if want := `x{namespace="weft-demo", d="web", e="web"}[1m]`; got != want {
		t.Fatalf("Expand = %s, want %s", got, want)
	}
}
