// Package multihost tests the service network of a real multi-host site on
// one machine: three orchd servers on a bridge in the root network
// namespace, two workers each in a network namespace of its own (the
// topology of scripts/demo.sh), all real processes, with a private
// containerd (internal/containerdtest) running the pods. Needs root and
// `scripts/deps.sh runtime`.
package multihost

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"orch.dev/orch/internal/containerdtest"
	"orch.dev/orch/internal/testcluster"
)

var ctrd = &containerdtest.Env{Skip: "-short: not starting containerd"}

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		if why := testcluster.NetRequirements(); why != "" {
			ctrd = &containerdtest.Env{Skip: why}
			return m.Run()
		}
		root, _ := filepath.Abs("../../..")
		e, err := containerdtest.Setup(root)
		defer e.Teardown()
		if err != nil {
			fmt.Fprintln(os.Stderr, "multihost tests:", err)
			return 1
		}
		ctrd = e
		return m.Run()
	}()
	os.Exit(code)
}
