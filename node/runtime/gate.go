package runtime

import "context"

// gate bounds how many of one kind of step run at once. A burst of pod
// starts is CPU- and kernel-bound (CNI plugin and runc processes, veth
// pairs made under the kernel's one network configuration lock): with
// every pod at every step at once, each step of each pod takes as long as
// the whole burst, and contention makes the burst itself slower. Through
// a gate pods go by in about the order they came, so the first are ready
// long before the last (blocked senders on a channel are served in order).
type gate chan struct{}

func newGate(n int) gate { return make(gate, max(n, 1)) }

// enter waits for a place, or for ctx to end.
func (g gate) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case g <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g gate) leave() { <-g }
