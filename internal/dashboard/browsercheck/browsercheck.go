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

// Package browsercheck loads every page of a running Weft dashboard in headless
// Chromium (Debian's chromium, driven with chromedp), checks that live data renders and
// that the console stays clean, and saves a screenshot of each page. Both the envtest
// test of internal/dashboard and the e2e TestDashboard on the local cluster use it.
package browsercheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/weftmesh/weft/internal/testenv"
)

// TapWithin is how soon the tap view must show its first live row.
const TapWithin = 5 * time.Second

func pageWait(name string) time.Duration {
	if name == "tap" {
		return TapWithin
	}
	return 60 * time.Second
}

// Chromium returns the browser's path ($CHROMIUM, else chromium on PATH). Without
// one the test is skipped, except under CI (CI set), where it fails: .ci/run installs it.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// ResultsDir is where screenshots go: $E2E_RESULTS/dashboard/<label>, else
// test/e2e/results/dashboard/<label> in the repository (CI keeps test/e2e/results).
func ResultsDir(t testing.TB, label string) string {
	t.Helper()
	base := os.Getenv("E2E_RESULTS")
	if base == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(root, "test", "e2e", "results")
	}
	dir := filepath.Join(base, "dashboard", label)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Run checks the dashboard at baseURL for the demo application in namespace ns (web,
// backend, grpc and load, config/demo): every page renders without console errors or
// warnings, web has a non-zero RPS, the call graph has load -> web -> backend and grpc,
// and the tap view started on deploy/web shows a live row within TapWithin.
// With WEFT_DOCS_IMAGES=1 the screenshots are also written to docs/images.
func Run(ctx context.Context, t *testing.T, baseURL, ns, label string) {
	t.Helper()
	RunFromSource(ctx, t, baseURL, ns, label, "")
}

// RunFromSource is Run that also requires the workloads page to say its golden metrics
// come from source ("prometheus" or "proxies"; "" checks nothing).
func RunFromSource(ctx context.Context, t *testing.T, baseURL, ns, label, source string) {
	t.Helper()
	chromium := Chromium(t)
	results := ResultsDir(t, label)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 800), chromedp.Flag("disable-dev-shm-usage", true))
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var consoleMu sync.Mutex
	var consoleErrors []string
	must(chromedp.Listen(bctx, func(ev any) {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == "error" || e.Type == "warning" {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value))
				}
				consoleErrors = append(consoleErrors, "console."+string(e.Type)+": "+strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			consoleErrors = append(consoleErrors, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				consoleErrors = append(consoleErrors, "log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	}))
	_, err := chromedp.Call(bctx, cdplog.Enable, cdp.Empty{})
	must(err)
	_, err = chromedp.Call(bctx, runtime.Enable, cdp.Empty{})
	must(err)

	pages := []struct {
		name, hash, loaded, wait string
		want                     []string
	}{
		{"namespaces", "#/namespaces", "namespaces", "table", []string{ns}},
		{"workloads", "#/ns/" + ns, "ns", "#workloads", []string{"deploy/web", "deploy/load"}},
		{"graph", "#/graph/" + ns, "graph", "#graph", []string{ns + "/deploy/web"}},
		{"routes", "#/routes/" + ns, "routes", "h2", nil},
		{"health", "#/health", "health", "#certs", []string{ns + "/web-", "Mesh"}},
		// The tap view starts a tap of deploy/web from its URL and shows live rows.
		{"tap", "#/tap/" + ns + "/deploy/web", "tap", "#tap-events tbody tr", []string{"stopped after"}},
	}
	for _, pg := range pages {
		start := time.Now()
		if err := chromedp.Do(bctx, chromedp.Navigate(baseURL+"/"+pg.hash)); err != nil {
			t.Fatalf("page %s: %v", pg.name, err)
		}
		wctx, wcancel := context.WithTimeout(bctx, pageWait(pg.name))
		err := chromedp.Do(wctx, chromedp.WaitVisible(`main[data-loaded="`+pg.loaded+`"] `+pg.wait))
		wcancel()
		if err != nil {
			status, _ := chromedp.Run(bctx, chromedp.Text("main"))
			t.Fatalf("page %s: %v; the page says:\n%s", pg.name, err, status)
		}
		if pg.name == "tap" {
			t.Logf("the tap view showed its first live row %v after it opened", time.Since(start).Round(time.Millisecond))
			checkTap(t, bctx)
		}
		text, err := chromedp.Run(bctx, chromedp.Text("main"))
		must(err)
		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		must(err)
		for _, w := range pg.want {
			if !strings.Contains(text, w) {
				t.Errorf("page %s lacks %q:\n%s", pg.name, w, text)
			}
		}
		must(os.WriteFile(filepath.Join(results, pg.name+".png"), shot, 0o644))
		if os.Getenv("WEFT_DOCS_IMAGES") == "1" {
			root, _ := testenv.RepoRoot()
			must(os.WriteFile(filepath.Join(root, "docs", "images", "dashboard-"+pg.name+".png"), shot, 0o644))
		}
	}

	// The workload row of web shows a non-zero inbound RPS (the third column).
	must(chromedp.Do(bctx, chromedp.Navigate(baseURL+"/#/ns/"+ns), chromedp.WaitVisible(`main[data-loaded="ns"] #workloads`)))
	webRPS, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(([...document.querySelectorAll("#workloads tr")].find(r => r.cells[0].textContent === "deploy/web") || {cells: []}).cells[2] || {}).textContent || ""`))
	must(err)
	if v, err := strconv.ParseFloat(webRPS, 64); err != nil || v <= 0 {
		t.Errorf("deploy/web's RPS in the page = %q, want > 0", webRPS)
	}
	if source != "" {
		shown, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[document.getElementById("updated").dataset.source, document.getElementById("updated").textContent]`))
		must(err)
		if len(shown) != 2 || shown[0] != source {
			t.Errorf("the workloads page shows its data source as %q, want %q", shown, source)
		}
	}
	// The call graph has the demo's edges, drawn as SVG.
	must(chromedp.Do(bctx, chromedp.Navigate(baseURL+"/#/graph/"+ns), chromedp.WaitVisible(`main[data-loaded="graph"] #graph`)))
	edges, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#graph g.edge")].map(g => g.dataset.from + " -> " + g.dataset.to).sort()`))
	must(err)
	seen := map[string]bool{}
	for _, e := range edges {
		if seen[e] {
			t.Errorf("the call graph draws %s twice: %q", e, edges)
		}
		seen[e] = true
	}
	have := strings.Join(edges, ",")
	for _, want := range []string{ns + "/load -> " + ns + "/web", ns + "/web -> " + ns + "/backend", ns + "/web -> " + ns + "/grpc"} {
		if !strings.Contains(have, want) {
			t.Errorf("the call graph lacks %s; it has %q", want, edges)
		}
	}
	consoleMu.Lock()
	defer consoleMu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("browser console errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
	t.Logf("deploy/web at %s RPS in the page; graph edges %q; screenshots in %s", webRPS, edges, results)
}

// checkTap lets a running tap view gather a few rows, checks its status line, stops it
// with its Stop button and checks that the rows stay and stop changing.
func checkTap(t *testing.T, bctx context.Context) {
	t.Helper()
	rows := func() int {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#tap-events tbody tr").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := 0; i < 30 && rows() < 8; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	status, err := chromedp.Run(bctx, chromedp.Text("#tap-status"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(status, "tapping deployments/web in ") {
		t.Errorf("the tap view's status is %q, want it tapping deployments/web", status)
	}
	if err := chromedp.Do(bctx, chromedp.Click("#tap-stop")); err != nil {
		t.Fatal(err)
	}
	before := rows()
	time.Sleep(500 * time.Millisecond)
	if after := rows(); after != before || before == 0 {
		t.Errorf("after Stop the tap view has %d then %d rows, want the same rows, not none", before, after)
	}
}
