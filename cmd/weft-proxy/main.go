// Command weft-proxy is Weft's data plane sidecar. See docs/proxy.md.
package main

import (
	"os"

	"github.com/weftmesh/weft/proxy/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
