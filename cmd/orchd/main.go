// Command orchd is the orch agent. See internal/orchd.
package main

import (
	"os"

	"orch.dev/orch/internal/orchd"
)

func main() { os.Exit(orchd.Main(os.Args, os.Stderr)) }
