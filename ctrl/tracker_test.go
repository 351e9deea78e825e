package ctrl

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// tracker replays one server's change history from a view of its state,
// keeping the pods a selector matches, and calls check after every Raft
// index: every state any reader could have observed, not a sample of
// them. Every server applies the same log, so one server's history shows
// every committed state whoever leads, across leader changes. check runs
// on the tracker's goroutine only, so it may keep state of its own
// without locks; the test reads that state after finish.
type tracker struct {
	t     *testing.T
	a     *agent.Agent
	sel   labels.Selector
	check func(index uint64, pods map[string]*corev1.Pod) error

	// Owned by the run goroutine until done is closed.
	pods       map[string]*corev1.Pod
	created    []*corev1.Pod // every pod added after the start, in order
	removed    int           // pods that left the state after the start
	states     int           // indexes checked
	violations []string

	stop chan struct{}
	done chan struct{}
}

// track starts a tracker on the first server for the pods matching sel;
// check returns an error for a state that breaks an invariant.
func (tc *testCluster) track(sel string, check func(index uint64, pods map[string]*corev1.Pod) error) *tracker {
	tc.t.Helper()
	s, err := labels.Parse(sel)
	if err != nil {
		tc.t.Fatal(err)
	}
	tr := &tracker{t: tc.t, a: tc.Agents[0], sel: s, check: check, pods: map[string]*corev1.Pod{},
		stop: make(chan struct{}), done: make(chan struct{})}
	v := tr.a.View()
	v.List(api.Pod, "", func(r *fsm.Record) bool {
		if p := r.Obj.(*corev1.Pod); s.Matches(labels.Set(p.Labels)) {
			tr.pods[r.Key] = p
		}
		return true
	})
	tr.checkAt(v.Index())
	go tr.run(v.Index())
	tc.t.Cleanup(tr.halt)
	return tr
}

func (tr *tracker) run(after uint64) {
	defer close(tr.done)
	var buf []fsm.Event
	for {
		evs, wake, err := tr.a.History().Since(after, buf[:0])
		if err != nil {
			tr.violations = append(tr.violations, fmt.Sprintf("following the history after %d: %v", after, err))
			return
		}
		for i, ev := range evs {
			tr.apply(ev)
			// One Raft entry can change many objects; only the state
			// after all of them is observable.
			if i == len(evs)-1 || evs[i+1].Index() != ev.Index() {
				tr.checkAt(ev.Index())
			}
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Index()
		}
		clear(evs)
		buf = evs
		select {
		case <-wake:
		case <-tr.stop:
			// A last look: finish has seen the server apply what it waits
			// for, and a change is published before it counts as applied.
			if evs, _, err := tr.a.History().Since(after, nil); err == nil && len(evs) > 0 {
				for i, ev := range evs {
					tr.apply(ev)
					if i == len(evs)-1 || evs[i+1].Index() != ev.Index() {
						tr.checkAt(ev.Index())
					}
				}
			}
			return
		}
	}
}

func (tr *tracker) apply(ev fsm.Event) {
	if ev.Record.Kind != api.Pod {
		return
	}
	p := ev.Record.Obj.(*corev1.Pod)
	_, had := tr.pods[ev.Record.Key]
	switch {
	case ev.Type == fsm.Deleted || !tr.sel.Matches(labels.Set(p.Labels)):
		if had {
			delete(tr.pods, ev.Record.Key)
			tr.removed++
		}
	default:
		if !had {
			tr.created = append(tr.created, p)
		}
		tr.pods[ev.Record.Key] = p
	}
}

func (tr *tracker) checkAt(index uint64) {
	tr.states++
	if err := tr.check(index, tr.pods); err != nil && len(tr.violations) < 10 {
		tr.violations = append(tr.violations, fmt.Sprintf("at index %d: %v", index, err))
	}
}

func (tr *tracker) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

// finish waits until the tracked server has applied everything the
// leader has, stops, and fails the test for every state that broke the
// invariant. What it returns may be read only after finish.
func (tr *tracker) finish(tc *testCluster) *tracker {
	tc.t.Helper()
	target := tc.view().Index()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tr.a.FSM().WaitApplied(ctx, target); err != nil {
		tc.t.Fatalf("tracked server did not apply index %d: %v", target, err)
	}
	tr.halt()
	for _, v := range tr.violations {
		tc.t.Error(v)
	}
	return tr
}

// Pod predicates of the invariants (minReadySeconds 0 throughout).

func podAvailableNow(p *corev1.Pod) bool { return podActive(p) && podReady(p) }

func countPods(pods map[string]*corev1.Pod, pred func(*corev1.Pod) bool) int {
	n := 0
	for _, p := range pods {
		if pred(p) {
			n++
		}
	}
	return n
}
