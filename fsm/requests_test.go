package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// A retried command (same request ID) is applied once while its ID is
// remembered; IDs are forgotten in the order they were applied once they
// leave the window; and an FSM restored from a snapshot forgets exactly
// what one that never restored forgets, so replicas cannot diverge.
func TestRequestIDsAreRememberedForTheWindow(t *testing.T) {
	a, b := newTestFSM(t), newTestFSM(t)
	a.requestWindow, b.requestWindow = 5, 5
	apply := func(cmd Command) (*Result, *Result) { return a.apply(cmd), b.apply(cmd) }
	apply(createCmd(t, namespace("ns")))

	create := func(name, id string) Command {
		c := createCmd(t, configMap("ns", name, nil))
		c.RequestID = id
		return c
	}
	for i := range 4 {
		apply(create(fmt.Sprint("cm", i), fmt.Sprint("r", i)))
	}
	// A retry of r1 (its create succeeded) changes nothing.
	ra, _ := apply(create("cm1", "r1"))
	if ra.Err != nil || ra.Duplicate == nil || ra.Record.Version != 3 {
		t.Fatalf("retried create: %+v", ra)
	}
	// b restores a snapshot of itself midway; both go on applying.
	snap := snapshotBytes(t, b.View())
	if err := b.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	for i := 4; i < 12; i++ {
		apply(create(fmt.Sprint("cm", i), fmt.Sprint("r", i)))
	}
	// r0..r3 were applied at indexes 2..5, the retry took 6, r4..r11 took
	// 7..14. With a window of 5 at index 14, entries before 9 are
	// forgotten: r0..r5; r6 (at 9) onwards are remembered.
	for i := range 12 {
		id := fmt.Sprint("r", i)
		want := i >= 6
		if got := a.View().Request(id) != nil; got != want {
			t.Errorf("%s remembered=%v, want %v", id, got, want)
		}
	}
	if !bytes.Equal(snapshotBytes(t, a.View()), snapshotBytes(t, b.View())) {
		t.Fatal("an FSM restored from a snapshot forgot different request IDs than one that did not")
	}
	// Once forgotten, the same ID is a new request: the create runs again
	// (and fails, the object exists).
	if r, _ := apply(create("cm0", "r0")); r.Duplicate != nil || r.Err == nil {
		t.Fatalf("a forgotten request ID was still deduplicated: %+v", r)
	}
}
