package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"orch.dev/orch/api"
)

// An in-memory Raft cluster whose nodes each run their own FSM, as the
// servers of an orch control plane do. Faults are injected by cutting
// InmemTransport routes in both directions.

type raftNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	fsm   *FSM
	halts *haltRecorder
	raft  *raft.Raft
}

type raftCluster struct {
	t     *testing.T
	nodes []*raftNode
}

const raftWait = 10 * time.Second

func newRaftCluster(t *testing.T, n int) *raftCluster {
	c := &raftCluster{t: t}
	var servers []raft.Server
	for i := 0; i < n; i++ {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("node%d", i)))
		nd := &raftNode{id: raft.ServerID(addr), addr: addr, trans: trans, halts: &haltRecorder{}}
		nd.fsm = New(Config{Halt: nd.halts.halt})
		c.nodes = append(c.nodes, nd)
		servers = append(servers, raft.Server{ID: nd.id, Address: addr, Suffrage: raft.Voter})
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
	for _, nd := range c.nodes {
		conf := raft.DefaultConfig()
		conf.LocalID = nd.id
		conf.HeartbeatTimeout = 100 * time.Millisecond
		conf.ElectionTimeout = 100 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.SnapshotThreshold = 1 << 30 // snapshots only when a test asks
		conf.SnapshotInterval = time.Hour
		conf.TrailingLogs = 5
		conf.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, store, store, snaps, nd.trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(conf, nd.fsm, store, store, snaps, nd.trans)
		if err != nil {
			t.Fatal(err)
		}
		nd.raft = r
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.raft.Shutdown().Error()
			if h := nd.halts.calls(); len(h) != 0 {
				t.Errorf("%s halted: %v", nd.id, h)
			}
		}
	})
	return c
}

// isolate cuts every route to and from nd.
func (c *raftCluster) isolate(nd *raftNode) {
	nd.trans.DisconnectAll()
	for _, o := range c.nodes {
		o.trans.Disconnect(nd.addr)
	}
}

// heal restores every route between the nodes.
func (c *raftCluster) heal() {
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(raftWait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// leaderOf waits until one of nodes is the leader and returns it.
func (c *raftCluster) leaderOf(nodes ...*raftNode) *raftNode {
	c.t.Helper()
	var leader *raftNode
	eventually(c.t, "a leader", func() bool {
		for _, nd := range nodes {
			if nd.raft.State() == raft.Leader {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

// write proposes cmd through whichever of nodes leads, retrying across
// leader changes, and returns the index of its acknowledged entry.
func (c *raftCluster) write(cmd Command, nodes ...*raftNode) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(raftWait)
	for {
		leader := c.leaderOf(nodes...)
		fut := leader.raft.Apply(Encode(cmd), time.Second)
		err := fut.Error()
		if err == nil {
			res := fut.Response().(*Result)
			// A retry of a create that did commit finds its own object.
			if res.Err != nil && !errors.Is(res.Err, ErrAlreadyExists) {
				c.t.Fatalf("write %T: %v", cmd, res.Err)
			}
			return fut.Index()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("write %T: %v", cmd, err)
		}
	}
}

// waitApplied waits until every node's FSM has applied index.
func waitApplied(t *testing.T, index uint64, nodes ...*raftNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), raftWait)
	defer cancel()
	for _, nd := range nodes {
		if err := nd.fsm.WaitApplied(ctx, index); err != nil {
			t.Fatalf("%s: %v", nd.id, err)
		}
	}
}

// requireObjects fails unless every node's FSM holds every named
// ConfigMap in namespace ns.
func requireObjects(t *testing.T, names []string, nodes ...*raftNode) {
	t.Helper()
	for _, nd := range nodes {
		v := nd.fsm.View()
		for _, name := range names {
			if v.Get(api.ConfigMap, "ns", name) == nil {
				t.Fatalf("%s lost acknowledged write %s", nd.id, name)
			}
		}
	}
}

// requireConverged fails unless the FSMs' snapshots are byte-identical.
func requireConverged(t *testing.T, nodes ...*raftNode) {
	t.Helper()
	first := snapshotBytes(t, nodes[0].fsm.View())
	for _, nd := range nodes[1:] {
		if got := snapshotBytes(t, nd.fsm.View()); !bytes.Equal(got, first) {
			t.Fatalf("%s and %s diverged:\n%s", nodes[0].id, nd.id, firstDiff(dump(nd.fsm.View()), dump(nodes[0].fsm.View())))
		}
	}
}

func (c *raftCluster) others(nd *raftNode) []*raftNode {
	var out []*raftNode
	for _, o := range c.nodes {
		if o != nd {
			out = append(out, o)
		}
	}
	return out
}

func writeConfigMaps(c *raftCluster, prefix string, n int, nodes ...*raftNode) (names []string, last uint64) {
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		last = c.write(createCmd(c.t, configMap("ns", name, map[string]string{"i": fmt.Sprint(i)})), nodes...)
		names = append(names, name)
	}
	return names, last
}

func TestRaftLeaderLoss(t *testing.T) {
	c := newRaftCluster(t, 3)
	c.write(createCmd(t, namespace("ns")), c.nodes...)
	acked, _ := writeConfigMaps(c, "before", 20, c.nodes...)

	old := c.leaderOf(c.nodes...)
	if err := old.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	c.isolate(old)
	survivors := c.others(old)
	if nd := c.leaderOf(survivors...); nd == old {
		t.Fatal("the old leader is still leading")
	}

	more, last := writeConfigMaps(c, "after", 20, survivors...)
	acked = append(acked, more...)
	waitApplied(t, last, survivors...)
	requireObjects(t, acked, survivors...)
	requireConverged(t, survivors...)
}

func TestRaftPartitionAndHeal(t *testing.T) {
	c := newRaftCluster(t, 3)
	c.write(createCmd(t, namespace("ns")), c.nodes...)
	acked, _ := writeConfigMaps(c, "initial", 5, c.nodes...)

	// A follower in a minority of one: the majority keeps committing.
	leader := c.leaderOf(c.nodes...)
	lagging := c.others(leader)[0]
	c.isolate(lagging)
	more, last := writeConfigMaps(c, "minority", 20, c.others(lagging)...)
	acked = append(acked, more...)
	if lagging.fsm.View().Get(api.ConfigMap, "ns", more[0]) != nil {
		t.Fatal("an isolated follower applied a write")
	}
	// Compact the log so that the follower can only catch up by
	// installing a snapshot: FSM.Restore through Raft.
	if err := c.leaderOf(c.others(lagging)...).raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.heal()
	waitApplied(t, last, c.nodes...)
	if lagging.fsm.History().Base() == 0 {
		t.Fatal("the lagging follower caught up without installing a snapshot")
	}
	requireObjects(t, acked, c.nodes...)

	// The leader in a minority of one: its write must not commit.
	leader = c.leaderOf(c.nodes...)
	c.isolate(leader)
	fut := leader.raft.Apply(Encode(createCmd(t, configMap("ns", "lost", nil))), 2*time.Second)
	if err := fut.Error(); err == nil {
		t.Fatalf("an isolated leader committed a write at index %d", fut.Index())
	}
	if leader.fsm.View().Get(api.ConfigMap, "ns", "lost") != nil {
		t.Fatal("an isolated leader applied an uncommitted write")
	}
	majority := c.others(leader)
	if nd := c.leaderOf(majority...); nd == leader {
		t.Fatal("no new leader in the majority")
	}
	more, _ = writeConfigMaps(c, "majority", 10, majority...)
	acked = append(acked, more...)
	if leader.fsm.View().Get(api.ConfigMap, "ns", more[0]) != nil {
		t.Fatal("the isolated old leader applied the majority's write")
	}

	// Heal: everyone converges on the majority's history.
	c.heal()
	last = c.write(createCmd(t, configMap("ns", "final", nil)), c.nodes...)
	waitApplied(t, last, c.nodes...)
	requireObjects(t, append(acked, "final"), c.nodes...)
	for _, nd := range c.nodes {
		if nd.fsm.View().Get(api.ConfigMap, "ns", "lost") != nil {
			t.Fatalf("%s holds the write that never committed", nd.id)
		}
	}
	requireConverged(t, c.nodes...)
}
