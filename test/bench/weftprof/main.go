// Command weftprof is weft-proxy with a CPU and heap profile around it, for the proxy
// benchmark: with WEFT_CPUPROFILE=<file> set it profiles from start to exit (SIGTERM
// ends the proxy gracefully, so the profile is complete) and writes the heap profile
// to <file>.heap. Without it, it is weft-proxy.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/weftmesh/weft/proxy/cli"
)

func main() {
	path := os.Getenv("WEFT_CPUPROFILE")
	if path == "" {
		os.Exit(cli.Main(os.Args[1:]))
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weftprof:", err)
		os.Exit(1)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "weftprof:", err)
		os.Exit(1)
	}
	code := cli.Main(os.Args[1:])
	pprof.StopCPUProfile()
	f.Close()
	if h, err := os.Create(path + ".heap"); err == nil {
		runtime.GC()
		_ = pprof.Lookup("heap").WriteTo(h, 0)
		h.Close()
	}
	os.Exit(code)
}
