// Command orchctl is the orch command line client. See package cli.
package main

import (
	"os"

	"orch.dev/orch/cli"
)

func main() { os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
