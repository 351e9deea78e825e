package suite

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/fsm"
)

// InProcResult is one in-process snapshot round trip of the FSM.
type InProcResult struct {
	Run        int     `json:"run"`
	Objects    int     `json:"objects"`
	WriteSecs  float64 `json:"write_seconds"`   // fsm.WriteSnapshot to a file
	SyncSecs   float64 `json:"fsync_seconds"`   // then fsync of that file
	ReadSecs   float64 `json:"read_seconds"`    // fsm.ReadSnapshot from the file
	RestoreSec float64 `json:"restore_seconds"` // FSM.Restore from the file, into a new FSM
	Bytes      int64   `json:"bytes"`
}

// InProcBuild is how long building the FSM took.
type InProcBuild struct {
	Objects   int     `json:"objects"`
	ApplySecs float64 `json:"apply_seconds"`
	PerSec    float64 `json:"per_sec"`
	HeapMiB   float64 `json:"heap_mib"` // live heap after a GC, FSM built
}

// InProc builds an FSM holding n 1 KB ConfigMaps by applying Create
// commands (in batches of 512 entries, as Raft hands them to the FSM with
// MaxAppendEntries 512), then, runs times, writes a snapshot to a file and
// reads and restores it. A GC runs before each timed step so that garbage
// from the previous step is not charged to it.
func InProc(env *Env, n, runs int, progress func(string)) (InProcBuild, []InProcResult) {
	f := fsm.New(fsm.Config{})
	var index uint64
	var batch []*raft.Log
	flush := func() {
		for i, r := range f.ApplyBatch(batch) {
			if res, ok := r.(*fsm.Result); !ok || res.Err != nil {
				env.Fatalf("applying entry %d: %v", batch[i].Index, r)
			}
		}
		batch = batch[:0]
	}
	add := func(kind string, obj interface{ Marshal() ([]byte, error) }) {
		b, err := obj.Marshal()
		if err != nil {
			env.Fatal(err)
		}
		index++
		batch = append(batch, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: fsm.Encode(&fsm.Create{Kind: kind, Object: b})})
		if len(batch) == 512 {
			flush()
		}
	}
	created := metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	add("Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "ns-default", CreationTimestamp: created},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}})
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, ValueSize)
	runtime.GC()
	t0 := time.Now()
	for i := range n {
		cm := ConfigMap("default", fmt.Sprintf("cm-%06d", i), value(r, buf))
		cm.UID = types.UID(fmt.Sprintf("uid-%06d", i))
		cm.CreationTimestamp = created
		add("ConfigMap", cm)
	}
	flush()
	build := InProcBuild{Objects: n, ApplySecs: time.Since(t0).Seconds()}
	build.PerSec = float64(n) / build.ApplySecs
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	build.HeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	progress(fmt.Sprintf("in-process: applied %d creates in %.2f s (%.0f/s), heap %.0f MiB", n, build.ApplySecs, build.PerSec, build.HeapMiB))

	dir := env.TempDir()
	var out []InProcResult
	for run := 1; run <= runs; run++ {
		path := filepath.Join(dir, "snapshot")
		res := InProcResult{Run: run, Objects: n}
		file, err := os.Create(path)
		if err != nil {
			env.Fatal(err)
		}
		runtime.GC()
		t := time.Now()
		if err := fsm.WriteSnapshot(file, f.View()); err != nil {
			env.Fatal(err)
		}
		res.WriteSecs = time.Since(t).Seconds()
		t = time.Now()
		if err := file.Sync(); err != nil {
			env.Fatal(err)
		}
		res.SyncSecs = time.Since(t).Seconds()
		st, _ := file.Stat()
		res.Bytes = st.Size()
		file.Close()

		runtime.GC()
		file, err = os.Open(path)
		if err != nil {
			env.Fatal(err)
		}
		t = time.Now()
		_, idx, err := fsm.ReadSnapshot(file)
		res.ReadSecs = time.Since(t).Seconds()
		file.Close()
		if err != nil || idx != index {
			env.Fatalf("ReadSnapshot: index %d (want %d): %v", idx, index, err)
		}

		runtime.GC()
		file, err = os.Open(path)
		if err != nil {
			env.Fatal(err)
		}
		g := fsm.New(fsm.Config{})
		t = time.Now()
		if err := g.Restore(file); err != nil { // closes the file
			env.Fatal(err)
		}
		res.RestoreSec = time.Since(t).Seconds()
		if g.AppliedIndex() != index {
			env.Fatalf("restored FSM at index %d, want %d", g.AppliedIndex(), index)
		}
		out = append(out, res)
		progress(fmt.Sprintf("in-process snapshot %d: write %.2f s + fsync %.2f s, read %.2f s, restore %.2f s, %.1f MiB",
			run, res.WriteSecs, res.SyncSecs, res.ReadSecs, res.RestoreSec, float64(res.Bytes)/(1<<20)))
		os.Remove(path)
	}
	return build, out
}
