// Package layering checks the package layering that .golangci.yml states as depguard
// rules, without golangci-lint: it reads the same rules from that file, builds the
// import graph with `go list -deps` and go/parser, and reports every forbidden edge.
//
// It applies the rules as depguard does (per file, the same file globs and list modes)
// and goes one step further: a rule's deny entries are also followed through the
// dependencies of the files it covers, so `proxy -> X -> client-go` fails even when X
// itself is covered by no rule. depguard only sees the direct edge.
package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rule is one depguard rule of .golangci.yml.
type Rule struct {
	Name     string
	ListMode string   `yaml:"list-mode"`
	Files    []string `yaml:"files"`
	Allow    []string `yaml:"allow"`
	Deny     []struct {
		Pkg  string `yaml:"pkg"`
		Desc string `yaml:"desc"`
	} `yaml:"deny"`
}

// LoadRules reads the depguard rules of a golangci-lint v2 configuration, sorted by name.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lint config: %w", err)
	}
	var cfg struct {
		Linters struct {
			Settings struct {
				Depguard struct {
					Rules map[string]Rule `yaml:"rules"`
				} `yaml:"depguard"`
			} `yaml:"settings"`
		} `yaml:"linters"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var rules []Rule
	for name, r := range cfg.Linters.Settings.Depguard.Rules {
		r.Name = name
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s has no depguard rules", path)
	}
	slices.SortFunc(rules, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	return rules, nil
}

// Package is one package of the graph.
type Package struct {
	Path     string
	Standard bool
	// Files maps each Go file (absolute path) of a package of the module to the import
	// paths it names; empty for packages outside the module.
	Files map[string][]string
	// Imports are the package's non-test imports, for following dependencies.
	Imports []string
}

// Graph is the import graph: the module's packages with their files, and every
// package they depend on.
type Graph struct {
	Root     string // the module's directory, for ${base-path}
	Packages map[string]*Package
}

// Violation is one forbidden edge.
type Violation struct {
	Rule string
	File string // the importing file; for a dependency path, the file at its start
	// Chain is the import path from the file's package to the forbidden one; its
	// length is 2 for a direct import.
	Chain []string
	Desc  string
}

func (v Violation) String() string {
	what := "imports"
	if len(v.Chain) > 2 {
		what = "depends on (" + strings.Join(v.Chain[1:len(v.Chain)-1], " -> ") + ")"
	}
	desc := v.Desc
	if desc == "" {
		desc = "not in the rule's allow list"
	}
	return fmt.Sprintf("[%s] %s %s %s: %s", v.Rule, v.File, what, v.Chain[len(v.Chain)-1], desc)
}

// Check applies the rules to the graph.
func Check(rules []Rule, g *Graph) ([]Violation, error) {
	var out []Violation
	for _, r := range rules {
		c, err := compile(r, g.Root)
		if err != nil {
			return nil, err
		}
		for _, p := range sortedPackages(g) {
			for _, file := range sortedKeys(p.Files) {
				if !c.coversFile(file) {
					continue
				}
				for _, imp := range p.Files[file] {
					if ok, desc := c.allowed(imp, isStd(g, imp)); !ok {
						out = append(out, Violation{Rule: r.Name, File: rel(g.Root, file), Chain: []string{p.Path, imp}, Desc: desc})
						continue
					}
					// The import is allowed: follow it for what the rule denies.
					if chain, desc := c.deniedBelow(g, imp); chain != nil {
						out = append(out, Violation{Rule: r.Name, File: rel(g.Root, file), Chain: append([]string{p.Path}, chain...), Desc: desc})
					}
				}
			}
		}
	}
	return dedupe(out), nil
}

// dedupe keeps one violation per rule, package and forbidden target, the one with the
// shortest chain: a package whose ten files import the same thing is one finding, and a
// direct import hides the paths through other packages to the same target.
func dedupe(vs []Violation) []Violation {
	best := map[string]int{}
	var out []Violation
	for _, v := range vs {
		k := v.Rule + "\x00" + v.Chain[0] + "\x00" + v.Chain[len(v.Chain)-1]
		if i, ok := best[k]; !ok {
			best[k] = len(out)
			out = append(out, v)
		} else if len(v.Chain) < len(out[i].Chain) {
			out[i] = v
		}
	}
	return out
}

type compiled struct {
	Rule
	files, notFiles []*regexp.Regexp
	gostd           bool
	allow           []string
	deny            map[string]string
}

func compile(r Rule, root string) (*compiled, error) {
	c := &compiled{Rule: r, deny: map[string]string{}}
	files := r.Files
	if len(files) == 0 {
		files = []string{"$all"}
	}
	for _, f := range files {
		neg := strings.HasPrefix(f, "!")
		f = strings.TrimPrefix(f, "!")
		switch f {
		case "$all":
			f = "**"
		case "$test":
			f = "**/*_test.go"
		}
		re, err := globRegexp(strings.ReplaceAll(f, "${base-path}", filepath.ToSlash(root)))
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		if neg {
			c.notFiles = append(c.notFiles, re)
		} else {
			c.files = append(c.files, re)
		}
	}
	for _, a := range r.Allow {
		if a == "$gostd" {
			c.gostd = true
			continue
		}
		if strings.HasPrefix(a, "$") {
			return nil, fmt.Errorf("rule %s: unsupported variable %s", r.Name, a)
		}
		c.allow = append(c.allow, a)
	}
	for _, d := range r.Deny {
		if strings.HasPrefix(d.Pkg, "$") {
			return nil, fmt.Errorf("rule %s: unsupported variable %s in deny", r.Name, d.Pkg)
		}
		c.deny[d.Pkg] = d.Desc
	}
	switch r.ListMode {
	case "", "original", "strict", "lax":
	default:
		return nil, fmt.Errorf("rule %s: unknown list-mode %q", r.Name, r.ListMode)
	}
	return c, nil
}

// globRegexp turns a depguard file glob (gobwas/glob with '/' as separator) into a
// regexp: ** crosses directories, * and ? do not. Other glob syntax is refused rather
// than misread.
func globRegexp(g string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch ch := g[i]; ch {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[', ']', '{', '}', '\\':
			return nil, fmt.Errorf("glob %q: %q is not supported by test/layering", g, ch)
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func (c *compiled) coversFile(file string) bool {
	file = filepath.ToSlash(file)
	in := len(c.files) == 0
	for _, re := range c.files {
		in = in || re.MatchString(file)
	}
	for _, re := range c.notFiles {
		if re.MatchString(file) {
			return false
		}
	}
	return in
}

// longest returns the longest entry that is a prefix of imp ("x$": equal to x), or "".
func longest(entries []string, imp string) string {
	best := ""
	for _, e := range entries {
		match := false
		if exact, ok := strings.CutSuffix(e, "$"); ok {
			match = imp == exact
		} else {
			match = strings.HasPrefix(imp, e)
		}
		if match && len(e) > len(best) {
			best = e
		}
	}
	return best
}

// allowed applies the rule's list mode to one import (depguard's semantics, given that
// no entry of a list is a prefix of another; TestRulesAreUnambiguous checks that). The
// standard library counts as an allow entry as long as the import path itself.
func (c *compiled) allowed(imp string, std bool) (bool, string) {
	allow := longest(c.allow, imp)
	if std && c.gostd {
		allow = imp
	}
	denyKey := longest(slices.Collect(maps.Keys(c.deny)), imp)
	inAllow, inDeny := allow != "", denyKey != ""
	var ok bool
	switch c.ListMode {
	case "", "original":
		ok = (inAllow || len(c.allow) == 0 && !c.gostd) && !inDeny
	case "strict":
		ok = inAllow && (!inDeny || len(allow) > len(denyKey))
	case "lax":
		ok = !inDeny || (inAllow && len(allow) > len(denyKey))
	}
	if ok {
		return true, ""
	}
	return false, c.deny[denyKey]
}

// deniedBelow follows the dependencies of pkg (pkg included) and returns the shortest
// import chain to a package the rule's deny list forbids and no longer allow entry
// permits, with that entry's description; nil if there is none. Allow lists are not
// applied to dependencies: x/net may import x/text although a protocol package may not.
func (c *compiled) deniedBelow(g *Graph, pkg string) ([]string, string) {
	denies := slices.Collect(maps.Keys(c.deny))
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if d := longest(denies, cur); d != "" {
			if a := longest(c.allow, cur); len(a) <= len(d) {
				var chain []string
				for p := cur; p != ""; p = prev[p] {
					chain = append([]string{p}, chain...)
				}
				return chain, c.deny[d]
			}
		}
		p := g.Packages[cur]
		if p == nil {
			continue
		}
		for _, next := range p.Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return nil, ""
}

func isStd(g *Graph, imp string) bool {
	if p := g.Packages[imp]; p != nil {
		return p.Standard
	}
	// Not in the graph (a synthetic test graph): a standard library path has no dot in
	// its first element.
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// LoadGraph lists the module at root and its dependencies with `go list -deps`, and
// reads the imports of each of the module's Go files (test files included).
func LoadGraph(root string) (*Graph, error) {
	cmd := exec.Command(goTool(), "list", "-e", "-deps", "-json=ImportPath,Dir,Standard,DepOnly,Module,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	g := &Graph{Root: root, Packages: map[string]*Package{}}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp struct {
			ImportPath, Dir                              string
			Standard, DepOnly                            bool
			Module                                       *struct{ Main bool }
			GoFiles, CgoFiles, TestGoFiles, XTestGoFiles []string
			Imports                                      []string
			Error                                        *struct{ Err string }
		}
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		if lp.Error != nil {
			return nil, fmt.Errorf("go list %s: %s", lp.ImportPath, lp.Error.Err)
		}
		p := &Package{Path: lp.ImportPath, Standard: lp.Standard, Imports: lp.Imports}
		g.Packages[p.Path] = p
		if lp.DepOnly || lp.Module == nil || !lp.Module.Main {
			continue
		}
		p.Files = map[string][]string{}
		for _, name := range slices.Concat(lp.GoFiles, lp.CgoFiles, lp.TestGoFiles, lp.XTestGoFiles) {
			file := filepath.Join(lp.Dir, name)
			imps, err := fileImports(file)
			if err != nil {
				return nil, err
			}
			p.Files[file] = imps
		}
	}
	return g, nil
}

func fileImports(file string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
	if err != nil {
		return nil, fmt.Errorf("parse imports: %w", err)
	}
	var imps []string
	for _, s := range f.Imports {
		p, err := strconv.Unquote(s.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: import %s: %w", file, s.Path.Value, err)
		}
		if p != "C" {
			imps = append(imps, p)
		}
	}
	return imps, nil
}

// goTool is the go command on PATH, or in $GOROOT/bin when PATH has none (go test
// sets GOROOT for the tests it runs).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

func rel(root, file string) string {
	if r, err := filepath.Rel(root, file); err == nil {
		return filepath.ToSlash(r)
	}
	return file
}

func sortedPackages(g *Graph) []*Package {
	var ps []*Package
	for _, p := range g.Packages {
		if len(p.Files) > 0 {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *Package) int { return strings.Compare(a.Path, b.Path) })
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}
