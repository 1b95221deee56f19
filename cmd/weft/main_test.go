package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// weft runs the CLI in-process and returns its exit code, stdout and stderr.
func weft(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errw)
	return code, out.String(), errw.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run go test ./cmd/weft -update to create it): %v", path, err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update after checking the change):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(no line differs)"
}

// The golden files are the reviewed output of `weft inject` and `weft uninject` on
// real-world manifests.
func TestGolden(t *testing.T) {
	cases := []struct {
		name   string
		input  string
		report []string
	}{
		{"deployment with an init container", "deployment-init-containers.yaml", []string{"deployment/web injected"}},
		{"cronjob with per-pod annotations", "cronjob.yaml", []string{"cronjob/report injected"}},
		{"statefulset", "statefulset.yaml", []string{"statefulset/redis injected"}},
		{"multi-document with ConfigMap, Namespace, Service and a disabled Pod", "multi-document.yaml",
			[]string{"deployment/api injected", "pod/debug-shell skipped: the pod has weft.dev/inject: disabled"}},
		{"List with a host-network ReplicaSet", "list.yaml",
			[]string{"daemonset/node-agent injected", "replicaset/worker skipped: the pod uses the host network", "job/backfill injected"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join("testdata", tc.input)
			code, injected, stderr := weft(t, "", "inject", in)
			if code != 0 {
				t.Fatalf("weft inject exited %d: %s", code, stderr)
			}
			for _, r := range tc.report {
				if !strings.Contains(stderr, r) {
					t.Errorf("stderr %q lacks %q", stderr, r)
				}
			}
			golden(t, filepath.Join("testdata", "golden", strings.TrimSuffix(tc.input, ".yaml")+".injected.yaml"), injected)

			// Injecting again changes nothing: the output is byte for byte the input.
			code, again, stderr := weft(t, injected, "inject", "-")
			if code != 0 || again != injected {
				t.Errorf("re-injecting changed the output (exit %d, %s):\n%s", code, stderr, lineDiff(injected, again))
			}

			code, uninjected, stderr := weft(t, injected, "uninject")
			if code != 0 {
				t.Fatalf("weft uninject exited %d: %s", code, stderr)
			}
			golden(t, filepath.Join("testdata", "golden", strings.TrimSuffix(tc.input, ".yaml")+".uninjected.yaml"), uninjected)
			original, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			assertSameObjects(t, string(original), uninjected)
		})
	}
}

// assertSameObjects compares two YAML streams as data, ignoring the
// serviceAccountName: default that injection makes explicit (the API server would set
// it anyway).
func assertSameObjects(t *testing.T, want, got string) {
	t.Helper()
	wd, gd := decodeAll(t, want), decodeAll(t, got)
	if len(wd) != len(gd) {
		t.Fatalf("%d documents, want %d", len(gd), len(wd))
	}
	for i := range wd {
		dropDefaultServiceAccount(gd[i])
		wb, _ := yaml.Marshal(wd[i])
		gb, _ := yaml.Marshal(gd[i])
		if !bytes.Equal(wb, gb) {
			t.Errorf("document %d differs after inject then uninject:\n%s", i+1, lineDiff(string(wb), string(gb)))
		}
	}
}

func decodeAll(t *testing.T, s string) []any {
	t.Helper()
	var out []any
	dec := yaml.NewDecoder(strings.NewReader(s))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decoding: %v", err)
		}
		if v != nil {
			out = append(out, v)
		}
	}
}

func dropDefaultServiceAccount(v any) {
	switch m := v.(type) {
	case map[string]any:
		if m["serviceAccountName"] == "default" {
			delete(m, "serviceAccountName")
		}
		for _, c := range m {
			dropDefaultServiceAccount(c)
		}
	case []any:
		for _, c := range m {
			dropDefaultServiceAccount(c)
		}
	}
}

// Documents injection does not change come out byte for byte, comments included.
func TestUntouchedDocumentsAreCopied(t *testing.T) {
	in := "# leading comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}   # odd spacing kept\ndata:\n  b: \"2\"\n  a: '1'\n"
	code, out, stderr := weft(t, in, "inject")
	if code != 0 || out != in {
		t.Fatalf("exit %d (%s), output:\n%s\nwant the input unchanged", code, stderr, out)
	}
}

func TestBadInput(t *testing.T) {
	valid := "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: a, image: a}]\n"
	cases := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		want     []string
	}{
		{"invalid YAML in the third document", valid + "---\n" + valid + "---\nkind: Pod\n  spec: [\n", []string{"inject"}, 1,
			[]string{"document 3", "starting at line 13", "invalid YAML", "nothing was written"}},
		{"duplicate key", valid + "---\nkind: Pod\nkind: Service\n", []string{"inject"}, 1, []string{"document 2", "already defined"}},
		{"malformed annotation", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      annotations:\n        config.weft.dev/proxy-uid: root\n    spec:\n      containers: [{name: a, image: a}]\n",
			[]string{"inject"}, 1, []string{"document 1 (deployment/web)", "config.weft.dev/proxy-uid", "root"}},
		{"workload without its template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n", []string{"inject"}, 1,
			[]string{"deployment/web", "spec.template"}},
		{"missing file", "", []string{"inject", "testdata/does-not-exist.yaml"}, 1, []string{"does-not-exist.yaml"}},
		{"unknown flag", "", []string{"inject", "--colour"}, 2, []string{"colour"}},
		{"unknown command", "", []string{"stats"}, 2, []string{"unknown command"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := weft(t, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if out != "" {
				t.Errorf("wrote %d bytes to stdout, want nothing:\n%s", len(out), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

// Several files come out as one stream, in order.
func TestSeveralFiles(t *testing.T) {
	code, out, stderr := weft(t, "", "inject", "-q", "testdata/statefulset.yaml", "testdata/cronjob.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("-q still reported: %q", stderr)
	}
	docs := decodeAll(t, out)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2", len(docs))
	}
	for i, kind := range []string{"StatefulSet", "CronJob"} {
		if got := docs[i].(map[string]any)["kind"]; got != kind {
			t.Errorf("document %d is a %v, want %s", i+1, got, kind)
		}
	}
}

// --mesh takes the proxy defaults from a Mesh manifest, defaulting what it leaves out.
func TestMeshFile(t *testing.T) {
	dir := t.TempDir()
	mesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("apiVersion: mesh.weft.dev/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  trustDomain: example.org\n  proxy:\n    image: registry.example/weft-proxy:9.9.9\n    logLevel: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := weft(t, "", "inject", "--mesh", mesh, "testdata/statefulset.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"image: registry.example/weft-proxy:9.9.9", "--log-level=warn", "spiffe://example.org/ns/", "weft.dev/proxy-version: 9.9.9", "--admin-port=4191"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	if err := os.WriteFile(mesh, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: default}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := weft(t, "", "inject", "--mesh", mesh, "testdata/statefulset.yaml"); code != 1 || !strings.Contains(stderr, "want Mesh") {
		t.Errorf("a ConfigMap as --mesh: exit %d, stderr %q", code, stderr)
	}
}
