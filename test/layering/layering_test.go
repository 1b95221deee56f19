package layering

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/weftmesh/weft"

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func loadRules(t *testing.T, root string) []Rule {
	t.Helper()
	rules, err := LoadRules(filepath.Join(root, ".golangci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestLayering is the rerunnable evidence: the module's real import graph against the
// rules of .golangci.yml. A failure names the rule, the file and the edge.
func TestLayering(t *testing.T) {
	root := moduleRoot(t)
	rules := loadRules(t, root)
	g, err := LoadGraph(root)
	if err != nil {
		t.Fatal(err)
	}
	// A graph that lost the proxy or the controllers would pass every rule.
	for _, p := range []string{mod + "/proxy/cli", mod + "/controllers", mod + "/apis/mesh/v1alpha1"} {
		if pkg := g.Packages[p]; pkg == nil || len(pkg.Files) == 0 {
			t.Fatalf("the graph has no files for %s", p)
		}
	}
	vs, err := Check(rules, g)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Errorf("forbidden edge %s", v)
	}
}

// TestRulesFire feeds each rule a synthetic graph: every forbidden edge below must be
// reported by the rule named, with the rule's message, and every allowed edge must not.
// Each rule of .golangci.yml must be shown to fire at least once, so a rule whose
// globs match nothing (a moved folder) fails here.
func TestRulesFire(t *testing.T) {
	root := "/src/weft"
	rules := loadRules(t, moduleRoot(t))
	type edge struct {
		file, pkg, imp string
		// rule is the rule that must report it; "" means no rule may.
		rule string
		// via, for a dependency path, is the package whose import is denied.
		via string
	}
	edges := []edge{
		// proxy
		{"proxy/cli/cli.go", "proxy/cli", "k8s.io/client-go/kubernetes", "proxy", ""},
		{"proxy/cli/cli.go", "proxy/cli", "sigs.k8s.io/controller-runtime/pkg/client", "proxy", ""},
		{"proxy/cli/cli.go", "proxy/cli", mod + "/internal/compiler", "proxy", ""},
		{"proxy/cli/cli.go", "proxy/cli", mod + "/controllers", "proxy", ""},
		{"proxy/cli/cli.go", "proxy/cli", mod + "/webhooks", "proxy", ""},
		{"cmd/weft-proxy/main.go", "cmd/weft-proxy", mod + "/apis/mesh/v1alpha1", "proxy", ""},
		{"cmd/weft-init/main.go", "cmd/weft-init", "k8s.io/apimachinery/pkg/types", "proxy", ""},
		{"cmd/weft-init/main.go", "cmd/weft-init", mod + "/internal/iptables", "", ""},
		{"proxy/cli/cli.go", "proxy/cli", mod + "/internal/svcname", "", ""},
		{"proxy/cli/cli.go", "proxy/cli", mod + "/proxy/api", "", ""},
		{"proxy/cli/cli.go", "proxy/cli", "github.com/go-logr/logr", "", ""},
		// Tests may drive the proxy against the real control plane.
		{"proxy/discovery/client_test.go", "proxy/discovery", mod + "/internal/compiler", "", ""},
		// Through a package no rule covers: proxy/admin -> proxy/metrics -> client-go.
		{"proxy/admin/admin.go", "proxy/admin", mod + "/proxy/metrics", "proxy", "k8s.io/client-go/rest"},
		// The weft controller is no proxy.
		{"cmd/weft-controller/main.go", "cmd/weft-controller", "sigs.k8s.io/controller-runtime", "", ""},

		// proxy-discovery
		{"proxy/discovery/target.go", "proxy/discovery", mod + "/proxy/server", "proxy-discovery", ""},

		// protocols
		{"proxy/internal/h2/server.go", "proxy/internal/h2", "github.com/go-logr/logr", "protocols", ""},
		{"proxy/internal/h2/server.go", "proxy/internal/h2", mod + "/proxy/router", "protocols", ""},
		{"proxy/internal/h1/client.go", "proxy/internal/h1", mod + "/proxy/server", "protocols", ""},
		{"proxy/internal/h1/client.go", "proxy/internal/h1", "golang.org/x/sync/errgroup", "protocols", ""},
		{"proxy/internal/h1/client.go", "proxy/internal/h1", "google.golang.org/protobuf/proto", "protocols", ""},
		{"proxy/internal/h2/server.go", "proxy/internal/h2", "golang.org/x/net/http2/hpack", "", ""},
		{"proxy/internal/h2/server.go", "proxy/internal/h2", mod + "/proxy/internal/h1", "", ""},
		{"proxy/internal/h2/server.go", "proxy/internal/h2", "net/http", "", ""},
		{"proxy/internal/h2/conformance_test.go", "proxy/internal/h2", "github.com/summerwind/h2spec/spec", "", ""},

		// apis
		{"apis/mesh/v1alpha1/mesh_types.go", "apis/mesh/v1alpha1", "k8s.io/client-go/rest", "apis", ""},
		{"apis/mesh/v1alpha1/mesh_types.go", "apis/mesh/v1alpha1", "sigs.k8s.io/controller-runtime/pkg/client", "apis", ""},
		{"apis/mesh/v1alpha1/mesh_types.go", "apis/mesh/v1alpha1", mod + "/internal/validation", "apis", ""},
		{"apis/policy/v1alpha1/server_types.go", "apis/policy/v1alpha1", "sigs.k8s.io/gateway-api/apis/v1", "apis", ""},
		{"apis/mesh/v1alpha1/mesh_types.go", "apis/mesh/v1alpha1", "k8s.io/apimachinery/pkg/apis/meta/v1", "", ""},
		{"apis/mesh/v1alpha1/mesh_types.go", "apis/mesh/v1alpha1", "k8s.io/api/core/v1", "", ""},
		{"apis/mesh/v1alpha1/groupversion_info.go", "apis/mesh/v1alpha1", "sigs.k8s.io/controller-runtime/pkg/scheme", "", ""},
		{"apis/split/v1alpha2/types.go", "apis/split/v1alpha2", mod + "/apis/mesh/v1alpha1", "", ""},
		{"apis/samples_test.go", "apis", mod + "/internal/testenv", "", ""},

		// shared-contracts
		{"internal/grpcwire/frame.go", "internal/grpcwire", mod + "/proxy/api", "shared-contracts", ""},
		{"internal/svcname/svcname.go", "internal/svcname", "k8s.io/apimachinery/pkg/util/validation", "shared-contracts", ""},
		{"internal/peertls/verify.go", "internal/peertls", "github.com/go-logr/logr", "shared-contracts", ""},
		{"internal/meshdefaults/defaults.go", "internal/meshdefaults", "strings", "", ""},
		{"internal/promtext/promtext_test.go", "internal/promtext", "github.com/prometheus/common/expfmt", "", ""},

		// internal-no-consumers, test files included
		{"internal/localmesh/localmesh.go", "internal/localmesh", mod + "/controllers", "internal-no-consumers", ""},
		{"internal/destination/server_test.go", "internal/destination", mod + "/webhooks", "internal-no-consumers", ""},
		{"internal/identity/identity.go", "internal/identity", mod + "/cmd/weft-controller", "internal-no-consumers", ""},
		{"internal/destination/server.go", "internal/destination", mod + "/internal/identity", "", ""},

		// compiler-not-injector
		{"internal/compiler/compiler.go", "internal/compiler", mod + "/internal/inject", "compiler-not-injector", ""},
		{"internal/destination/store.go", "internal/destination", mod + "/internal/inject", "compiler-not-injector", ""},
		{"controllers/mesh_controller.go", "controllers", mod + "/internal/inject", "", ""},
	}

	g := &Graph{Root: root, Packages: map[string]*Package{}}
	for _, e := range edges {
		p := g.Packages[mod+"/"+e.pkg]
		if p == nil {
			p = &Package{Path: mod + "/" + e.pkg, Files: map[string][]string{}}
			g.Packages[p.Path] = p
		}
		p.Files[root+"/"+e.file] = append(p.Files[root+"/"+e.file], e.imp)
		if e.via != "" {
			g.Packages[e.imp] = &Package{Path: e.imp, Imports: []string{e.via}}
		}
	}
	vs, err := Check(rules, g)
	if err != nil {
		t.Fatal(err)
	}
	descs := map[string]map[string]string{}
	for _, r := range rules {
		descs[r.Name] = map[string]string{}
		for _, d := range r.Deny {
			descs[r.Name][d.Pkg] = d.Desc
		}
	}
	fired := map[string]bool{}
	for _, e := range edges {
		target := e.imp
		if e.via != "" {
			target = e.via
		}
		var got []Violation
		for _, v := range vs {
			if v.Chain[0] == mod+"/"+e.pkg && v.Chain[len(v.Chain)-1] == target {
				got = append(got, v)
			}
		}
		name := e.file + " -> " + target
		switch {
		case e.rule == "" && len(got) > 0:
			t.Errorf("%s: allowed edge reported: %v", name, got)
		case e.rule == "":
		case !slices.ContainsFunc(got, func(v Violation) bool { return v.Rule == e.rule }):
			t.Errorf("%s: rule %s did not fire (got %v)", name, e.rule, got)
		default:
			fired[e.rule] = true
			for _, v := range got {
				if v.Rule == e.rule && v.Desc == "" && len(descs[e.rule]) > 0 && hasDenyFor(descs[e.rule], target) {
					t.Errorf("%s: reported without the rule's message", name)
				}
			}
		}
	}
	for _, r := range rules {
		if !fired[r.Name] {
			t.Errorf("rule %s has no edge in this test that shows it fires", r.Name)
		}
	}
}

func hasDenyFor(deny map[string]string, imp string) bool {
	for pkg := range deny {
		if strings.HasPrefix(imp, pkg) {
			return true
		}
	}
	return false
}

// TestRulesAreUnambiguous: depguard compares an import with only the nearest entry of
// a sorted list, so an entry that is a prefix of another entry of the same list could
// hide it; then depguard and this package would disagree. Every deny entry must also
// carry a message that says what to do.
func TestRulesAreUnambiguous(t *testing.T) {
	for _, r := range loadRules(t, moduleRoot(t)) {
		var deny []string
		for _, d := range r.Deny {
			deny = append(deny, d.Pkg)
			if strings.TrimSpace(d.Desc) == "" {
				t.Errorf("rule %s: deny %s has no desc", r.Name, d.Pkg)
			}
		}
		for _, list := range [][]string{r.Allow, deny} {
			for _, a := range list {
				for _, b := range list {
					if a != b && !strings.HasPrefix(a, "$") && strings.HasPrefix(b, a) {
						t.Errorf("rule %s: entry %q is a prefix of %q", r.Name, a, b)
					}
				}
			}
		}
	}
}

// TestGlob pins the file-glob translation the rules rely on.
func TestGlob(t *testing.T) {
	tests := []struct {
		glob, file string
		want       bool
	}{
		{"/m/proxy/**", "/m/proxy/server/server.go", true},
		{"/m/proxy/**", "/m/proxyish/a.go", false},
		{"/m/proxy/**", "/x/m/proxy/a.go", false},
		{"**/*_test.go", "/m/proxy/a_test.go", true},
		{"**/*_test.go", "/m/proxy/a.go", false},
		{"/m/*.go", "/m/a/b.go", false},
		{"/m/a?.go", "/m/ab.go", true},
	}
	for _, tt := range tests {
		re, err := globRegexp(tt.glob)
		if err != nil {
			t.Fatal(err)
		}
		if got := re.MatchString(tt.file); got != tt.want {
			t.Errorf("glob %s on %s = %v, want %v", tt.glob, tt.file, got, tt.want)
		}
	}
	if _, err := globRegexp("/m/{a,b}/**"); err == nil {
		t.Error("an unsupported glob was accepted")
	}
}
