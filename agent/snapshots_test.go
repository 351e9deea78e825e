package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/snapfile"
)

// snapshotIndex is the state index a periodic snapshot's name carries.
func snapshotIndex(t *testing.T, path string) uint64 {
	var index uint64
	if _, err := fmt.Sscanf(filepath.Base(path), autoSnapshotPrefix+"%020d-", &index); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return index
}

// Every server saves a verified snapshot archive periodically into
// DATA_DIR/snapshots, in the format of `orchctl operator snapshot save`,
// keeps only the newest AutoSnapshotRetain, and leaves no temporary files.
func TestPeriodicSnapshotsKeepTheNewest(t *testing.T) {
	c := startCluster(t, 3, "", func(cfg *Config) {
		cfg.HA.AutoSnapshotInterval, cfg.HA.AutoSnapshotRetain = 100*time.Millisecond, 2
	})
	f := c.follower()
	for round := range 4 {
		createConfigMaps(t, c, fmt.Sprintf("round%d", round), 1)
		want := mustLeader(c).fsm.AppliedIndex()
		// A new file appears a moment before the oldest is removed.
		c.waitFor(fmt.Sprintf("a periodic snapshot on %s at index %d, and at most 2 kept", f.cfg.Name, want), func() bool {
			files, _ := AutoSnapshots(f.cfg.DataDir)
			return len(files) > 0 && len(files) <= 2 && snapshotIndex(t, files[len(files)-1]) >= want
		})
	}
	// Four saves at four indexes happened; two remain.
	files, err := AutoSnapshots(f.cfg.DataDir)
	if err != nil || len(files) != 2 {
		t.Fatalf("periodic snapshots: %v %v", files, err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(f.cfg.DataDir, autoSnapshotDir, "*.tmp")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var state bytes.Buffer
		meta, err := snapfile.Read(bytes.NewReader(b), &state)
		if err != nil {
			t.Fatalf("%s does not verify: %v", path, err)
		}
		restored := fsm.New(fsm.Config{})
		if err := restored.Restore(nopCloser{&state}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := restored.View().Index(); got != meta.Index || got != snapshotIndex(t, path) || len(meta.Servers) != 3 {
			t.Errorf("%s: state index %d, archive %+v", path, got, meta)
		}
	}
	newest := fsm.New(fsm.Config{})
	b, _ := os.ReadFile(files[1])
	var state bytes.Buffer
	snapfile.Read(bytes.NewReader(b), &state)
	newest.Restore(nopCloser{&state})
	if newest.View().Get(api.ConfigMap, "default", "round3-0") == nil {
		t.Error("the newest periodic snapshot lacks the last write before it")
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }
