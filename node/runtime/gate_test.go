package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGateBounds(t *testing.T) {
	g := newGate(2)
	ctx := context.Background()
	for range 2 {
		if err := g.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Full: a third waits until its context ends.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := g.enter(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("enter into a full gate: %v, want to wait until the deadline", err)
	}
	// A place left is taken by the next waiter.
	entered := make(chan error, 1)
	go func() { entered <- g.enter(ctx) }()
	g.leave()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	// An ended context is refused even when there is room.
	g.leave()
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := g.enter(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("enter with a cancelled context: %v, want context.Canceled", err)
	}
	if len(g) != 1 {
		t.Fatalf("%d places taken, want 1", len(g))
	}
}
