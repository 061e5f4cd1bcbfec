// Command weftctl is Weft's CLI (like istioctl): apply, get, delete and
// validate config, and inspect proxies. All logic lives in internal/cli.
package main

import (
	"os"

	"github.com/weftmesh/weft/internal/cli"
)

func main() { os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
