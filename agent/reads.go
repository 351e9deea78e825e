package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// coalescer runs fn for many concurrent callers at once. A caller always
// waits for a round that starts after it arrived, never one already running,
// so a result never predates the request (what linearizable reads need).
type coalescer struct {
	fn      func() (uint64, error)
	mu      sync.Mutex
	next    *round
	running bool
}

type round struct {
	done  chan struct{}
	value uint64
	err   error
}

func newCoalescer(fn func() (uint64, error)) *coalescer { return &coalescer{fn: fn} }

func (c *coalescer) do(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.value, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *coalescer) loop() {
	for {
		c.mu.Lock()
		r := c.next
		c.next = nil
		if r == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		r.value, r.err = c.fn()
		close(r.done)
	}
}

// errNoLeader means no leader could be found within LeaderWait.
var errNoLeader = errors.New("no cluster leader")

// linearizableIndex returns an index such that a state that has applied it
// reflects every write acknowledged before this call. On the leader that is
// its own applied index once leadership is re-confirmed (acknowledged writes
// are applied before they are acknowledged); a follower asks the leader.
func (a *Agent) linearizableIndex(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(a.cfg.LeaderWait)
	for {
		if a.raft.State() == raft.Leader {
			if err := a.waitLeaderReady(ctx, deadline); err == nil {
				if _, err := a.verifier.do(ctx); err == nil {
					return a.fsm.AppliedIndex(), nil
				} else if ctx.Err() != nil {
					return 0, ctx.Err()
				}
			}
		} else if idx, err := a.readIndex.do(ctx); err == nil {
			return idx, nil
		} else if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := a.waitLeaderChange(ctx, deadline); err != nil {
			return 0, err
		}
	}
}

// linearizableRead waits until the local state may serve a linearizable read.
func (a *Agent) linearizableRead(ctx context.Context) error {
	idx, err := a.linearizableIndex(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, a.cfg.LeaderWait)
	defer cancel()
	return a.fsm.WaitApplied(wctx, idx)
}

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// fetchReadIndex asks the leader for its linearizable index.
func (a *Agent) fetchReadIndex() (uint64, error) {
	addr, _, err := a.leaderHTTP()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.peerURL(addr)+"/internal/v1/read-index", nil)
	a.authorizePeer(req)
	resp, err := a.peerClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("leader read-index: %s", resp.Status)
	}
	var r readIndexResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	return r.Index, nil
}

// leaderHTTP returns the leader's API address and whether it is this server.
func (a *Agent) leaderHTTP() (string, bool, error) {
	_, id := a.raft.LeaderWithID()
	if id == "" {
		return "", false, errNoLeader
	}
	if string(id) == a.cfg.Name {
		return a.cfg.httpAddr(), true, nil
	}
	m, ok := a.gossip.Member(string(id))
	if !ok || m.meta.HTTP == "" {
		return "", false, fmt.Errorf("%w: leader %s is not known to gossip yet", errNoLeader, id)
	}
	return m.meta.HTTP, false, nil
}

// waitLeaderChange blocks until the leader (or our leadership) changes, or
// the deadline passes.
func (a *Agent) waitLeaderChange(ctx context.Context, deadline time.Time) error {
	a.leaderMu.Lock()
	wake := a.leaderWake
	a.leaderMu.Unlock()
	wait := time.Until(deadline)
	if wait <= 0 {
		return errNoLeader
	}
	// Re-check at least every 100ms: leader addresses also arrive by gossip.
	t := time.NewTimer(min(wait, 100*time.Millisecond))
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.stop:
		return errShuttingDown
	}
	return nil
}

// waitLeaderReady waits until this leader has finished its barrier.
func (a *Agent) waitLeaderReady(ctx context.Context, deadline time.Time) error {
	for {
		a.leaderMu.Lock()
		ready, wake := a.leaderReady, a.leaderWake
		a.leaderMu.Unlock()
		if ready {
			return nil
		}
		if a.raft.State() != raft.Leader {
			return raft.ErrNotLeader
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wake:
			t.Stop()
		case <-t.C:
			return errNoLeader
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

var errShuttingDown = errors.New("server is shutting down")
