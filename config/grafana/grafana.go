// Package grafana holds Weft's Grafana dashboards (JSON, one file each: the mesh, a
// namespace, a workload, its routes, the control plane) and the reader its tests and
// the e2e suite use to get every panel's PromQL. The dashboards read the labels of
// config/prometheus's scrape configuration (job, namespace, pod, deployment) and the
// proxies' own (direction, authority, dst_*, rt_route, ...): docs/observability.md.
package grafana

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Files are the dashboards, *.json.
//
//go:embed *.json
var Files embed.FS

// Dashboard is what Weft reads of a Grafana dashboard.
type Dashboard struct {
	File       string
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a template variable ($namespace, $deployment, $datasource).
type Variable struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Panel is a panel; a row holds its collapsed panels in Panels.
type Panel struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

// Query is one panel query, named for messages.
type Query struct {
	Dashboard, Panel, RefID, Expr string
}

// Load parses every dashboard of Files.
func Load() ([]Dashboard, error) {
	names, err := fs.Glob(Files, "*.json")
	if err != nil {
		return nil, err
	}
	var out []Dashboard
	for _, n := range names {
		b, err := Files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", n, err)
		}
		d.File = path.Base(n)
		out = append(out, d)
	}
	return out, nil
}

// Queries are the dashboard's panel queries, rows' collapsed panels included.
func (d *Dashboard) Queries() []Query {
	var out []Query
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Dashboard: d.File, Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Expand substitutes template variables in a query, as Grafana does before it sends
// the query: $name, ${name} and [[name]] from vars, and Grafana's own interval
// variables ($__rate_interval, $__interval, $__range) from interval.
func Expand(expr string, vars map[string]string, interval string) string {
	pairs := []string{"$__rate_interval", interval, "${__rate_interval}", interval, "$__interval", interval, "$__range", interval}
	for k, v := range vars {
		pairs = append(pairs, "${"+k+"}", v, "[["+k+"]]", v, "$"+k, v)
	}
	return strings.NewReplacer(pairs...).Replace(expr)
}
