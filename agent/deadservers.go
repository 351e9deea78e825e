package agent

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// deadServers remembers since when each server has been seen not alive, so
// that autopilot's dead-server cleanup removes only servers that stayed
// dead for HAConfig.DeadServerCleanup, not ones restarting.
type deadServers struct {
	mu    sync.Mutex
	since map[raft.ServerID]time.Time
	last  time.Time // of the previous observation
}

func (d *deadServers) observe(servers map[raft.ServerID]*autopilot.Server, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.since == nil || now.Sub(d.last) > 10*time.Second {
		// First observation, or the first since this server leads again:
		// what it saw before says nothing about the servers since.
		d.since = map[raft.ServerID]time.Time{}
	}
	d.last = now
	for id, s := range servers {
		if s.NodeStatus == autopilot.NodeAlive {
			delete(d.since, id)
		} else if _, ok := d.since[id]; !ok {
			d.since[id] = now
		}
	}
	for id := range d.since {
		if _, ok := servers[id]; !ok {
			delete(d.since, id)
		}
	}
}

// deadFor is how long id has been seen not alive (0: alive or unknown).
func (d *deadServers) deadFor(id raft.ServerID, now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.since[id]; ok {
		return now.Sub(t)
	}
	return 0
}

// addRaftOnlyServers reports the servers of the Raft configuration that
// gossip does not know (a leader that restarted has not seen them since) as
// failed. Autopilot would otherwise treat them as "stale" and remove them at
// once, without the grace time.
func (d *pilotDelegate) addRaftOnlyServers(out map[raft.ServerID]*autopilot.Server) {
	f := d.a.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, s := range f.Configuration().Servers {
		if _, ok := out[s.ID]; ok {
			continue
		}
		out[s.ID] = &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address, NodeStatus: autopilot.NodeFailed,
			RaftVersion: raft.ProtocolVersionMax, NodeType: autopilot.NodeVoter}
	}
}

// RemoveFailedServer is autopilot asking to remove a failed server (it has
// already checked that the removal leaves a majority of the voters).
func (d *pilotDelegate) RemoveFailedServer(srv *autopilot.Server) {
	grace := d.a.cfg.HA.DeadServerCleanup
	if grace <= 0 {
		return
	}
	dead := d.dead.deadFor(srv.ID, time.Now())
	if dead < grace {
		return
	}
	d.a.logger.Warn("removing dead server from the Raft configuration", "server", srv.ID, "dead_for", dead.Round(time.Second), "dead_server_cleanup", grace)
	if err := d.a.raft.RemoveServer(srv.ID, 0, d.a.cfg.LeaderWait).Error(); err != nil {
		d.a.logger.Warn("removing dead server failed", "server", srv.ID, "err", err)
	}
}
