package main

import (
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "empty", in: nil, want: 0},
		{name: "one", in: []float64{3}, want: 3},
		{name: "odd ignores the outlier", in: []float64{0.2, 9.5, 0.3}, want: 0.3},
		{name: "even averages the middle two", in: []float64{4, 1, 3, 2}, want: 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := median(tt.in); got != tt.want {
				t.Fatalf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatalf("median reordered its input: %v", tt.in)
				}
			}
		})
	}
}

func TestAddDeltas(t *testing.T) {
	rows := []row{
		{Setup: "direct", RPS: 1000, P50: 0.2, P99: 1.0},
		{Setup: "weft", RPS: 1000, P50: 0.35, P99: 1.5},
		{Setup: "direct", RPS: 5000, P50: 0.3, P99: 2.0},
		{Setup: "weft", RPS: 5000, P50: 0.25, P99: 4.0},
	}
	addDeltas(rows)
	tests := []struct {
		name            string
		i               int
		wantP50, want99 float64
	}{
		{name: "direct is its own baseline", i: 0, wantP50: 0, want99: 0},
		{name: "weft at 1000 against direct at 1000", i: 1, wantP50: 0.15, want99: 0.5},
		{name: "a faster run gives a negative delta, not zero", i: 3, wantP50: -0.05, want99: 2.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rows[tt.i]
			if r.AddedP50 != tt.wantP50 || r.AddedP99 != tt.want99 {
				t.Fatalf("added = %v / %v, want %v / %v", r.AddedP50, r.AddedP99, tt.wantP50, tt.want99)
			}
		})
	}
}

// The /proc readers run against this very process, which certainly uses CPU and
// memory.
func TestProcStat(t *testing.T) {
	pid := os.Getpid()
	buf := make([]byte, 32<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	cpu, err := cpuSeconds(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("cpuSeconds = %v after touching 32 MiB, want > 0", cpu)
	}
	rss, err := peakRSSMB(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 32 {
		t.Errorf("peak RSS %.1f MB with a 32 MiB buffer live, want at least 32", rss)
	}
	// The buffer is anonymous memory; the test binary's own pages are not.
	anon, err := anonRSSMB(pid)
	if err != nil {
		t.Fatal(err)
	}
	if anon < 32 || anon > rss {
		t.Errorf("anonymous RSS %.1f MB with a 32 MiB buffer live and a peak of %.1f MB, want between", anon, rss)
	}
	runtime.KeepAlive(buf)
	if err := resetPeakRSS(pid); err != nil {
		t.Fatal(err)
	}
	if _, err := peakRSSMB(pid); err != nil {
		t.Fatal(err)
	}
	if _, err := cpuSeconds(1 << 30); err == nil {
		t.Error("cpuSeconds of a pid that cannot exist succeeded")
	}
}

// nginx works in forked workers; their CPU and memory count only if processTree finds
// them.
func TestProcessTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var tree []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if tree, err = processTree(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if len(tree) == 3 {
			break
		}
	}
	if len(tree) != 3 || tree[0] != cmd.Process.Pid {
		t.Fatalf("processTree(sh) = %v, want sh and its two sleeps", tree)
	}
	if _, err := treeCPUSeconds(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := treePeakRSSMB(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := treeAnonRSSMB(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

func TestAddRatios(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rows := []row{
		{Setup: "weft", RPS: 1000, AddedP50: 0.3, AddedP99: 1.0, CPUPer1k: f(0.15), RSSPeakMB: f(18), MaxRPS: 10000},
		{Setup: "haproxy", RPS: 1000, AddedP50: 0.6, AddedP99: 0.5, CPUPer1k: f(0.1), RSSPeakMB: f(20), MaxRPS: 12500},
		{Setup: "nginx", RPS: 1000, AddedP50: -0.01, AddedP99: 2.0, CPUPer1k: f(0.3), RSSPeakMB: f(9), MaxRPS: 8000},
		{Setup: "haproxy", RPS: 5000, AddedP50: 0.1, AddedP99: 0.1, CPUPer1k: f(0.1), RSSPeakMB: f(20), MaxRPS: 12500},
	}
	addRatios(rows)
	got := rows[0].WeftRatioTo
	if len(got) != 2 {
		t.Fatalf("ratios to %v, want haproxy and nginx (caddy did not run)", got)
	}
	tests := []struct {
		name string
		got  *float64
		want float64 // < 0: null
	}{
		{"haproxy added p50", got["haproxy"].AddedP50, 0.5},
		{"haproxy added p99", got["haproxy"].AddedP99, 2},
		{"haproxy cpu", got["haproxy"].CPUPer1k, 1.5},
		{"haproxy rss", got["haproxy"].RSSPeak, 0.9},
		{"haproxy max rps", got["haproxy"].MaxRPS, 0.8},
		{"a peer's added latency within the noise gives no ratio", got["nginx"].AddedP50, -1},
		{"nginx added p99", got["nginx"].AddedP99, 0.5},
		{"nginx rss", got["nginx"].RSSPeak, 2},
	}
	for _, tt := range tests {
		switch {
		case tt.want < 0 && tt.got != nil:
			t.Errorf("%s = %v, want null", tt.name, *tt.got)
		case tt.want >= 0 && (tt.got == nil || *tt.got != tt.want):
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	for _, r := range rows[1:] {
		if r.WeftRatioTo != nil {
			t.Errorf("%s row has ratios: only weft rows do", r.Setup)
		}
	}
}

// TestSetupPortsDistinct: every setup runs beside the others, so no two may listen on
// the same port. (weft-tap and weft-trace1 once shared base 17000, and the default
// run failed to open the tap.)
func TestSetupPortsDistinct(t *testing.T) {
	seen := map[int]string{traceCollectorAddrPort(t): "the trace collector", 18080: "the echo server"}
	add := func(port int, who string) {
		if other, ok := seen[port]; ok {
			t.Errorf("port %d: %s and %s", port, other, who)
		}
		seen[port] = who
	}
	for name, base := range map[string]int{"weft": weftBase, "weft-tcp": weftTCPBase, "weft-trace1": weftTrace1Base,
		"weft-trace100": weftTrace100Base, "weft-tap": weftTapBase} {
		for _, side := range []int{0, 10000} {
			for _, off := range []int{140, 143, 190, 191} {
				add(base+side+off, name)
			}
		}
	}
	for name, port := range map[string]int{"haproxy client": haproxyClientPort, "haproxy server": haproxyServerPort,
		"nginx client": nginxClientPort, "nginx server": nginxServerPort, "caddy client": caddyClientPort, "caddy server": caddyServerPort} {
		add(port, name)
	}
}

func traceCollectorAddrPort(t *testing.T) int {
	ap, err := netip.ParseAddrPort(traceCollectorAddr)
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}
