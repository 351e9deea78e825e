package rafttls

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// counter is an FSM that remembers what it applied.
type counter struct {
	mu      sync.Mutex
	applied [][]byte
}

func (c *counter) Apply(l *raft.Log) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = append(c.applied, l.Data)
	return len(c.applied)
}

func (c *counter) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.applied)
}

func (c *counter) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (c *counter) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// transportFunc makes server i's transport.
type transportFunc func(tb testing.TB, i int) raft.Transport

// tlsTransports gives server i a certificate with roles[i] (a server's
// when roles is short).
func tlsTransports(ca *pki.CA, roles ...pki.Role) transportFunc {
	return func(tb testing.TB, i int) raft.Transport {
		role := pki.RoleServer
		if i < len(roles) {
			role = roles[i]
		}
		srv := pkitest.Node(tb, ca, role, fmt.Sprintf("s%d", i))
		sl, err := Listen(Config{Bind: "127.0.0.1:0", CA: ca.Cert, Certs: srv.Certs, Logger: quiet})
		if err != nil {
			tb.Fatal(err)
		}
		return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: sl, MaxPool: 4, Timeout: 10 * time.Second, Logger: hclog.NewNullLogger(),
		})
	}
}

func tcpTransports(tb testing.TB, _ int) raft.Transport {
	t, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 4, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

type raftCluster struct {
	rafts []*raft.Raft
	fsms  []*counter
}

// timing is Raft's heartbeat and election timeout, leader lease and commit
// timeout.
type timing struct{ heartbeat, lease, commit time.Duration }

var (
	// fastTiming elects quickly, for tests.
	fastTiming = timing{300 * time.Millisecond, 150 * time.Millisecond, 5 * time.Millisecond}
	// agentTiming is hashicorp/raft's own (agent.SteadyRaftTiming), for
	// benchmarks: it keeps leadership on a busy machine.
	agentTiming = timing{time.Second, 500 * time.Millisecond, 10 * time.Millisecond}
)

// newRaftCluster starts n real Raft servers on inmem stores, talking over
// the transports mk makes, and waits for a leader.
func newRaftCluster(tb testing.TB, n int, mk transportFunc, tm timing) *raftCluster {
	tb.Helper()
	c := &raftCluster{}
	var trans []raft.Transport
	var servers []raft.Server
	for i := range n {
		tr := mk(tb, i)
		trans = append(trans, tr)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("s%d", i)), Address: tr.LocalAddr()})
	}
	for i := range n {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = tm.heartbeat
		conf.ElectionTimeout = tm.heartbeat
		conf.LeaderLeaseTimeout = tm.lease
		conf.CommitTimeout = tm.commit
		conf.MaxAppendEntries = 512
		conf.BatchApplyCh = true
		conf.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		fsm := &counter{}
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), trans[i])
		if err != nil {
			tb.Fatal(err)
		}
		c.rafts = append(c.rafts, r)
		c.fsms = append(c.fsms, fsm)
	}
	tb.Cleanup(func() {
		for i, r := range c.rafts {
			r.Shutdown().Error()
			if cl, ok := trans[i].(io.Closer); ok {
				cl.Close()
			}
		}
	})
	if err := c.rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		tb.Fatal(err)
	}
	c.leader(tb)
	return c
}

func (c *raftCluster) leader(tb testing.TB) *raft.Raft {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("no leader elected")
	return nil
}

// waitApplied waits until every FSM has applied n entries.
func (c *raftCluster) waitApplied(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, f := range c.fsms {
			done = done && f.len() >= n
		}
		if done {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, f := range c.fsms {
		tb.Logf("server %d applied %d", i, f.len())
	}
	tb.Fatalf("not every server applied %d entries", n)
}
