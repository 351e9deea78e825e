package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// listPeers asks a for list-peers; nil when it cannot answer right now
// (callers poll).
func listPeers(t *testing.T, a *Agent) []Peer {
	t.Helper()
	code, body := do(t, a, "GET", "/v1/operator/raft/peers", "", "")
	if code != 200 {
		t.Logf("list peers: %d %s", code, body)
		return nil
	}
	var peers []Peer
	if err := json.Unmarshal([]byte(body), &peers); err != nil {
		t.Fatal(err)
	}
	return peers
}

// list-peers reports each server's health as the leader sees it, through
// any server; a server that stays gone for the dead-server cleanup time is
// removed from the Raft configuration, and not before.
func TestDeadServerHealthAndCleanup(t *testing.T) {
	const grace = 1500 * time.Millisecond
	c := startCluster(t, 3, "", func(cfg *Config) { cfg.HA.DeadServerCleanup = grace })
	createConfigMaps(t, c, "x", 3)
	f := c.follower()
	c.waitFor("every server healthy in list-peers", func() bool {
		peers := listPeers(t, f) // answered by the leader
		for _, p := range peers {
			if p.Healthy == nil || !*p.Healthy || p.Status != StatusAlive || p.Lag == nil || *p.Lag > maxHealthyLag ||
				p.LastContactMs == nil || p.AppliedIndex == nil || *p.AppliedIndex == 0 {
				return false
			}
		}
		return len(peers) == 3
	})

	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	c.waitFor("the stopped server shown unhealthy", func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		for _, p := range listPeers(t, l) {
			if p.ID == f.cfg.Name {
				return p.Healthy != nil && !*p.Healthy && (p.Status == StatusLeft || p.Status == StatusDead)
			}
		}
		return false
	})
	c.waitFor("the dead server removed from the Raft configuration", func() bool {
		l := c.leader()
		return l != nil && len(listPeers(t, l)) == 2
	})
	if d := time.Since(gone); d < grace {
		t.Fatalf("removed %s after it stopped, before the cleanup time of %s", d, grace)
	}
	for i, a := range c.agents {
		if a != f && strings.Contains(c.logs[i].String(), "removing dead server from the Raft configuration") {
			return
		}
	}
	t.Error("no server logged the removal")
}
