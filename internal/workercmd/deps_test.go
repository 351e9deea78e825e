package workercmd

import (
	"os/exec"
	"strings"
	"testing"
)

// orch-worker links none of the control plane: what it links is what
// every worker machine pays for in memory.
func TestWorkerBinaryLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "orch.dev/orch/cmd/orch-worker").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// A package and everything under it, except that the kubelet checks
	// host ports with the scheduler's predicates, sched/fit.
	forbidden := []string{
		"orch.dev/orch/agent", "orch.dev/orch/fsm", "orch.dev/orch/ctrl",
		"orch.dev/orch/internal/orchd", "orch.dev/orch/node/sim",
		"github.com/hashicorp/raft", "github.com/hashicorp/go-memdb", "go.etcd.io/bbolt",
		"github.com/prometheus/client_golang/prometheus", "testing",
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("orch-worker links %s", d)
			}
		}
		if d == "orch.dev/orch/sched" {
			t.Errorf("orch-worker links the scheduler")
		}
	}
}
