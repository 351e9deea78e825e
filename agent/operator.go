package agent

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Peer is one Raft server as `orchctl operator raft list-peers` shows it.
// The health fields are the leader's view (peers_health.go); they are absent
// when no leader answered.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
	PeerHealth
}

func (a *Agent) peers() ([]Peer, error) {
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leader := a.raft.LeaderWithID()
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Address: string(s.Address), Leader: s.ID == leader, Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

func (a *Agent) serveMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.gossip.Members())
}

var peerResource = schema.GroupResource{Resource: "raft peers"}

func (a *Agent) serveRemovePeer(w http.ResponseWriter, r *http.Request) {
	if !a.onLeader(w, r, nil) {
		return
	}
	id := r.PathValue("id")
	peers, err := a.peers()
	if err != nil {
		writeError(w, err)
		return
	}
	for _, p := range peers {
		if p.ID != id {
			continue
		}
		if p.Leader {
			writeError(w, apierrors.NewConflict(peerResource, id, errors.New("it is the leader; run `orchctl operator raft transfer-leader` first")))
			return
		}
		if err := a.raft.RemoveServer(raft.ServerID(id), 0, a.cfg.LeaderWait).Error(); err != nil {
			writeError(w, err)
			return
		}
		a.logger.Info("removed raft peer", "peer", id)
		writeJSON(w, http.StatusOK, map[string]string{"removed": id})
		return
	}
	writeError(w, apierrors.NewNotFound(peerResource, id))
}

func (a *Agent) serveTransferLeader(w http.ResponseWriter, r *http.Request) {
	if !a.onLeader(w, r, nil) {
		return
	}
	to := r.URL.Query().Get("to")
	var transfer func() raft.Future
	if to == "" {
		transfer = a.raft.LeadershipTransfer
	} else {
		if to == a.cfg.Name {
			writeJSON(w, http.StatusOK, map[string]string{"leader": to})
			return
		}
		peers, err := a.peers()
		if err != nil {
			writeError(w, err)
			return
		}
		var target *Peer
		for i := range peers {
			if peers[i].ID == to {
				target = &peers[i]
			}
		}
		if target == nil {
			writeError(w, apierrors.NewNotFound(peerResource, to))
			return
		}
		if !target.Voter {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("--to %s: not a voter", to)))
			return
		}
		transfer = func() raft.Future {
			return a.raft.LeadershipTransferToServer(raft.ServerID(target.ID), raft.ServerAddress(target.Address))
		}
	}
	// A transfer times out when the target cannot catch up within an
	// election timeout (a burst of writes, a slow disk); the operator asked
	// for it, so it is tried again while this server still leads.
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = transfer().Error(); err == nil || a.raft.State() != raft.Leader || r.Context().Err() != nil {
			break
		}
		a.logger.Warn("leadership transfer failed; trying again", "attempt", attempt, "err", err)
	}
	if err != nil && a.raft.State() == raft.Leader {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("leadership transfer: %w", err)))
		return
	}
	a.waitForOtherLeader(r.Context())
	_, leader := a.raft.LeaderWithID()
	a.logger.Info("leadership transferred", "to", leader)
	writeJSON(w, http.StatusOK, map[string]string{"leader": string(leader)})
}

// serveSnapshotSave streams a snapshot archive of the leader's state (or,
// with stale=true, of this server's). The state comes from a consistent view
// of the FSM, in the format Raft snapshots use, so saving forces no Raft
// snapshot and leaves the log alone.
func (a *Agent) serveSnapshotSave(w http.ResponseWriter, r *http.Request) {
	stale := r.URL.Query().Get("stale") == "true"
	if !stale && !a.onLeader(w, r, nil) {
		return
	}
	if !stale {
		if err := a.linearizableRead(r.Context()); err != nil {
			writeError(w, err)
			return
		}
	}
	view := a.fsm.View()
	staged, err := a.stageState(view)
	if err != nil {
		writeError(w, err)
		return
	}
	defer staged.close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if err := a.writeArchive(w, view, staged); err != nil {
		// The client notices: the archive's checksums will not verify.
		a.logger.Error("streaming snapshot", "err", err)
	}
}

func (a *Agent) serveReadIndex(w http.ResponseWriter, r *http.Request) {
	if a.raft.State() != raft.Leader {
		writeError(w, raft.ErrNotLeader)
		return
	}
	idx, err := a.linearizableIndex(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, readIndexResponse{Index: idx})
}
