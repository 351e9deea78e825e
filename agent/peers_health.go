package agent

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// PeerHealth is how a Raft server is doing, as the leader sees it.
type PeerHealth struct {
	// Status is the server's gossip status (alive, dead, left),
	// or unknown when gossip has not seen it.
	Status string `json:"status,omitempty"`
	// Healthy uses autopilot's criteria: alive, answering, in contact with
	// the leader within two heartbeat timeouts, at most 250 entries behind,
	// and with room on its disk.
	Healthy *bool `json:"healthy,omitempty"`
	// LastContactMs is how long ago the server last heard from the leader
	// (0 for the leader; -1: never).
	LastContactMs *int64 `json:"lastContactMs,omitempty"`
	// AppliedIndex is the last index the server applied to its state, and
	// Lag how far that is behind the leader's.
	AppliedIndex *uint64 `json:"appliedIndex,omitempty"`
	Lag          *uint64 `json:"lag,omitempty"`
	DiskLow      bool    `json:"diskLow,omitempty"`
}

// maxHealthyLag matches autopilot's MaxTrailingLogs.
const maxHealthyLag = 250

// servePeers lists the Raft configuration with each server's health. The
// leader answers (a follower forwards); with ?stale=true, or when no leader
// can be reached (quorum lost), the answering server lists its own
// configuration without health.
func (a *Agent) servePeers(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("stale") != "true" && a.raft.State() != raft.Leader && r.Header.Get(forwardedHeader) == "" {
		if addr, self, err := a.leaderHTTP(); err == nil && !self {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			err := a.forward(ctx, w, r, addr, nil)
			cancel()
			if err == nil {
				return
			}
			a.logger.Debug("list-peers: leader unreachable; answering locally", "leader", addr, "err", err)
		}
	}
	peers, err := a.peers()
	if err != nil {
		writeError(w, err)
		return
	}
	if a.raft.State() == raft.Leader {
		a.addHealth(r.Context(), peers)
	}
	writeJSON(w, http.StatusOK, peers)
}

func (a *Agent) addHealth(ctx context.Context, peers []Peer) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	leaderApplied := a.fsm.AppliedIndex()
	threshold := 2 * a.cfg.Raft.HeartbeatTimeout
	var wg sync.WaitGroup
	for i := range peers {
		p := &peers[i]
		p.Status = "unknown"
		m, known := a.gossip.Member(p.ID)
		if known {
			p.Status = m.Status
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st serverStatus
			if p.ID == a.cfg.Name {
				st = a.status()
			} else {
				var err error
				if !known || m.Status == StatusDead || m.Status == StatusLeft {
					p.Healthy = new(bool)
					return
				}
				if st, err = a.peerStatus(ctx, m.meta.HTTP); err != nil {
					p.Healthy = new(bool)
					return
				}
			}
			lag := uint64(0)
			if st.AppliedIndex < leaderApplied {
				lag = leaderApplied - st.AppliedIndex
			}
			healthy := p.Status == StatusAlive && !st.DiskLow && st.LastContactMs >= 0 &&
				time.Duration(st.LastContactMs)*time.Millisecond <= threshold && lag <= maxHealthyLag
			p.Healthy, p.LastContactMs, p.AppliedIndex, p.Lag, p.DiskLow = &healthy, &st.LastContactMs, &st.AppliedIndex, &lag, st.DiskLow
		}()
	}
	wg.Wait()
}
