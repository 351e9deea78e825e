package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"orch.dev/orch/api"
)

// applyLog applies entries starting at index 1, in ApplyBatch calls of the
// sizes next returns.
func applyLog(f *FSM, entries [][]byte, next func() int) {
	for i := 0; i < len(entries); {
		n := min(max(next(), 1), len(entries)-i)
		logs := make([]*raft.Log, n)
		for j := range logs {
			logs[j] = &raft.Log{Index: uint64(i + j + 1), Type: raft.LogCommand, Data: entries[i+j]}
		}
		f.ApplyBatch(logs)
		i += n
	}
}

// goldenState is the fixed state kept in testdata/snapshots.
func goldenState(t testing.TB) *testFSM {
	f := newTestFSM(t)
	applyLog(f.FSM, commandLog(t, 7, 40), func() int { return 1 })
	f.index = 40
	return f
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := newTestFSM(t)
	applyLog(src.FSM, commandLog(t, 1, 300), func() int { return 1 })
	if src.View().Count(api.ConfigMap) == 0 || src.View().Count(api.Pod) == 0 || src.View().Count(api.Node) == 0 {
		t.Fatal("the generated log left too little state to test with")
	}
	snap := snapshotBytes(t, src.View())

	dst := newTestFSM(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(dst.View()), dump(src.View()); got != want {
		t.Fatalf("restored state differs:\n%s", firstDiff(got, want))
	}
	if dst.AppliedIndex() != 300 || dst.View().Index() != 300 {
		t.Fatalf("restored index: applied %d view %d", dst.AppliedIndex(), dst.View().Index())
	}
	if again := snapshotBytes(t, dst.View()); !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored state differs from the original")
	}
	// The secondary indexes are rebuilt too.
	for _, node := range append(genNodes, "") {
		if a, b := keys(func(fn func(*Record) bool) { src.View().PodsOnNode(node, fn) }),
			keys(func(fn func(*Record) bool) { dst.View().PodsOnNode(node, fn) }); strings.Join(a, ",") != strings.Join(b, ",") {
			t.Fatalf("pods on %q: %v after restore, %v before", node, b, a)
		}
	}
	src.View().List(api.Pod, "", func(r *Record) bool {
		for _, uid := range r.Owners {
			if n := len(keys(func(fn func(*Record) bool) { dst.View().Owned(api.Pod, uid, fn) })); n == 0 {
				t.Fatalf("owner index lost %s's owner %s", r.Key, uid)
			}
		}
		return true
	})
}

// TestSnapshotDeterministic applies the same log to three FSMs, built from
// three independent runs of the proposer and in different ApplyBatch
// groupings: their snapshots must be byte-identical.
func TestSnapshotDeterministic(t *testing.T) {
	const n = 400
	logs := [3][][]byte{commandLog(t, 42, n), commandLog(t, 42, n), commandLog(t, 42, n)}
	for i := range logs[0] {
		if !bytes.Equal(logs[0][i], logs[1][i]) || !bytes.Equal(logs[0][i], logs[2][i]) {
			t.Fatalf("the same commands encode differently (entry %d): proposals are not deterministic", i+1)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []func() int{func() int { return 1 }, func() int { return 7 }, func() int { return r.IntN(40) }}
	var snaps [3][]byte
	for i := range snaps {
		f := newTestFSM(t)
		applyLog(f.FSM, logs[i], sizes[i])
		snaps[i] = snapshotBytes(t, f.View())
	}
	if !bytes.Equal(snaps[0], snaps[1]) || !bytes.Equal(snaps[0], snaps[2]) {
		t.Fatalf("snapshots differ: %d, %d, %d bytes", len(snaps[0]), len(snaps[1]), len(snaps[2]))
	}
	if len(snaps[0]) < 10000 {
		t.Fatalf("snapshot of %d bytes: the log should leave more state", len(snaps[0]))
	}
}

// reseal replaces the CRC trailer of a snapshot body, so that a test can
// reach the checks behind it.
func reseal(body []byte) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
}

// buildSnapshot assembles a snapshot body (without CRC) from raw records.
func buildSnapshot(version byte, index uint64, records ...[]byte) []byte {
	b := append([]byte(snapshotMagic), version)
	b = binary.AppendUvarint(b, index)
	for _, r := range records {
		b = append(b, r...)
	}
	return b
}

func record(t byte, payload []byte) []byte {
	return append(binary.AppendUvarint([]byte{t}, uint64(len(payload))), payload...)
}

func objectRecord(t testing.TB, obj api.Object) []byte {
	p := appendString(nil, fKind, kindOf(t, obj).Kind)
	return record(recordObject, appendBytes(p, fObject, marshal(t, obj)))
}

func endRecord(count uint64) []byte { return record(recordEnd, binary.AppendUvarint(nil, count)) }

func TestSnapshotRecords(t *testing.T) {
	cm := configMap("ns", "a", nil)
	cm.ResourceVersion = "3"
	ok := func(name string, body []byte, wantIndex uint64) {
		t.Helper()
		db, index, err := ReadSnapshot(bytes.NewReader(reseal(body)))
		if err != nil || index != wantIndex {
			t.Fatalf("%s: index %d, %v", name, index, err)
		}
		if rec, _ := db.Txn(false).First(api.ConfigMap.Resource, indexID, "ns/a"); rec == nil || rec.(*Record).Version != 3 {
			t.Fatalf("%s: record missing or with the wrong version: %v", name, rec)
		}
	}
	ok("plain", buildSnapshot(1, 9, objectRecord(t, cm), endRecord(1)), 9)
	ok("skippable record from a newer version", buildSnapshot(1, 9, record(0x80|5, []byte("later")), objectRecord(t, cm), endRecord(1)), 9)

	bad := map[string][]byte{
		"newer format version": buildSnapshot(2, 9, objectRecord(t, cm), endRecord(1)),
		"format version 0":     buildSnapshot(0, 9, objectRecord(t, cm), endRecord(1)),
		"unknown record type":  buildSnapshot(1, 9, record(5, []byte("?")), objectRecord(t, cm), endRecord(1)),
		"count mismatch":       buildSnapshot(1, 9, objectRecord(t, cm), endRecord(2)),
		"unknown kind":         buildSnapshot(1, 9, record(recordObject, appendBytes(appendString(nil, fKind, "Widget"), fObject, nil)), endRecord(1)),
		"undecodable object":   buildSnapshot(1, 9, record(recordObject, appendBytes(appendString(nil, fKind, "ConfigMap"), fObject, []byte{0xff})), endRecord(1)),
		"malformed record":     buildSnapshot(1, 9, record(recordObject, []byte{0x0a, 0x09}), endRecord(1)),
		"no end record":        buildSnapshot(1, 9, objectRecord(t, cm)),
		"huge record length":   buildSnapshot(1, 9, binary.AppendUvarint([]byte{recordObject}, 1<<40)),
		"wrong magic":          append([]byte("ORCHSNAQ"), buildSnapshot(1, 9, endRecord(0))[len(snapshotMagic):]...),
	}
	for name, body := range bad {
		if _, _, err := ReadSnapshot(bytes.NewReader(reseal(body))); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: ReadSnapshot error %v, want ErrBadSnapshot", name, err)
		}
	}
	if _, _, err := ReadSnapshot(bytes.NewReader(reseal(bad["newer format version"]))); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("a newer format should be refused for its version, not its checksum: %v", err)
	}
}

// TestRestoreRefusesBadSnapshots corrupts a snapshot every way it can and
// restores it over a populated FSM, whose state must survive each refusal.
func TestRestoreRefusesBadSnapshots(t *testing.T) {
	small := newTestFSM(t)
	small.mustApply(&Batch{Commands: []Command{createCmd(t, namespace("ns")), createCmd(t, pod("ns", "p", "busybox")),
		createCmd(t, configMap("ns", "a", map[string]string{"k": "v"})), createCmd(t, node("n1"))}})
	snap := snapshotBytes(t, small.View())
	target := newTestFSM(t)
	applyLog(target.FSM, commandLog(t, 3, 30), func() int { return 3 })
	before, applied, base := dump(target.View()), target.AppliedIndex(), target.History().Base()
	_, wake, _ := target.History().Since(applied, nil)

	refuse := func(name string, data []byte) {
		t.Helper()
		err := target.Restore(io.NopCloser(bytes.NewReader(data)))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: Restore error %v, want ErrBadSnapshot", name, err)
		}
	}
	for cut := 0; cut < len(snap); cut++ {
		refuse("truncated", snap[:cut])
	}
	for i := range snap {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			flipped := append([]byte(nil), snap...)
			flipped[i] ^= mask
			refuse("flipped byte", flipped)
		}
	}
	wrongMagic := append([]byte(nil), snap...)
	copy(wrongMagic, "NOTASNAP")
	refuse("wrong magic", wrongMagic)
	newer := append([]byte(nil), snap[:len(snap)-4]...)
	newer[len(snapshotMagic)] = snapshotVersion + 1
	refuse("newer version", reseal(newer))
	refuse("empty", nil)

	if got := dump(target.View()); got != before {
		t.Fatalf("a refused snapshot changed the state:\n%s", firstDiff(got, before))
	}
	if target.AppliedIndex() != applied || target.History().Base() != base || closed(wake) {
		t.Fatal("a refused snapshot touched the applied index or the history")
	}
	if err := target.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("the intact snapshot: %v", err)
	}
}

// TestFSMSnapshotPersist goes through raft's snapshot interfaces, with
// applies after Snapshot and before Persist: the snapshot holds the state
// at the time it was taken.
func TestFSMSnapshotPersist(t *testing.T) {
	f := goldenState(t)
	want := dump(f.View())
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f.mustApply(createCmd(t, namespace("after-snapshot")))

	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 40, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	dst := newTestFSM(t)
	if err := dst.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if got := dump(dst.View()); got != want {
		t.Fatalf("persisted snapshot differs from the state it was taken at:\n%s", firstDiff(got, want))
	}

	failing := &failingSink{}
	snap, _ = f.Snapshot()
	if err := snap.Persist(failing); err == nil || !failing.cancelled || failing.closed {
		t.Fatalf("Persist to a failing sink: err %v cancelled %v closed %v", err, failing.cancelled, failing.closed)
	}
}

type failingSink struct{ cancelled, closed bool }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }
func (s *failingSink) Close() error              { s.closed = true; return nil }
func (s *failingSink) ID() string                { return "failing" }
func (s *failingSink) Cancel() error             { s.cancelled = true; return nil }

// TestGoldenSnapshot: this version writes the golden snapshot of its format
// version byte for byte, and every golden snapshot in testdata, including
// those of older format versions, still restores to the state recorded
// beside it.
func TestGoldenSnapshot(t *testing.T) {
	f := goldenState(t)
	name := filepath.Join("snapshots", "v1")
	golden(t, name+".snap", snapshotBytes(t, f.View()))
	golden(t, name+".txt", []byte(dump(f.View())))

	files, err := filepath.Glob(filepath.Join("testdata", "snapshots", "*.snap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("golden snapshots: %v %v", files, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(file, ".snap") + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		dst := newTestFSM(t)
		if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatalf("%s no longer restores: %v", file, err)
		}
		if got := dump(dst.View()); got != string(want) {
			t.Fatalf("%s restores to a different state:\n%s", file, firstDiff(got, string(want)))
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, a, b)
		}
	}
	return "(equal)"
}
