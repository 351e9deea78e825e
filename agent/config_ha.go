package agent

import (
	"fmt"
	"time"
)

// HAConfig holds the settings of the operations an edge site relies on:
// periodic snapshots, dead-server cleanup and the free-disk reserve.
type HAConfig struct {
	// AutoSnapshotInterval is how often each server saves a snapshot
	// archive of its state into DATA_DIR/snapshots (0: never); the newest
	// AutoSnapshotRetain (default DefaultAutoSnapshotRetain) are kept.
	AutoSnapshotInterval time.Duration
	AutoSnapshotRetain   int
	// DeadServerCleanup is how long a server must have been seen failed or
	// departed (gossip) before the leader removes it from the Raft
	// configuration (0: never; `orchctl operator raft remove-peer` does it
	// by hand). Autopilot never removes a majority of the voters.
	DeadServerCleanup time.Duration
	// MinFreeDisk is the free space, in bytes, the data dir's filesystem
	// must keep: below it the server refuses writes (and a leader hands
	// leadership to a server with room) until space returns. 0 means
	// DefaultMinFreeDisk; negative disables the check.
	MinFreeDisk int64
}

// DefaultMinFreeDisk is the default free-space reserve of the data dir:
// room for the Raft log to keep working until an operator frees space.
const DefaultMinFreeDisk = 64 << 20

func (h *HAConfig) setDefaults() error {
	if h.AutoSnapshotInterval < 0 {
		return fmt.Errorf("--snapshot-interval %s: must be >= 0 (0 disables periodic snapshots)", h.AutoSnapshotInterval)
	}
	if h.AutoSnapshotInterval > 0 && h.AutoSnapshotInterval < 100*time.Millisecond {
		return fmt.Errorf("--snapshot-interval %s: must be at least 100ms", h.AutoSnapshotInterval)
	}
	if h.AutoSnapshotRetain < 0 {
		return fmt.Errorf("--snapshot-retain %d: must be >= 1", h.AutoSnapshotRetain)
	}
	if h.AutoSnapshotRetain == 0 {
		h.AutoSnapshotRetain = DefaultAutoSnapshotRetain
	}
	if h.DeadServerCleanup < 0 {
		return fmt.Errorf("--dead-server-cleanup %s: must be >= 0 (0 disables it)", h.DeadServerCleanup)
	}
	if h.MinFreeDisk == 0 {
		h.MinFreeDisk = DefaultMinFreeDisk
	}
	return nil
}
