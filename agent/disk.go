package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/fsm"
)

// A full disk. When the Raft log store (bbolt) cannot write, hashicorp/raft
// behaves safely but badly: a leader fails the entries and steps down (and
// may be elected again), a follower rejects appends and falls behind, and a
// term change it cannot persist panics the process. bbolt itself rolls back
// a commit that failed, so nothing is corrupted. orch keeps servers out of
// that state: each server watches the free space of its data dir and, below
// the reserve (HAConfig.MinFreeDisk), refuses writes with an error naming
// the disk, reports itself not ready, and, when it leads, hands leadership
// to a server with room. Deletes are still accepted (as etcd does in its
// NOSPACE alarm), so an operator can shrink the state. When space returns
// (the reserve and a quarter more) it accepts writes again.

const diskCheckInterval = 500 * time.Millisecond

type diskGuard struct {
	reserve atomic.Int64 // HAConfig.MinFreeDisk (tests change it)
	low     atomic.Bool
	stuck   atomic.Bool // leading, and no server with room to hand over to
	free    atomic.Int64
	kick    chan struct{}
}

// freeBytes is the space unprivileged writers may still use on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func (a *Agent) diskLoop() {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	var lastHandoff time.Time
	for {
		a.checkDisk()
		if a.disk.low.Load() && a.raft.State() == raft.Leader && time.Since(lastHandoff) > 2*time.Second {
			lastHandoff = time.Now()
			a.handOffLeadership()
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		case <-a.disk.kick:
		}
	}
}

// kickDisk asks for a check now (a write failed, perhaps for lack of space).
func (a *Agent) kickDisk() {
	select {
	case a.disk.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) checkDisk() {
	reserve := a.disk.reserve.Load()
	free, err := freeBytes(a.cfg.DataDir)
	if err != nil {
		a.logger.Warn("checking free disk space", "dir", a.cfg.DataDir, "err", err)
		return
	}
	a.disk.free.Store(free)
	switch low := a.disk.low.Load(); {
	case !low && free < reserve:
		a.disk.low.Store(true)
		a.logger.Error("data dir is almost full: refusing writes until space is freed", "dir", a.cfg.DataDir,
			"free", byteSize(free), "reserve", byteSize(reserve))
	case low && free >= reserve+reserve/4:
		a.disk.low.Store(false)
		a.disk.stuck.Store(false)
		a.logger.Info("data dir has room again: accepting writes", "dir", a.cfg.DataDir, "free", byteSize(free))
	}
}

// handOffLeadership moves leadership to the most advanced voter whose disk
// has room; with none, this server keeps leading and refuses writes with 507.
func (a *Agent) handOffLeadership() {
	f := a.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var best *raft.Server
	var bestApplied uint64
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter || s.ID == raft.ServerID(a.cfg.Name) {
			continue
		}
		m, ok := a.gossip.Member(string(s.ID))
		if !ok || m.Status != StatusAlive {
			continue
		}
		st, err := a.peerStatus(ctx, m.meta.HTTP)
		if err != nil || st.DiskLow || st.LastContactMs < 0 {
			continue
		}
		if best == nil || st.AppliedIndex > bestApplied {
			best, bestApplied = &s, st.AppliedIndex
		}
	}
	if best == nil {
		if !a.disk.stuck.Swap(true) {
			a.logger.Error("data dir is almost full and no other server has room to lead; writes fail with 507 until space is freed")
		}
		return
	}
	a.disk.stuck.Store(false)
	a.logger.Warn("data dir is almost full: handing leadership over", "to", best.ID)
	if err := a.raft.LeadershipTransferToServer(best.ID, best.Address).Error(); err != nil {
		a.logger.Warn("leadership hand-over failed", "to", best.ID, "err", err)
	}
}

// diskRefusal returns the error a write gets while the disk is low, or nil.
// A server that others can stand in for answers 503 (clients retry on
// another server); a leader that cannot hand over answers 507.
func (a *Agent) diskRefusal() error {
	if !a.disk.low.Load() {
		return nil
	}
	msg := fmt.Sprintf("insufficient storage on server %s: its data dir %s has %s free, below the reserve of %s (--min-free-disk); writes are refused there until space is freed",
		a.cfg.Name, a.cfg.DataDir, byteSize(a.disk.free.Load()), byteSize(a.disk.reserve.Load()))
	if a.disk.stuck.Load() || !a.hasOtherVoters() {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInsufficientStorage,
			Reason: "InsufficientStorage", Message: msg}}
	}
	s := apierrors.NewServiceUnavailable(msg + "; retry on another server")
	s.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	return s
}

// refuseWritesWhenDiskLow guards the object API: creates, updates and
// patches are refused while the disk is low; reads and deletes pass.
func (a *Agent) refuseWritesWhenDiskLow(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/apis/") {
				if err := a.diskRefusal(); err != nil {
					writeError(w, err)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// proposalRefusal is diskRefusal for commands proposed on the leader
// (controllers and the scheduler included); deletes pass.
func (a *Agent) proposalRefusal(cmd fsm.Command) error {
	if _, ok := cmd.(*fsm.Delete); ok {
		return nil
	}
	return a.diskRefusal()
}

// byteSize formats n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
