package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

// fuzzSeeds are the golden commands plus commands aimed at the objects of
// fuzzSetup, so that mutations start from entries that do something.
func fuzzSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "commands", "*.bin"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	p := pod("ns", "p", "busybox:2")
	p.Finalizers = nil
	d := deployment("ns", "d", 5)
	d.ResourceVersion = "2"
	for _, c := range []Command{
		updateCmd(f, p),
		statusCmd(f, &corev1.Pod{ObjectMeta: meta("ns", "p"), Status: corev1.PodStatus{Phase: corev1.PodRunning}}),
		updateCmd(f, d),
		&Delete{Kind: "Namespace", Name: "ns"},
		&Delete{Kind: "Namespace", Name: "default"},
		&Delete{Kind: "Deployment", Namespace: "ns", Name: "d", Orphan: true},
		&Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: 1e18},
		createCmd(f, configMap("dying", "x", nil)),
		&Batch{Commands: []Command{createCmd(f, namespace("new")), createCmd(f, configMap("new", "a", nil)),
			&Delete{Kind: "ConfigMap", Namespace: "ns", Name: "a", UID: "uid-ns-a"}}},
	} {
		f.Add(Encode(c))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(CreateType), 0})
	f.Add([]byte{99, 1})
	f.Add([]byte{99 | byte(IgnoreUnknownFlag), 1})
}

func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			if cmd != nil {
				t.Fatalf("Decode returned a command and an error: %v", err)
			}
			if errors.Is(err, ErrBadCommand) == errors.Is(err, ErrFromTheFuture) {
				t.Fatalf("Decode error %v is not exactly one of ErrBadCommand and ErrFromTheFuture", err)
			}
			return
		}
		if cmd == nil {
			if len(data) < 2 || MessageType(data[0])&IgnoreUnknownFlag == 0 {
				t.Fatalf("Decode skipped %x, which is not flagged ignorable", data)
			}
			return
		}
		// What decodes re-encodes to a fixed point.
		enc := Encode(cmd)
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded %T does not decode: %v", cmd, err)
		}
		if !bytes.Equal(Encode(again), enc) {
			t.Fatalf("encoding is not a fixed point for %T", cmd)
		}
	})
}

// fuzzSetup is the log of the state every FuzzApply input is applied to.
func fuzzSetup(t testing.TB) [][]byte {
	p := pod("ns", "p", "busybox")
	p.Finalizers = []string{"orch.dev/f"}
	d := deployment("ns", "d", 1)
	cmds := []Command{
		createCmd(t, namespace("default")),
		&Batch{Commands: []Command{createCmd(t, namespace("ns")), createCmd(t, namespace("dying", "orch.dev/f")),
			createCmd(t, configMap("ns", "a", map[string]string{"k": "v"})), createCmd(t, p), createCmd(t, d),
			createCmd(t, replicaSet("ns", "rs", d)), createCmd(t, node("n1"))}},
		&Delete{Kind: "Namespace", Name: "dying", DeletionTime: 1},
	}
	out := make([][]byte, len(cmds))
	for i, c := range cmds {
		out[i] = Encode(c)
	}
	return out
}

var sentinels = []error{ErrNotFound, ErrAlreadyExists, ErrConflict, ErrForbidden, ErrBadCommand, ErrFromTheFuture}

// checkResult fails unless every error in res wraps one of the sentinels.
func checkResult(t *testing.T, res *Result) {
	t.Helper()
	if res.Err != nil {
		known := false
		for _, s := range sentinels {
			known = known || errors.Is(res.Err, s)
		}
		if !known {
			t.Fatalf("result error %q wraps no sentinel error", res.Err)
		}
		if res.Record != nil || res.Deleted {
			t.Fatalf("a failed result carries a record: %+v", res)
		}
	}
	for _, sub := range res.Batch {
		checkResult(t, sub)
	}
}

// checkInvariants verifies what must hold of any state the FSM produces.
func checkInvariants(t *testing.T, f *FSM, index uint64) {
	t.Helper()
	v := f.View()
	if v.Index() != index || f.AppliedIndex() != index {
		t.Fatalf("view index %d applied %d, want %d", v.Index(), f.AppliedIndex(), index)
	}
	for _, k := range api.Kinds {
		v.List(k, "", func(r *Record) bool {
			if rv, err := ParseRV(r.Obj.GetResourceVersion()); err != nil || rv != r.Version || rv == 0 || rv > index {
				t.Fatalf("%s %s: resourceVersion %q, version %d", k.Kind, r.Key, r.Obj.GetResourceVersion(), r.Version)
			}
			if r.Key != ObjectKey(k, r.Obj.GetNamespace(), r.Obj.GetName()) || r.Obj.GetName() == "" {
				t.Fatalf("%s stored under key %q", k.Kind, r.Key)
			}
			if k.Namespaced && v.Get(api.Namespace, "", r.Obj.GetNamespace()) == nil {
				t.Fatalf("%s %s outlived its namespace", k.Kind, r.Key)
			}
			if !json.Valid(r.JSON()) {
				t.Fatalf("%s %s: invalid JSON", k.Kind, r.Key)
			}
			if len(r.Owners) != len(r.Obj.GetOwnerReferences()) {
				t.Fatalf("%s %s: owner index out of date", k.Kind, r.Key)
			}
			return true
		})
	}
	checkUsage(t, f)
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, v); err != nil {
		t.Fatal(err)
	}
	g := New(Config{HistorySize: 1})
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatalf("the state does not survive a snapshot: %v", err)
	}
	if dump(g.View()) != dump(v) {
		t.Fatal("the state changes through a snapshot")
	}
	checkUsage(t, g)
}

// FuzzApply feeds arbitrary log entries to an FSM: it must never panic,
// must reject garbage with a clear error, must halt only on commands from a
// newer version, and must leave a consistent state.
func FuzzApply(f *testing.F) {
	fuzzSeeds(f)
	setup := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		halts := &haltRecorder{}
		fsm := New(Config{Halt: halts.halt, HistorySize: 64})
		applyLog(fsm, setup, func() int { return 1 })
		const index = 100
		out := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		res, ok := out.(*Result)
		if !ok || res == nil {
			t.Fatalf("Apply returned %T", out)
		}
		checkResult(t, res)

		cmd, derr := Decode(data)
		switch {
		case derr != nil:
			for _, s := range []error{ErrBadCommand, ErrFromTheFuture} {
				if errors.Is(derr, s) != errors.Is(res.Err, s) {
					t.Fatalf("Decode error %v but apply error %v", derr, res.Err)
				}
			}
		case cmd == nil:
			if res.Err != nil || res.Record != nil || res.Batch != nil {
				t.Fatalf("ignorable command produced %+v", res)
			}
		default:
			if b, ok := cmd.(*Batch); ok && (len(res.Batch) != len(b.Commands) || res.Err != nil) {
				t.Fatalf("batch of %d commands: %d results, error %v", len(b.Commands), len(res.Batch), res.Err)
			}
		}
		wantHalt := errors.Is(derr, ErrFromTheFuture)
		if h := halts.calls(); wantHalt != (len(h) == 1) || len(h) > 1 || (len(h) == 1 && !errors.Is(h[0], ErrFromTheFuture)) {
			t.Fatalf("Halt calls %v for decode error %v", h, derr)
		}
		evs, _, err := fsm.History().Since(uint64(len(setup)), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Index() != index {
				t.Fatalf("event %s %s at index %d, want %d", e.Type, e.Record.Key, e.Index(), index)
			}
		}
		if res.Err != nil && len(evs) != 0 {
			t.Fatalf("failed command (%v) emitted %d events", res.Err, len(evs))
		}
		checkInvariants(t, fsm, index)
	})
}

// FuzzApplySequence applies generated command logs (valid commands that
// collide, miss and cascade) to two FSMs in different ApplyBatch groupings:
// the invariants must hold and the two must agree byte for byte.
func FuzzApplySequence(f *testing.F) {
	for seed := uint64(0); seed < 4; seed++ {
		f.Add(seed, uint8(60), uint8(5))
	}
	f.Fuzz(func(t *testing.T, seed uint64, n, batch uint8) {
		entries := commandLog(t, seed, int(n)+len(genNamespaces))
		a := New(Config{HistorySize: 16})
		b := New(Config{HistorySize: 16})
		applyLog(a, entries, func() int { return 1 })
		applyLog(b, entries, func() int { return int(batch) })
		checkInvariants(t, a, uint64(len(entries)))
		if !bytes.Equal(snapshotBytes(t, a.View()), snapshotBytes(t, b.View())) {
			t.Fatal("the same log applied in different batches gives different states")
		}
	})
}
