package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// forwardedHeader marks a request one server forwarded to another; a
// forwarded request is never forwarded again, so leader churn cannot make
// requests loop.
const forwardedHeader = "X-Orch-Forwarded-By"

// onLeader returns true when this server is the ready leader and should
// handle the request itself. Otherwise it sends the request (whose body was
// already read) to the leader, copies back the answer and returns false.
// During an election it waits up to LeaderWait for a leader.
func (a *Agent) onLeader(w http.ResponseWriter, r *http.Request, body []byte) bool {
	ctx := r.Context()
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		if a.raft.State() == raft.Leader {
			if err := a.waitLeaderReady(ctx, deadline); err == nil {
				return true
			}
		} else if addr, self, err := a.leaderHTTP(); err == nil && !self {
			if r.Header.Get(forwardedHeader) != "" {
				writeError(w, raft.ErrNotLeader)
				return false
			}
			err := a.forward(ctx, w, r, addr, body)
			if err == nil {
				return false
			}
			if !errors.Is(err, errNotSent) {
				writeError(w, errOutcomeUnknown)
				return false
			}
			a.logger.Debug("forward to leader failed; waiting for a leader", "leader", addr, "err", err)
		}
		if err := a.waitLeaderChange(ctx, deadline); err != nil {
			writeError(w, err)
			return false
		}
	}
}

// errNotSent means the leader could not be reached at all, so the request
// certainly had no effect and may be retried.
var errNotSent = errors.New("request not sent")

func (a *Agent) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, addr string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, r.Method, a.peerURL(addr)+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range []string{"Content-Type", "Accept", requestIDHeader} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, a.cfg.Name)
	a.authorizePeer(req)
	resp, err := a.peerClient.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return errNotSent
		}
		return err
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After", leaderHeader} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	if err != nil {
		a.logger.Warn("copying forwarded response", "err", err)
	}
	return nil
}

// leaderHeader tells clients which server leads, so a client can send its
// writes there directly.
const leaderHeader = "X-Orch-Leader"

// requestIDHeader carries a client's idempotency key for a write.
const requestIDHeader = "X-Orch-Request-Id"

func (a *Agent) setLeaderHeader(w http.ResponseWriter) {
	if addr, _, err := a.leaderHTTP(); err == nil {
		w.Header().Set(leaderHeader, addr)
	}
}

// peerContext bounds server-to-server calls.
func peerContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, 5*time.Second)
}
