package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/snapfile"
)

// maxRestoreBytes bounds a restore upload, which is held in memory (the
// state it holds lives in memory on every server anyway).
const maxRestoreBytes = 1 << 30

// restoreIndexGap is how far past the leader's last log index a restored
// state is placed. raft.Restore puts it at max(its last index, ours)+1;
// with client writes paused only a configuration change can slip in
// between, and the gap keeps our index the one Raft uses.
const restoreIndexGap = 64

// applyGate lets a restore hold back new Raft entries and wait for those in
// flight: every proposal holds a read lock until its entry is done (the
// proposer waits for every future it gets).
type applyGate struct{ mu sync.RWMutex }

func (a *Agent) gatedApply(data []byte) raft.ApplyFuture {
	a.gate.mu.RLock()
	return &gatedFuture{ApplyFuture: a.raft.Apply(data, a.cfg.LeaderWait), a: a}
}

type gatedFuture struct {
	raft.ApplyFuture
	a    *Agent
	once sync.Once
}

func (f *gatedFuture) Error() error {
	err := f.ApplyFuture.Error()
	f.once.Do(func() {
		f.a.gate.mu.RUnlock()
		if err != nil {
			f.a.kickDisk() // perhaps the log store ran out of space
		}
	})
	return err
}

// RestoreResult is what POST /v1/operator/snapshot/restore answers.
type RestoreResult struct {
	// Index is the Raft index of the restored state on every server.
	Index uint64 `json:"index"`
	// SnapshotIndex is the index the snapshot was saved at.
	SnapshotIndex uint64 `json:"snapshotIndex"`
	Objects       int    `json:"objects"`
	DurationMs    int64  `json:"durationMs"`
}

// serveSnapshotRestore replaces the cluster state with a snapshot archive's
// (disaster recovery, possibly into a fresh cluster). The leader verifies
// the archive's checksums and decodes the whole state before anything
// changes, so a damaged file is refused with the cluster untouched. Then
// raft.Restore installs it on the leader and, as a snapshot, on every
// follower; the state's index is placed past every index served before, so
// every watch gets 410 Gone and relists.
func (a *Agent) serveSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRestoreBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("snapshot restore: the limit is %d bytes", maxRestoreBytes)))
		} else {
			writeError(w, apierrors.NewBadRequest("reading the snapshot: "+err.Error()))
		}
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	start := time.Now()
	refuse := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		a.logger.Warn("snapshot restore refused", "reason", msg)
		writeError(w, apierrors.NewBadRequest("snapshot refused, the cluster is unchanged: "+msg))
	}
	if len(body) == 0 {
		refuse("the snapshot is empty (0 bytes)")
		return
	}
	var state bytes.Buffer
	meta, err := snapfile.Read(bytes.NewReader(body), &state)
	if err != nil {
		refuse("%v", err)
		return
	}
	// Decoding the state up front matters: Raft panics when the FSM cannot
	// restore a snapshot it has already installed.
	staged := fsm.New(fsm.Config{})
	if err := staged.Restore(io.NopCloser(&state)); err != nil {
		refuse("state.bin: %v", err)
		return
	}
	objects := 0
	for _, k := range api.Kinds {
		objects += staged.View().Count(k)
	}

	a.gate.mu.Lock()
	defer a.gate.mu.Unlock()
	if a.raft.State() != raft.Leader {
		writeError(w, raft.ErrNotLeader)
		return
	}
	base := a.raft.LastIndex() + restoreIndexGap
	index := base + 1
	staged.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogNoop}}) // stamps the state with index
	var out bytes.Buffer
	if err := fsm.WriteSnapshot(&out, staged.View()); err != nil {
		writeError(w, fmt.Errorf("encoding the restored state: %w", err))
		return
	}
	size := int64(out.Len())
	a.logger.Warn("restoring the cluster state from a snapshot", "snapshot_index", meta.Index, "snapshot_created", meta.CreatedAt,
		"objects", objects, "index", index)
	rm := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: base, Term: a.raft.CurrentTerm(), Size: size}
	if err := a.raft.Restore(rm, &out, 10*a.cfg.LeaderWait); err != nil {
		writeError(w, fmt.Errorf("snapshot restore: %w", err))
		return
	}
	if got := a.raft.Stats()["last_snapshot_index"]; got != strconv.FormatUint(index, 10) {
		a.logger.Error("restored state index differs from Raft's; watches on this server may miss the restore", "state", index, "raft", got)
	}
	res := RestoreResult{Index: index, SnapshotIndex: meta.Index, Objects: objects, DurationMs: time.Since(start).Milliseconds()}
	a.logger.Info("restored the cluster state from a snapshot", "index", index, "objects", objects, "duration", time.Since(start).Round(time.Millisecond))
	writeJSON(w, http.StatusOK, res)
}
