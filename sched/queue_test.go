package sched

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// t0 is the queue tests' clock: the Queue takes times, never reads one.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// qpod is a pending pod created `created` seconds after t0.
func qpod(ns, name string, prio int32, created int) *PodInfo {
	p := pod(ns, name, "", "", prio)
	p.CreationTimestamp = metav1.NewTime(t0.Add(time.Duration(created) * time.Second))
	return NewPodInfo(p)
}

func keys(ps []*PodInfo) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Key
	}
	return out
}

func popAll(q *Queue) []string { return keys(q.Pop(1 << 20)) }

func TestQueuePriorityFirst(t *testing.T) {
	q := NewQueue()
	for _, p := range []*PodInfo{qpod("a", "low", -5, 0), qpod("b", "mid", 10, 1), qpod("c", "high", 1000, 2), qpod("a", "zero", 0, 3), qpod("b", "high2", 1000, 4)} {
		q.Add(p, false)
	}
	want := []string{"c/high", "b/high2", "b/mid", "a/zero", "a/low"}
	if got := popAll(q); !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if q.Len() != 0 {
		t.Errorf("Len = %d after popping everything", q.Len())
	}
}

// A namespace that floods the queue cannot starve another at the same
// priority: pods alternate between namespaces, oldest first within each.
func TestQueueFairBetweenNamespaces(t *testing.T) {
	q := NewQueue()
	for i := range 6 {
		q.Add(qpod("flood", "f"+string(rune('0'+i)), 0, i), false)
	}
	q.Add(qpod("small", "s0", 0, 10), false)
	q.Add(qpod("small", "s1", 0, 11), false)
	q.Add(qpod("other", "o0", 0, 12), false)
	// A higher priority is still served first, whatever its namespace.
	q.Add(qpod("flood", "urgent", 5, 20), false)

	// One at a time, as a scheduler taking small batches would.
	var got []string
	for q.Len() > 0 {
		got = append(got, keys(q.Pop(1))...)
		if len(got) == 3 {
			// A namespace arriving mid-round joins the end of the round.
			q.Add(qpod("late", "l0", 0, 30), false)
		}
	}
	want := []string{"flood/urgent", "flood/f0", "small/s0", "other/o0", "late/l0", "flood/f1", "small/s1", "flood/f2", "flood/f3", "flood/f4", "flood/f5"}
	if !slices.Equal(got, want) {
		t.Errorf("order\n%v\nwant\n%v", got, want)
	}
}

func TestQueueFIFOWithinNamespace(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "newer", 0, 5), false)
	q.Add(qpod("ns", "older", 0, 1), false)
	q.Add(qpod("ns", "same-second-first", 0, 7), false)
	q.Add(qpod("ns", "same-second-second", 0, 7), false)
	want := []string{"ns/older", "ns/newer", "ns/same-second-first", "ns/same-second-second"}
	if got := popAll(q); !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// A refused binding is retried after an exponential backoff (10ms,
// doubling, at most a second); the queue reports when the next one is due.
func TestQueueBackoff(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "p", 0, 0), false)
	now := t0
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond,
		160 * time.Millisecond, 320 * time.Millisecond, 640 * time.Millisecond, time.Second, time.Second}
	for i, d := range want {
		if got := popAll(q); len(got) != 1 {
			t.Fatalf("attempt %d: popped %v", i, got)
		}
		q.Backoff("ns/p", now)
		if q.Len() != 0 || !q.Has("ns/p") {
			t.Fatalf("attempt %d: in backoff, Len = %d, Has = %v", i, q.Len(), q.Has("ns/p"))
		}
		if next := q.Flush(now.Add(d - time.Millisecond)); !next.Equal(now.Add(d)) || q.Len() != 0 {
			t.Fatalf("attempt %d: next retry at %v (active %d), want %v", i, next.Sub(now), q.Len(), d)
		}
		if next := q.Flush(now.Add(d)); !next.IsZero() || q.Len() != 1 {
			t.Fatalf("attempt %d: after %v: active %d, next %v", i, d, q.Len(), next)
		}
		now = now.Add(d)
	}
}

// A pod that fits nowhere waits for a cluster change that can help it,
// never for a timer: no amount of time brings it back, an unrelated
// change does not, a related one does.
func TestQueueParkedUntilClusterChange(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "p", 0, 0), false)
	q.Add(qpod("ns", "other", 0, 1), false)
	popAll(q)
	q.Park("ns/p", NodeAdded|NodeAllocatableChanged, t0)
	q.Park("ns/other", NodeTaintsChanged, t0)
	if q.Parked() != 2 || q.Len() != 0 {
		t.Fatalf("Parked = %d, Len = %d", q.Parked(), q.Len())
	}
	if next := q.Flush(t0.Add(24 * time.Hour)); !next.IsZero() || q.Len() != 0 {
		t.Fatalf("a parked pod came back with time alone (next %v, active %d)", next, q.Len())
	}
	if n := q.Move(0, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("no change woke %d pods", n)
	}
	if n := q.Move(AssignedPodAdded|NodeLabelsChanged, t0.Add(time.Hour)); n != 0 || q.Parked() != 2 {
		t.Fatalf("an unrelated change woke %d pods", n)
	}
	// Woken right after failing: it still serves its backoff.
	if n := q.Move(NodeAllocatableChanged, t0.Add(time.Millisecond)); n != 1 || q.Parked() != 1 {
		t.Fatalf("a related change woke %d pods (%d parked)", n, q.Parked())
	}
	if q.Len() != 0 {
		t.Fatal("a woken pod skipped its backoff")
	}
	if next := q.Flush(t0.Add(time.Millisecond)); !next.Equal(t0.Add(initialBackoff)) {
		t.Fatalf("woken pod due at %v, want after the initial backoff", next.Sub(t0))
	}
	q.Flush(t0.Add(initialBackoff))
	if got := popAll(q); !slices.Equal(got, []string{"ns/p"}) {
		t.Fatalf("popped %v, want the woken pod", got)
	}
}

// A pod that failed against a cluster that has changed since it was popped
// is retried (after its backoff) rather than parked: the change it missed
// may be the one it needed.
func TestQueueChangeWhileInFlightRetries(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "p", 0, 0), false)
	popAll(q)
	q.Move(NodeAdded, t0)
	q.Park("ns/p", NodeAdded, t0)
	if q.Parked() != 0 {
		t.Fatal("parked despite a change during its attempt")
	}
	q.Flush(t0.Add(initialBackoff))
	if q.Len() != 1 {
		t.Fatal("not retried after its backoff")
	}

	// The same when the pod itself changed during the attempt.
	popAll(q)
	q.Add(qpod("ns", "p", 0, 0), true)
	q.Park("ns/p", NodeAdded, t0.Add(time.Hour))
	if q.Parked() != 0 {
		t.Fatal("parked despite its own update during the attempt")
	}
}

// An update of a parked pod's spec or labels retries it at once; a status
// update (the scheduler's own condition) does not.
func TestQueueUpdateOfParkedPod(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "p", 0, 0), false)
	popAll(q)
	q.Park("ns/p", NodeAdded, t0)
	q.Add(qpod("ns", "p", 0, 0), false)
	if q.Len() != 0 || q.Parked() != 1 {
		t.Fatalf("status-only update: active %d, parked %d", q.Len(), q.Parked())
	}
	q.Add(qpod("ns", "p", 0, 0), true)
	if q.Len() != 1 || q.Parked() != 0 {
		t.Fatalf("spec update: active %d, parked %d", q.Len(), q.Parked())
	}
}

func TestQueueDeleteInEveryState(t *testing.T) {
	q := NewQueue()
	for i, name := range []string{"active", "parked", "backoff", "inflight", "keep"} {
		q.Add(qpod("ns", name, 0, i), false)
	}
	popAll(q)
	q.Park("ns/parked", NodeAdded, t0)
	q.Backoff("ns/backoff", t0)
	q.Requeue("ns/active")
	q.Requeue("ns/keep")
	for _, name := range []string{"active", "parked", "backoff", "inflight"} {
		q.Delete("ns/" + name)
		if q.Has("ns/" + name) {
			t.Errorf("%s: still known after Delete", name)
		}
	}
	q.Move(AllEvents, t0.Add(time.Hour))
	q.Flush(t0.Add(time.Hour))
	if got := popAll(q); !slices.Equal(got, []string{"ns/keep"}) {
		t.Errorf("popped %v, want only the pod that was not deleted", got)
	}
	if q.Len() != 0 || q.Parked() != 0 {
		t.Errorf("Len %d, Parked %d after deleting everything", q.Len(), q.Parked())
	}
}

// Done forgets a bound pod; later failures reported for it are ignored.
func TestQueueDoneForgets(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "p", 0, 0), false)
	popAll(q)
	q.Done("ns/p")
	q.Backoff("ns/p", t0)
	q.Park("ns/p", NodeAdded, t0)
	q.Move(AllEvents, t0.Add(time.Hour))
	q.Flush(t0.Add(time.Hour))
	if q.Has("ns/p") || q.Len() != 0 {
		t.Error("a bound pod came back")
	}
}

// A change of an active pod's priority moves it to its new place.
func TestQueueReprioritise(t *testing.T) {
	q := NewQueue()
	q.Add(qpod("ns", "a", 0, 0), false)
	q.Add(qpod("ns", "b", 0, 1), false)
	q.Add(qpod("ns", "b", 100, 1), true)
	if got := strings.Join(popAll(q), " "); got != "ns/b ns/a" {
		t.Errorf("order %s, want the reprioritised pod first", got)
	}
}
