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

package gitops_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/testenv"
)

// The three judges a GitOps user has, each run the way its tool runs it:
//   - kstatus (sigs.k8s.io/cli-utils), what Flux and `kubectl wait`-style tools use for
//     any kind without an expression of its own;
//   - Flux's healthCheckExprs, CEL expressions shipped in config/gitops/flux, evaluated
//     with cel-go under Flux's rules (below);
//   - Argo CD's health scripts, Lua shipped in config/gitops/argocd, run with gopher-lua
//     (the interpreter Argo CD embeds) under Argo CD's calling convention (below).

// verdicts is what each judge says of one object.
type verdicts struct {
	KStatus string // kstatus: Current, InProgress, Failed, ...
	Flux    string // Flux with Weft's healthCheckExprs: Current, InProgress, Failed, Unknown
	ArgoCD  string // Argo CD with Weft's scripts: Healthy, Progressing, Degraded, ...
}

func (v verdicts) String() string {
	return fmt.Sprintf("kstatus=%s flux=%s argocd=%s", v.KStatus, v.Flux, v.ArgoCD)
}

type judges struct {
	flux map[schema.GroupKind]*fluxCheck
	argo map[schema.GroupKind]string
}

// judge returns the three verdicts on an object, and each judge's message.
func (j *judges) judge(t *testing.T, u *unstructured.Unstructured) (verdicts, string) {
	t.Helper()
	var v verdicts
	var msgs []string
	res, err := status.Compute(u)
	if err != nil {
		v.KStatus = "Error"
		msgs = append(msgs, "kstatus: "+err.Error())
	} else {
		v.KStatus = res.Status.String()
		msgs = append(msgs, "kstatus: "+res.Message)
	}
	gk := u.GroupVersionKind().GroupKind()
	if fc, ok := j.flux[gk]; ok {
		st, msg := fc.evaluate(u)
		v.Flux = st.String()
		msgs = append(msgs, "flux: "+msg)
	} else {
		v.Flux = "NoExpression"
	}
	if script, ok := j.argo[gk]; ok {
		st, msg, err := argoHealth(u, script)
		if err != nil {
			v.ArgoCD = "Error"
			msg = err.Error()
		} else {
			v.ArgoCD = st
		}
		msgs = append(msgs, "argocd: "+msg)
	} else {
		v.ArgoCD = "NoScript"
	}
	return v, strings.Join(msgs, " | ")
}

// loadJudges reads the shipped Flux expressions and renders the shipped Argo CD
// customizations with the repository's kustomize, as a user would.
func loadJudges(t *testing.T) *judges {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	j := &judges{flux: map[schema.GroupKind]*fluxCheck{}, argo: map[schema.GroupKind]string{}}

	data, err := os.ReadFile(filepath.Join(root, "config", "gitops", "flux", "weft-kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ks struct {
		Spec struct {
			HealthCheckExprs []fluxExprs `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &ks); err != nil {
		t.Fatal(err)
	}
	for _, e := range ks.Spec.HealthCheckExprs {
		fc, err := newFluxCheck(e)
		if err != nil {
			t.Fatalf("healthCheckExprs %s %s: %v", e.APIVersion, e.Kind, err)
		}
		gk := schema.FromAPIVersionAndKind(e.APIVersion, e.Kind).GroupKind()
		if _, dup := j.flux[gk]; dup {
			t.Fatalf("healthCheckExprs: %s twice (Flux refuses duplicates)", gk)
		}
		j.flux[gk] = fc
	}

	objs, err := testenv.Kustomize(filepath.Join("config", "gitops", "argocd"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" || objs[0].GetName() != "argocd-cm" || objs[0].GetNamespace() != "argocd" {
		t.Fatalf("config/gitops/argocd renders %d objects, want the argocd-cm ConfigMap in argocd", len(objs))
	}
	cmData, _, _ := unstructured.NestedStringMap(objs[0].Object, "data")
	const prefix = "resource.customizations.health."
	for key, script := range cmData {
		groupKind, ok := strings.CutPrefix(key, prefix)
		if !ok {
			t.Fatalf("argocd-cm key %q is not a health customization", key)
		}
		group, kind, ok := strings.Cut(groupKind, "_")
		if !ok {
			t.Fatalf("argocd-cm key %q is not <group>_<kind>", key)
		}
		j.argo[schema.GroupKind{Group: group, Kind: kind}] = script
	}
	return j
}

// fluxExprs is one entry of a Flux Kustomization's spec.healthCheckExprs.
type fluxExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	InProgress string `json:"inProgress,omitempty"`
	Failed     string `json:"failed,omitempty"`
}

// fluxCheck evaluates one kind's expressions the way Flux's kustomize-controller does
// (fluxcd/pkg/runtime/cel, read for its semantics):
//   - an object whose status.observedGeneration differs from metadata.generation is
//     InProgress, and no expression is evaluated;
//   - then inProgress, failed and current are evaluated in that order, each only if
//     set (current is required), and the first that is true decides;
//   - none true: InProgress;
//   - an expression that fails to evaluate (a field that does not exist) makes the
//     status reader report Unknown, as cli-utils' generic status reader does with any
//     error, and Flux keeps waiting.
//
// The expressions are parsed, not type-checked, with the object's top-level fields as
// the variables (status, spec, metadata), in Flux's environment: homogeneous aggregate
// literals, cross-type numeric comparisons, optional types, UTC, and the strings, sets
// and encoders extensions.
type fluxCheck struct {
	inProgress, failed, current cel.Program
}

func newFluxCheck(e fluxExprs) (*fluxCheck, error) {
	if e.Current == "" {
		return nil, fmt.Errorf("current is required")
	}
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	compile := func(expr string) (cel.Program, error) {
		if expr == "" {
			return nil, nil
		}
		ast, iss := env.Parse(expr)
		if iss != nil && iss.Err() != nil {
			return nil, fmt.Errorf("parsing %q: %w", expr, iss.Err())
		}
		return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	}
	fc := &fluxCheck{}
	if fc.inProgress, err = compile(e.InProgress); err != nil {
		return nil, err
	}
	if fc.failed, err = compile(e.Failed); err != nil {
		return nil, err
	}
	if fc.current, err = compile(e.Current); err != nil {
		return nil, err
	}
	return fc, nil
}

func (fc *fluxCheck) evaluate(u *unstructured.Unstructured) (status.Status, string) {
	obj := u.UnstructuredContent()
	if og, ok, err := unstructured.NestedInt64(obj, "status", "observedGeneration"); err == nil && ok {
		if g, ok, err := unstructured.NestedInt64(obj, "metadata", "generation"); err == nil && ok && og != g {
			return status.InProgressStatus, "observedGeneration differs from generation"
		}
	}
	for _, e := range []struct {
		name string
		prog cel.Program
		st   status.Status
	}{
		{"inProgress", fc.inProgress, status.InProgressStatus},
		{"failed", fc.failed, status.FailedStatus},
		{"current", fc.current, status.CurrentStatus},
	} {
		if e.prog == nil {
			continue
		}
		val, _, err := e.prog.ContextEval(context.Background(), obj)
		if err != nil {
			return status.UnknownStatus, fmt.Sprintf("%s: %v", e.name, err)
		}
		b, ok := val.(types.Bool)
		if !ok {
			return status.UnknownStatus, fmt.Sprintf("%s is not a boolean", e.name)
		}
		if b {
			return e.st, e.name + " is true"
		}
	}
	return status.InProgressStatus, "no expression is true"
}

// argoHealth runs a health script the way Argo CD runs one from argocd-cm
// (util/lua in argo-cd, read for its semantics): a fresh interpreter without the
// standard libraries, then only package, base and table opened (Argo CD also opens
// a reduced os library, which these scripts do not use; leaving it out makes a script
// that did fail here), a one-second deadline, the object as the global obj (maps as
// tables, lists as 1-based tables, every number a Lua number), and the script's return
// value a table whose status must be one of Argo CD's health codes.
func argoHealth(u *unstructured.Unstructured, script string) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, u.Object))
	if err := l.DoString(script); err != nil {
		return "", "", fmt.Errorf("running the health script: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the health script returned %s, not a table", l.Get(-1).Type())
	}
	st := lua.LVAsString(ret.RawGetString("status"))
	msg := lua.LVAsString(ret.RawGetString("message"))
	switch st {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return st, msg, nil
	}
	return "", "", fmt.Errorf("the health script returned status %q, which Argo CD turns into Unknown", st)
}

func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		tbl := l.CreateTable(len(x), 0)
		for _, item := range x {
			tbl.Append(toLua(l, item))
		}
		return tbl
	case map[string]any:
		tbl := l.CreateTable(0, len(x))
		for k, item := range x {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
