package chaos

import (
	"os"
	"slices"
	"testing"
)

func TestMain(m *testing.M) {
	HandleSignals()
	os.Exit(m.Run())
}

// DefaultFaults run in every `go test` (and so in `make test`): the ones
// most likely to break consistency, within the time budget of the 2-core
// machine. ORCH_CHAOS=all runs every named fault (`make chaos` does).
var DefaultFaults = []string{"kill-leader", "partition-leader", "pause-leader"}

func runFault(t *testing.T, name string) {
	f, ok := Faults[name]
	if !ok {
		t.Fatalf("no fault %q", name)
	}
	if !slices.Contains(DefaultFaults, name) && os.Getenv("ORCH_CHAOS") != "all" {
		t.Skipf("%s runs with ORCH_CHAOS=all (make chaos)", name)
	}
	Run(t, Scenario{Fault: f})
}

func TestKillLeader(t *testing.T)        { runFault(t, "kill-leader") }
func TestKillFollower(t *testing.T)      { runFault(t, "kill-follower") }
func TestPauseLeader(t *testing.T)       { runFault(t, "pause-leader") }
func TestPartitionLeader(t *testing.T)   { runFault(t, "partition-leader") }
func TestPartitionFollower(t *testing.T) { runFault(t, "partition-follower") }
func TestAsymmetricLeader(t *testing.T)  { runFault(t, "asymmetric-leader") }
func TestDiskFullLeader(t *testing.T)    { runFault(t, "disk-full-leader") }
func TestRestartAll(t *testing.T)        { runFault(t, "restart-all") }
func TestPartitionWorker(t *testing.T)   { runFault(t, "partition-worker") }

// Every named fault has its test above.
func TestEveryFaultHasAScenario(t *testing.T) {
	tested := []string{"kill-leader", "kill-follower", "pause-leader", "partition-leader", "partition-follower",
		"asymmetric-leader", "disk-full-leader", "restart-all", "partition-worker"}
	for _, name := range Names() {
		if !slices.Contains(tested, name) {
			t.Errorf("fault %s has no scenario test", name)
		}
	}
}
