package agent

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Heartbeats are liveness, not state: workers (and simulated nodes) report
// to the leader, which keeps the time it last heard from each node in
// memory. Only the consequences (a node's Ready condition flipping,
// evictions) are written through Raft, by the node lifecycle controller.
// A new leader starts with an empty table; the controller gives every node
// a grace period after a leader change before it trusts the table.
type heartbeats struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// HeartbeatRequest is the body of POST /v1/heartbeats.
type HeartbeatRequest struct {
	Nodes []string `json:"nodes"`
}

func (h *heartbeats) beat(names []string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last = map[string]time.Time{}
	}
	for _, n := range names {
		h.last[n] = at
	}
}

// LastHeartbeat is when the leader last heard from a node (this server
// must be the leader for the answer to mean anything).
func (a *Agent) LastHeartbeat(node string) (time.Time, bool) {
	a.beats.mu.Lock()
	defer a.beats.mu.Unlock()
	t, ok := a.beats.last[node]
	return t, ok
}

func (a *Agent) serveHeartbeats(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req HeartbeatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, apierrors.NewBadRequest("invalid heartbeat: "+err.Error()))
		return
	}
	if err := a.authorizeHeartbeat(r, req.Nodes); err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	a.beats.beat(req.Nodes, time.Now())
	w.WriteHeader(http.StatusNoContent)
}
