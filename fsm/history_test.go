package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"orch.dev/orch/api"
)

// ev makes a history event at index with a key naming it.
func ev(index uint64, key string) Event {
	return Event{Type: Modified, Record: &Record{Kind: api.ConfigMap, Key: key, Version: index}}
}

func evKeys(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s@%d", e.Record.Key, e.Index()))
	}
	return out
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestHistorySince(t *testing.T) {
	h := NewHistory(10)
	evs, wake, err := h.Since(0, nil)
	if err != nil || len(evs) != 0 || wake == nil || closed(wake) {
		t.Fatalf("empty history: %v %v %v", evs, wake, err)
	}
	h.publish([]Event{ev(3, "a"), ev(3, "b"), ev(5, "c")})
	if !closed(wake) {
		t.Fatal("publish did not close the wake channel")
	}
	h.publish([]Event{ev(6, "d")})
	tests := []struct {
		after uint64
		want  []string
	}{
		{0, []string{"a@3", "b@3", "c@5", "d@6"}},
		{2, []string{"a@3", "b@3", "c@5", "d@6"}},
		{3, []string{"c@5", "d@6"}}, // both events of index 3 were seen
		{4, []string{"c@5", "d@6"}},
		{5, []string{"d@6"}},
		{6, nil},
		{100, nil}, // a version from the future waits for it
	}
	for _, tt := range tests {
		got, wake, err := h.Since(tt.after, nil)
		if err != nil || !reflect.DeepEqual(evKeys(got), tt.want) {
			t.Errorf("Since(%d) = %v, %v; want %v", tt.after, evKeys(got), err, tt.want)
		}
		if closed(wake) {
			t.Errorf("Since(%d) returned a closed wake channel with nothing new", tt.after)
		}
	}
	// Since appends to the caller's buffer.
	buf := []Event{ev(1, "mine")}
	got, _, _ := h.Since(5, buf)
	if !reflect.DeepEqual(evKeys(got), []string{"mine@1", "d@6"}) {
		t.Fatalf("Since with a buffer = %v", evKeys(got))
	}
}

func TestHistoryWake(t *testing.T) {
	h := NewHistory(4)
	_, w1, _ := h.Since(0, nil)
	h.publish(nil)
	if closed(w1) {
		t.Fatal("publishing nothing woke watchers")
	}
	_, w2, _ := h.Since(0, nil)
	if w1 != w2 {
		t.Fatal("wake channel replaced without a publish")
	}
	h.publish([]Event{ev(1, "a")})
	if !closed(w1) {
		t.Fatal("publish did not wake")
	}
	_, w3, _ := h.Since(1, nil)
	if closed(w3) {
		t.Fatal("the new wake channel is already closed")
	}
	h.Close()
	h.Close() // idempotent
	if !closed(w3) {
		t.Fatal("Close did not wake watchers")
	}
	if _, _, err := h.Since(0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Since after Close: %v", err)
	}
}

func TestHistoryOverflow(t *testing.T) {
	h := NewHistory(3)
	for i := uint64(1); i <= 5; i++ {
		h.publish([]Event{ev(i, fmt.Sprint("k", i))})
	}
	// Events 1 and 2 were dropped: a watch from 2 has seen everything it
	// can no longer get; a watch from 1 missed event 2.
	if h.Base() != 2 {
		t.Fatalf("base %d, want 2", h.Base())
	}
	if _, _, err := h.Since(1, nil); !errors.Is(err, ErrGone) {
		t.Fatalf("Since(1) after overflow: %v, want ErrGone", err)
	}
	if _, _, err := h.Since(0, nil); !errors.Is(err, ErrGone) {
		t.Fatalf("Since(0) after overflow: %v, want ErrGone", err)
	}
	got, _, err := h.Since(2, nil)
	if err != nil || !reflect.DeepEqual(evKeys(got), []string{"k3@3", "k4@4", "k5@5"}) {
		t.Fatalf("Since(2) = %v, %v", evKeys(got), err)
	}

	// One publish larger than the ring keeps its newest events.
	h.publish([]Event{ev(6, "x"), ev(6, "y"), ev(7, "z"), ev(8, "w")})
	if h.Base() != 6 {
		t.Fatalf("base %d, want 6", h.Base())
	}
	if _, _, err := h.Since(5, nil); !errors.Is(err, ErrGone) {
		t.Fatalf("Since(5) after a partly dropped index: %v, want ErrGone", err)
	}
	got, _, err = h.Since(6, nil)
	if err != nil || !reflect.DeepEqual(evKeys(got), []string{"z@7", "w@8"}) {
		t.Fatalf("Since(6) = %v, %v", evKeys(got), err)
	}

	one := NewHistory(0) // capacity is at least one
	one.publish([]Event{ev(1, "a"), ev(2, "b")})
	if got, _, err := one.Since(1, nil); err != nil || !reflect.DeepEqual(evKeys(got), []string{"b@2"}) {
		t.Fatalf("capacity-one history: %v, %v", evKeys(got), err)
	}
}

// TestFSMHistoryOverflow drives the ring through the FSM.
func TestFSMHistoryOverflow(t *testing.T) {
	f := &testFSM{FSM: New(Config{HistorySize: 4}), t: t}
	f.mustApply(createCmd(t, namespace("ns")))
	for i := 0; i < 5; i++ {
		f.mustApply(createCmd(t, configMap("ns", fmt.Sprint("c", i), nil)))
	}
	if _, _, err := f.History().Since(1, nil); !errors.Is(err, ErrGone) {
		t.Fatalf("Since(1): %v, want ErrGone", err)
	}
	wantEvents(t, f.events(2), "ADDED configmaps ns/c1 @3", "ADDED configmaps ns/c2 @4", "ADDED configmaps ns/c3 @5", "ADDED configmaps ns/c4 @6")
}

// TestHistoryResetOnRestore: history from before a restore describes
// another state, so it is dropped, watchers are woken, and watches resume
// only from the snapshot's index.
func TestHistoryResetOnRestore(t *testing.T) {
	src := newTestFSM(t)
	src.mustApply(createCmd(t, namespace("ns")))
	for i := 0; i < 4; i++ {
		src.mustApply(createCmd(t, configMap("ns", fmt.Sprint("c", i), nil)))
	}
	snap := snapshotBytes(t, src.View())

	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("other")))
	f.mustApply(createCmd(t, namespace("other2")))
	_, wake, _ := f.History().Since(2, nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !closed(wake) {
		t.Fatal("restore did not wake watchers")
	}
	if f.History().Base() != 5 || f.AppliedIndex() != 5 {
		t.Fatalf("after restore: base %d applied %d, want 5", f.History().Base(), f.AppliedIndex())
	}
	if _, _, err := f.History().Since(4, nil); !errors.Is(err, ErrGone) {
		t.Fatalf("Since(4) after restore at 5: %v, want ErrGone", err)
	}
	if evs := f.events(5); len(evs) != 0 {
		t.Fatalf("history after restore holds %v", describe(evs))
	}
	f.index = 5
	f.mustApply(createCmd(t, configMap("ns", "later", nil)))
	wantEvents(t, f.events(5), "ADDED configmaps ns/later @6")
}
