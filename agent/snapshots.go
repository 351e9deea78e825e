package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/snapfile"
)

// Snapshot archives (`orchctl operator snapshot save`, the periodic saves
// in DATA_DIR/snapshots) hold a consistent view of the FSM in the format
// of Raft snapshots, wrapped by internal/snapfile with checksums.

// stagedState is the FSM snapshot stream of a view, written to a temporary
// file in the data dir so that its size is known before the archive is.
type stagedState struct {
	f    *os.File
	size int64
}

func (a *Agent) stageState(view *fsm.View) (*stagedState, error) {
	tmp, err := os.CreateTemp(a.cfg.DataDir, "snapshot-save-*")
	if err != nil {
		return nil, err
	}
	s := &stagedState{f: tmp}
	if err := fsm.WriteSnapshot(tmp, view); err != nil {
		s.close()
		return nil, fmt.Errorf("writing snapshot: %w", err)
	}
	if s.size, err = tmp.Seek(0, io.SeekCurrent); err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stagedState) close() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// writeArchive writes the staged state as a snapshot archive.
func (a *Agent) writeArchive(w io.Writer, view *fsm.View, s *stagedState) error {
	sm := snapfile.Meta{Index: view.Index(), Term: a.raft.CurrentTerm(), CreatedAt: time.Now().UTC(), OrchVersion: a.cfg.Version}
	if peers, err := a.peers(); err == nil {
		for _, p := range peers {
			sm.Servers = append(sm.Servers, snapfile.Server{ID: p.ID, Address: p.Address, Voter: p.Voter})
		}
	}
	return snapfile.Write(w, sm, bufio.NewReaderSize(s.f, 1<<20), s.size)
}

// Periodic snapshots: every server saves its own state (a consistent view,
// as `snapshot save --stale` would) every AutoSnapshotInterval into
// DATA_DIR/snapshots and keeps the newest AutoSnapshotRetain.
const (
	autoSnapshotDir    = "snapshots"
	autoSnapshotPrefix = "orch-"
	autoSnapshotSuffix = ".snap"
)

// DefaultAutoSnapshotRetain is how many periodic snapshots are kept when
// the configuration does not say.
const DefaultAutoSnapshotRetain = 24

func (a *Agent) autoSnapshotLoop() {
	dir := filepath.Join(a.cfg.DataDir, autoSnapshotDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.logger.Error("periodic snapshots disabled", "err", err)
		return
	}
	// A save interrupted by a crash leaves a temporary file.
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 0 {
		for _, f := range tmps {
			os.Remove(f)
		}
	}
	t := time.NewTicker(a.cfg.HA.AutoSnapshotInterval)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		view := a.fsm.View()
		if view.Index() == 0 || view.Index() == last {
			continue // nothing changed since the last save
		}
		if a.disk.low.Load() {
			a.logger.Warn("periodic snapshot skipped: the data dir is almost full")
			continue
		}
		start := time.Now()
		path, size, err := a.saveAutoSnapshot(dir, view)
		if err != nil {
			a.logger.Warn("periodic snapshot failed", "err", err)
			continue
		}
		last = view.Index()
		a.logger.Info("saved periodic snapshot", "path", path, "index", view.Index(), "bytes", size, "duration", time.Since(start).Round(time.Millisecond))
		if err := pruneAutoSnapshots(dir, a.cfg.HA.AutoSnapshotRetain); err != nil {
			a.logger.Warn("removing old periodic snapshots", "err", err)
		}
	}
}

// saveAutoSnapshot writes the archive to NAME.tmp, syncs it and renames it
// into place, so a listed snapshot file is always complete.
func (a *Agent) saveAutoSnapshot(dir string, view *fsm.View) (string, int64, error) {
	staged, err := a.stageState(view)
	if err != nil {
		return "", 0, err
	}
	defer staged.close()
	// The index leads the name: retention must not trust the clock of an
	// edge machine without a battery-backed one.
	name := fmt.Sprintf("%s%020d-%s%s", autoSnapshotPrefix, view.Index(), time.Now().UTC().Format("20060102T150405Z"), autoSnapshotSuffix)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = a.writeArchive(bw, view, staged)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		os.Remove(path + ".tmp")
		return "", 0, err
	}
	return path, size, syncDir(dir)
}

// AutoSnapshots lists the periodic snapshots in dataDir, oldest first.
func AutoSnapshots(dataDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, autoSnapshotDir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, autoSnapshotPrefix) && strings.HasSuffix(n, autoSnapshotSuffix) && e.Type().IsRegular() {
			out = append(out, filepath.Join(dataDir, autoSnapshotDir, n))
		}
	}
	slices.Sort(out) // names start with the zero-padded index
	return out, nil
}

func pruneAutoSnapshots(dir string, retain int) error {
	all, err := AutoSnapshots(filepath.Dir(dir))
	if err != nil {
		return err
	}
	for len(all) > retain {
		if err := os.Remove(all[0]); err != nil {
			return err
		}
		all = all[1:]
	}
	return nil
}
