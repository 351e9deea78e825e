package orchd

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/api/resource"

	"orch.dev/orch/agent"
)

// haFlags are the agent flags of the high-availability operations
// (docs/operations.md): periodic snapshots, dead-server cleanup, the
// free-disk reserve, and how Raft bounds its log on disk.
func haFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "snapshot-interval", Value: time.Hour, Usage: "save a snapshot archive of the state into DATA_DIR/snapshots this often (0: never)"},
		&cli.IntFlag{Name: "snapshot-retain", Value: agent.DefaultAutoSnapshotRetain, Usage: "how many periodic snapshots to keep"},
		&cli.DurationFlag{Name: "dead-server-cleanup", Usage: "remove a server from Raft once it has been dead or gone this long (0: never; remove by hand with orchctl operator raft remove-peer)"},
		&cli.StringFlag{Name: "min-free-disk", Value: "64Mi", Usage: "free space the data dir's filesystem keeps: below it the server refuses writes until space is freed (0: no check)"},
		&cli.DurationFlag{Name: "raft-snapshot-interval", Value: 30 * time.Second, Usage: "how often Raft checks whether --snapshot-threshold entries were written, to snapshot and truncate its log"},
		&cli.Uint64Flag{Name: "raft-trailing-logs", Value: 10240, Usage: "log entries Raft keeps after a snapshot, so slow followers catch up without a snapshot"},
	}
}

// applyHAFlags sets what haFlags configure.
func applyHAFlags(c *cli.Context, cfg *agent.Config) error {
	cfg.HA = agent.HAConfig{
		AutoSnapshotInterval: c.Duration("snapshot-interval"),
		AutoSnapshotRetain:   c.Int("snapshot-retain"),
		DeadServerCleanup:    c.Duration("dead-server-cleanup"),
	}
	if cfg.HA.AutoSnapshotRetain < 1 {
		return fmt.Errorf("--snapshot-retain %d: must be at least 1", cfg.HA.AutoSnapshotRetain)
	}
	q, err := resource.ParseQuantity(c.String("min-free-disk"))
	if err != nil || q.Sign() < 0 {
		return fmt.Errorf("--min-free-disk %q: not a size (e.g. 64Mi, 1Gi, or 0 for no check)", c.String("min-free-disk"))
	}
	cfg.HA.MinFreeDisk = q.Value()
	if cfg.HA.MinFreeDisk == 0 {
		cfg.HA.MinFreeDisk = -1 // no check
	}
	cfg.SnapshotInterval = c.Duration("raft-snapshot-interval")
	cfg.TrailingLogs = c.Uint64("raft-trailing-logs")
	if cfg.SnapshotInterval < 5*time.Millisecond {
		return fmt.Errorf("--raft-snapshot-interval %s: must be at least 5ms", cfg.SnapshotInterval)
	}
	return nil
}
