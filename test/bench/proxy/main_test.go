package main

import (
	"os"
	"runtime"
	"testing"
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
