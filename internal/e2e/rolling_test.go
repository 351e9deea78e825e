package e2e

import (
	"testing"
	"time"

	"orch.dev/orch/internal/testcluster"
)

// The rolling restart (or upgrade) of docs/operations.md under continuous
// client writes: each server in turn, followers first and the leader last,
// is stopped with SIGTERM (the leader hands leadership over first), started
// again, and waited for until it is a caught-up voter. No client write
// fails and every acknowledged write is on every server.
func TestRollingRestartUnderLoad(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	w := startWriters(c.Client(), 8, "roll")
	w.waitFor(t, 200)
	leader := c.Leader()
	var order []*testcluster.Server
	for _, s := range c.Servers {
		if s != leader {
			order = append(order, s)
		}
	}
	order = append(order, leader)
	for _, s := range order {
		s.Stop()
		w.waitFor(t, 100) // the cluster takes writes while s is down
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		c.WaitVoters(3, 30*time.Second)
		w.waitFor(t, 100)
	}
	if l := c.Leader(); l == leader {
		t.Errorf("%s still leads after its own restart", l.Name)
	}
	acked, failed := w.stop()
	for _, err := range failed {
		t.Errorf("client saw a failed write: %v", err)
	}
	t.Logf("%d acknowledged writes through a rolling restart of %d servers, longest stall %s", acked.Len(), len(order), w.maxGap)
	assertEverywhere(t, c, acked)
}
