package sched

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/sched/fit"
)

// bindChecker follows one server's change history, entry by entry, and
// checks every binding at the moment it is applied: a pod is bound once
// and never moves, and a binding never takes a node past its allocatable
// (cpu, memory, pods, any resource the pod requests). Since every server
// applies the same log, one server's history is the cluster's.
type bindChecker struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced after each batch of events
	index    uint64        // last index seen
	alloc    map[string]fit.Resources
	used     map[string]fit.Resources
	bindings map[string]int // per pod uid
	nbound   int
	problems []string
	done     chan struct{}
}

func watchBindings(ctx context.Context, h *fsm.History, from uint64) *bindChecker {
	c := &bindChecker{changed: make(chan struct{}), index: from, alloc: map[string]fit.Resources{}, used: map[string]fit.Resources{},
		bindings: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		var buf []fsm.Event
		for {
			evs, wake, err := h.Since(c.last(), buf[:0])
			if err != nil {
				if ctx.Err() == nil {
					c.problem("history: %v", err)
				}
				return
			}
			c.apply(evs)
			buf = evs
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	}()
	return c
}

// bound is how many bindings have been seen.
func (c *bindChecker) bound() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nbound
}

func (c *bindChecker) last() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index
}

func (c *bindChecker) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *bindChecker) apply(evs []fsm.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range evs {
		c.index = e.Index()
		switch e.Record.Kind {
		case api.Node:
			if e.Type != fsm.Deleted {
				c.alloc[e.Record.Obj.GetName()] = fit.Allocatable(e.Record.Obj.(*corev1.Node))
			}
		case api.Pod:
			c.pod(e)
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *bindChecker) pod(e fsm.Event) {
	p := e.Record.Obj.(*corev1.Pod)
	var before string
	var wasOccupying bool
	if e.Prev != nil {
		prev := e.Prev.Obj.(*corev1.Pod)
		before, wasOccupying = prev.Spec.NodeName, fit.Occupies(prev)
		if wasOccupying {
			c.usage(before).Sub(fit.Requests(prev))
		}
	}
	if e.Type == fsm.Deleted {
		if fit.Occupies(p) && !wasOccupying {
			c.usage(p.Spec.NodeName).Sub(fit.Requests(p))
		}
		return
	}
	after := p.Spec.NodeName
	if before != "" && after != before {
		c.problems = append(c.problems, fmt.Sprintf("index %d: %s/%s moved from %s to %s", e.Index(), p.Namespace, p.Name, before, after))
	}
	if !fit.Occupies(p) {
		return
	}
	req := fit.Requests(p)
	c.usage(after).Add(req)
	if before != "" {
		return
	}
	c.nbound++
	if c.bindings[string(p.UID)]++; c.bindings[string(p.UID)] > 1 {
		c.problems = append(c.problems, fmt.Sprintf("index %d: %s/%s bound %d times", e.Index(), p.Namespace, p.Name, c.bindings[string(p.UID)]))
	}
	for r := range req {
		if c.used[after][r] > c.alloc[after][r] {
			c.problems = append(c.problems, fmt.Sprintf("index %d: binding %s/%s overcommits %s on %s: %d > %d",
				e.Index(), p.Namespace, p.Name, r, after, c.used[after][r], c.alloc[after][r]))
		}
	}
}

func (c *bindChecker) usage(node string) fit.Resources {
	if c.used[node] == nil {
		c.used[node] = fit.Resources{}
	}
	return c.used[node]
}

// waitBound waits until n bindings have been seen (or a problem); false
// when it gave up.
func (c *bindChecker) waitBound(n int, timeout time.Duration) bool {
	return c.wait(timeout, func() bool { return c.nbound >= n || len(c.problems) > 0 })
}

// wait waits, without polling, until cond (called with c.mu held) holds;
// false when it gave up.
func (c *bindChecker) wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, changed := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-c.done:
			return false
		case <-deadline.C:
			return false
		}
	}
}

// report fails the test with the problems seen, and returns how many pods
// were bound up to which index.
func (c *bindChecker) report(t *testing.T) (bound int, index uint64) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Error(p)
	}
	return c.nbound, c.index
}

// The checker itself catches what it is there to catch: a binding past a
// node's allocatable, a pod moved to another node, a second binding.
// (Pods created with spec.nodeName set, and updates, are not re-checked by
// the FSM, which lets this test produce them.)
func TestBindCheckerCatchesViolations(t *testing.T) {
	f := newMemFSM(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	check := watchBindings(ctx, f.f.History(), 0)
	f.create(t, api.Namespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	f.create(t, api.Node, node("n1", "1", "1Gi", 10, nil))
	f.create(t, api.Node, node("n2", "4", "4Gi", 10, nil))
	f.create(t, api.Pod, bindTo(pod("default", "fits", "1", "", 0), "n1"))
	f.create(t, api.Pod, bindTo(pod("default", "too-much", "1", "", 0), "n1"))
	f.create(t, api.Pod, pod("default", "pending", "1", "", 0))
	if res := f.apply(t, &fsm.Bind{Bindings: []fsm.Binding{{Namespace: "default", Name: "pending", UID: "uid-default-pending", Node: "n2"}}}); res.Batch[0].Err != nil {
		t.Fatal(res.Batch[0].Err)
	}
	moved := bindTo(pod("default", "pending", "1", "", 0), "n1")
	b, _ := moved.Marshal()
	if res := f.apply(t, &fsm.Update{Kind: api.Pod.Kind, Object: b}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if !check.wait(10*time.Second, func() bool { return check.index >= f.index }) {
		t.Fatal("the checker did not see the last entry")
	}
	check.mu.Lock()
	defer check.mu.Unlock()
	want := []string{"overcommits cpu on n1", "moved from n2 to n1"}
	if len(check.problems) != len(want) {
		t.Fatalf("problems %q, want %q", check.problems, want)
	}
	for i, w := range want {
		if !strings.Contains(check.problems[i], w) {
			t.Errorf("problem %q, want %q", check.problems[i], w)
		}
	}
}
