package agent

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// pilotDelegate connects raft-autopilot to gossip and to the servers'
// status endpoints. Autopilot promotes a non-voter to voter once it has been
// healthy (caught up, in contact with the leader) for the stabilization time.
// With HAConfig.DeadServerCleanup set, it also removes servers that have
// been failed or gone (gossip) for that long (deadservers.go).
type pilotDelegate struct {
	a    *Agent
	dead deadServers
}

func (d *pilotDelegate) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      d.a.cfg.HA.DeadServerCleanup > 0,
		LastContactThreshold:    2 * d.a.cfg.Raft.HeartbeatTimeout,
		MaxTrailingLogs:         250,
		MinQuorum:               0,
		ServerStabilizationTime: 3 * d.a.cfg.Raft.HeartbeatTimeout,
	}
}

func (d *pilotDelegate) NotifyState(*autopilot.State) {}

func (d *pilotDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	_, leader := d.a.raft.LeaderWithID()
	out := map[raft.ServerID]*autopilot.Server{}
	for _, m := range d.a.gossip.Members() {
		if m.Role != RoleServer {
			continue
		}
		status := autopilot.NodeAlive
		switch m.Status {
		case StatusDead:
			status = autopilot.NodeFailed
		case StatusLeft:
			status = autopilot.NodeLeft
		}
		id := raft.ServerID(m.Name)
		out[id] = &autopilot.Server{
			ID: id, Name: m.Name, Address: raft.ServerAddress(m.meta.Raft), NodeStatus: status,
			Version: m.meta.Version, RaftVersion: raft.ProtocolVersionMax, IsLeader: id == leader,
			NodeType: autopilot.NodeVoter,
		}
	}
	d.addRaftOnlyServers(out)
	d.dead.observe(out, time.Now())
	return out
}

func (d *pilotDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		if srv.NodeStatus != autopilot.NodeAlive {
			continue
		}
		m, ok := d.a.gossip.Member(string(id))
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s serverStatus
			if string(id) == d.a.cfg.Name {
				s = d.a.status()
			} else {
				var err error
				if s, err = d.a.peerStatus(ctx, m.meta.HTTP); err != nil {
					return
				}
			}
			lc := time.Duration(s.LastContactMs) * time.Millisecond
			if s.LastContactMs < 0 {
				lc = time.Hour
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: lc, LastTerm: s.Term, LastIndex: s.LastIndex}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
