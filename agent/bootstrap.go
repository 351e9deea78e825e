package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// serverStatus is what /internal/v1/status reports to peers: enough to
// decide whether to bootstrap and, for autopilot, how far behind a server is.
type serverStatus struct {
	Name          string `json:"name"`
	HasState      bool   `json:"hasState"`
	State         string `json:"state"`
	Leader        string `json:"leader"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"lastIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	LastContactMs int64  `json:"lastContactMs"` // -1: never
	Version       string `json:"version"`
	// DiskLow: the data dir is below its free-space reserve.
	DiskLow bool `json:"diskLow,omitempty"`
}

func (a *Agent) status() serverStatus {
	_, leader := a.raft.LeaderWithID()
	s := serverStatus{
		Name:          a.cfg.Name,
		HasState:      a.node.hadState || a.raft.LastIndex() > 0,
		State:         a.raft.State().String(),
		Leader:        string(leader),
		Term:          a.raft.CurrentTerm(),
		LastIndex:     a.raft.LastIndex(),
		AppliedIndex:  a.fsm.AppliedIndex(),
		LastContactMs: -1,
		Version:       a.cfg.Version,
		DiskLow:       a.disk.low.Load(),
	}
	if a.raft.State() == raft.Leader {
		s.LastContactMs = 0
	} else if lc := a.raft.LastContact(); !lc.IsZero() {
		s.LastContactMs = time.Since(lc).Milliseconds()
	}
	return s
}

// peerStatus fetches another server's status.
func (a *Agent) peerStatus(ctx context.Context, httpAddr string) (serverStatus, error) {
	var s serverStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.peerURL(httpAddr)+"/internal/v1/status", nil)
	a.authorizePeer(req)
	resp, err := a.peerClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status from %s: %s", httpAddr, resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// bootstrapLoop bootstraps the Raft group once --bootstrap-expect servers
// are in gossip and none of them already belongs to a cluster. Every server
// computes the same configuration (all of them, sorted), so the servers
// that bootstrap concurrently agree. A server with Raft state never gets
// here: bootstrap happens exactly once per cluster.
func (a *Agent) bootstrapLoop() {
	expect := a.cfg.BootstrapExpect
	for {
		select {
		case <-a.stop:
			return
		case <-a.gossip.Changed():
		case <-time.After(time.Second):
		}
		if a.raft.LastIndex() > 0 {
			return // added to a cluster or bootstrapped meanwhile
		}
		var servers []Member
		mismatch := false
		for _, m := range a.gossip.Members() {
			if m.Role != RoleServer || m.Status != StatusAlive {
				continue
			}
			if m.meta.Expect != 0 && m.meta.Expect != expect {
				a.logger.Error("servers disagree on --bootstrap-expect; not bootstrapping", "server", m.Name, "theirs", m.meta.Expect, "ours", expect)
				mismatch = true
			}
			servers = append(servers, m)
		}
		if mismatch || len(servers) < expect {
			continue
		}
		if !a.ensureCA(servers) {
			continue // the CA must exist before Raft talks (tls_gossip.go)
		}
		if joined, err := a.anyPeerInCluster(servers); err != nil {
			a.logger.Info("waiting to bootstrap", "reason", err)
			continue
		} else if joined != "" {
			a.logger.Info("not bootstrapping: a cluster already exists; waiting to be added by its leader", "member", joined)
			return
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].Name < servers[j].Name })
		var conf raft.Configuration
		for _, m := range servers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.meta.Raft)})
		}
		a.logger.Info("bootstrapping cluster", "servers", len(conf.Servers))
		if err := a.raft.BootstrapCluster(conf).Error(); err != nil && err != raft.ErrCantBootstrap {
			a.logger.Error("bootstrap failed", "err", err)
			continue
		}
		return
	}
}

// anyPeerInCluster returns the name of a peer that already has Raft state.
func (a *Agent) anyPeerInCluster(servers []Member) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, m := range servers {
		if m.Name == a.cfg.Name {
			continue
		}
		s, err := a.peerStatus(ctx, m.meta.HTTP)
		if err != nil {
			return "", fmt.Errorf("asking %s: %w", m.Name, err)
		}
		if s.HasState || s.Leader != "" {
			return m.Name, nil
		}
	}
	return "", nil
}
