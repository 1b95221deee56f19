// Command weft is Weft's command line; it also works as the kubectl plugin
// kubectl-weft. The command tree is built in root.go, its subcommands listed in
// commands.go.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
