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

// Package budget holds the cost budget that `make test` enforces (issue 19, item 4):
// memory per subscription of the destination service and allocations per request
// through a proxy pair, each measured at small scale and compared with the figure
// committed in bench/budget.json. A change that moves a figure by more than the
// tolerance fails here, when it lands, rather than at the next bench run.
//
// Both directions fail. Growth is the regression this exists for. Shrinking by more
// than the tolerance fails too: the figures are exact counts (allocations) or stable
// to a few percent (heap per subscription), so a 20% drop is a deliberate improvement,
// and unless the better figure is committed the next change may give it all back
// without tripping anything. Committing it is one command (UPDATE_BUDGET=1).
package budget

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// budgetPath is bench/budget.json from this package's directory (go test runs a
// package's tests in its directory).
const budgetPath = "../../bench/budget.json"

// updateEnv names the environment variable that rewrites the measured figures into
// budgetPath instead of checking them.
const updateEnv = "UPDATE_BUDGET"

// defaultTolerance is the relative change a figure may make either way before the
// test fails, when the file does not say.
const defaultTolerance = 0.20

// budgetFile is bench/budget.json.
type budgetFile struct {
	Comment string `json:"comment,omitempty"`
	// Tolerance is the relative change allowed either way (0.2 = 20%).
	Tolerance float64            `json:"tolerance"`
	Figures   map[string]*figure `json:"figures"`
}

// figure is one committed measurement.
type figure struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// What is measured and how, for whoever reads the file.
	What string `json:"what"`
	// Measured is the UTC date and Commit the commit (git describe of the tree, with
	// -dirty when it had uncommitted changes) the value was measured on.
	Measured string `json:"measured"`
	Commit   string `json:"commit"`
	// GoVersion is the toolchain that measured it: a new Go release can move the
	// figures, and this says whether it did.
	GoVersion string `json:"go_version,omitempty"`
}

// fileMu serialises the read-modify-write of budgetPath in update mode.
var fileMu sync.Mutex

func readBudget() (*budgetFile, error) {
	b, err := os.ReadFile(budgetPath)
	if err != nil {
		return nil, err
	}
	var f budgetFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", budgetPath, err)
	}
	if f.Tolerance <= 0 {
		f.Tolerance = defaultTolerance
	}
	return &f, nil
}

// checkFigure compares a measured value with the committed one and returns what is
// wrong, or "" when it is within the tolerance. It is separate from the measuring so
// that TestCheckFigureTrips can prove the guard without a regression to measure.
func checkFigure(name string, got float64, f *budgetFile) string {
	c, ok := f.Figures[name]
	if !ok || c.Value <= 0 {
		return fmt.Sprintf("%s: no committed figure in bench/budget.json (measured %.1f); record it with `%s=1 go test ./test/budget -count=1`", name, got, updateEnv)
	}
	change := (got - c.Value) / c.Value
	how := fmt.Sprintf("measured %.1f %s against %.1f committed on %s at %s (tolerance ±%.0f%%, change %+.1f%%)",
		got, c.Unit, c.Value, c.Measured, c.Commit, f.Tolerance*100, change*100)
	switch {
	case change > f.Tolerance:
		return fmt.Sprintf("%s GREW: %s. Find what added the cost (see docs/performance-history.md, \"Cost budget\"); if the growth is deliberate and worth it, commit the new figure with `%s=1 go test ./test/budget -count=1` and say why in the commit message", name, how, updateEnv)
	case change < -f.Tolerance:
		return fmt.Sprintf("%s SHRANK: %s. Good; commit the better figure with `%s=1 go test ./test/budget -count=1` so the budget keeps it", name, how, updateEnv)
	}
	return ""
}

// enforce logs the figure (one line CI logs can grep: "budget: <name> ...") and then
// either records it (UPDATE_BUDGET=1) or checks it against the committed one.
func enforce(t *testing.T, name, unit, what string, got float64) {
	t.Helper()
	fileMu.Lock()
	defer fileMu.Unlock()
	if os.Getenv(updateEnv) != "" {
		f, err := readBudget()
		if os.IsNotExist(err) {
			f, err = &budgetFile{Tolerance: defaultTolerance}, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Figures == nil {
			f.Figures = map[string]*figure{}
		}
		f.Figures[name] = &figure{
			Value: math.Round(got*10) / 10, Unit: unit, What: what,
			Measured: time.Now().UTC().Format(time.DateOnly), Commit: gitCommit(), GoVersion: runtime.Version(),
		}
		f.Comment = "Cost budget checked by test/budget in make test; see docs/performance-history.md (Cost budget). Update with UPDATE_BUDGET=1 go test ./test/budget."
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(budgetPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("budget: %s = %.1f %s (recorded in bench/budget.json)", name, got, unit)
		return
	}
	if raceEnabled {
		t.Skipf("budget: %s = %.1f %s under -race, not compared (the race detector's instrumentation changes both figures)", name, got, unit)
	}
	f, err := readBudget()
	if err != nil {
		t.Fatalf("reading the committed budget: %v", err)
	}
	c := f.Figures[name]
	committed := 0.0
	if c != nil {
		committed = c.Value
	}
	// The one-line summary, printed whether or not the test fails.
	fmt.Printf("budget: %s = %.1f %s (committed %.1f, tolerance ±%.0f%%)\n", name, got, unit, committed, f.Tolerance*100)
	t.Logf("budget: %s = %.1f %s (committed %.1f)", name, got, unit, committed)
	if msg := checkFigure(name, got, f); msg != "" {
		t.Error(msg)
	}
}

// gitCommit names the tree the figure was measured on: the commit, with "-dirty" when
// tracked files other than bench/budget.json (which recording rewrites) differ from it.
func gitCommit() string {
	out, err := exec.Command("git", "-C", "../..", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", "../..", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/budget.json").Output()
	if err != nil || len(bytes.TrimSpace(st)) > 0 {
		commit += "-dirty"
	}
	return commit
}

// TestCheckFigureTrips proves the comparison: 21% more or less than the committed
// figure fails with a message naming the figure, both values and the update command;
// 19% either way passes.
func TestCheckFigureTrips(t *testing.T) {
	f := &budgetFile{Tolerance: 0.2, Figures: map[string]*figure{
		"x": {Value: 100, Unit: "allocs", Measured: "2026-12-05", Commit: "abc"},
	}}
	for _, tc := range []struct {
		got  float64
		want string
	}{
		{121, "x GREW: measured 121.0 allocs against 100.0 committed on 2026-12-05 at abc"},
		{79, "x SHRANK: measured 79.0 allocs against 100.0"},
		{119, ""},
		{81, ""},
		{100, ""},
	} {
		msg := checkFigure("x", tc.got, f)
		if tc.want == "" && msg != "" || tc.want != "" && !strings.Contains(msg, tc.want) {
			t.Errorf("checkFigure(%v) = %q, want it to contain %q", tc.got, msg, tc.want)
		}
		if tc.want != "" && !strings.Contains(msg, "UPDATE_BUDGET=1 go test ./test/budget") {
			t.Errorf("checkFigure(%v) = %q: does not say how to update the budget", tc.got, msg)
		}
	}
	if msg := checkFigure("missing", 5, f); !strings.Contains(msg, "no committed figure") {
		t.Errorf("a missing figure: got %q", msg)
	}
}
