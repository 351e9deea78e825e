// Command orch-worker is the orch worker agent: what `orchd agent --worker`
// runs, in a binary that links none of the control plane, so a worker
// machine spends less memory on it. See internal/workercmd.
package main

import (
	"os"

	"orch.dev/orch/internal/workercmd"
)

func main() { os.Exit(workercmd.Main(os.Args, os.Stderr)) }
