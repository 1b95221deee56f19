package metrics

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

// processStart is when this process started, for process_start_time_seconds.
var processStart = time.Now()

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// writeProcess writes the standard process_* metrics from /proc/self, so the proxy's
// own cost shows on the same dashboards (Linkerd's proxy exports the same names).
func writeProcess(w *promtext.Writer) {
	w.Family("process_start_time_seconds", promtext.Gauge, "Time that this process started (in seconds since the UNIX epoch).")
	w.Int("process_start_time_seconds", "", processStart.Unix())
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the parenthesised command name; utime and stime are 14 and 15.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) {
			f := bytes.Fields(stat[i+2:])
			if len(f) > 12 {
				u, _ := strconv.ParseUint(string(f[11]), 10, 64)
				s, _ := strconv.ParseUint(string(f[12]), 10, 64)
				w.Family("process_cpu_seconds_total", promtext.Counter, "Total user and system CPU time spent in seconds.")
				w.Float("process_cpu_seconds_total", "", float64(u+s)/clockTicks)
			}
		}
	}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := bytes.Fields(statm)
		if len(f) > 1 {
			pages, _ := strconv.ParseUint(string(f[1]), 10, 64)
			w.Family("process_resident_memory_bytes", promtext.Gauge, "Resident memory size in bytes.")
			w.Uint("process_resident_memory_bytes", "", pages*uint64(os.Getpagesize()))
		}
	}
}
