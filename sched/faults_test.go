package sched

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/sched/fit"
)

// Named faults injected between the scheduler and the leader it runs on.
//
//   - squeeze-first-bind: just before the first Bind entry of each scheduler
//     run (each leader term), the node of its first binding loses all its
//     free cpu (its allocatable drops to what its pods use), so the FSM
//     must refuse every binding of that entry to it, and the scheduler must
//     retry them elsewhere. Once the entry is answered, the node gets its
//     cpu back through giveBack, which must survive leader changes.
//   - transfer-at-bind-N: when the scheduler proposes its Nth Bind entry
//     (counted over all leaders), leadership is transferred to another
//     server, with bindings in flight.
type faults struct {
	transferAt int
	transfer   func() // called once, on its own goroutine
	// giveBack sets a node's allocatable cpu (on its own goroutine).
	giveBack func(node string, cpu resource.Quantity)

	mu    sync.Mutex
	binds int
	terms []*termStats
	wg    sync.WaitGroup
}

// termStats is what one scheduler run (one leader term) did.
type termStats struct {
	agent    *agent.Agent
	entries  atomic.Int64
	bindings atomic.Int64
	refused  atomic.Int64 // bindings the FSM refused as not fitting
}

// faultyCluster is one scheduler run's view of its leader, with faults.
type faultyCluster struct {
	*agent.Agent
	f        *faults
	stats    *termStats
	squeezed atomic.Bool
}

// wrap is called for each scheduler run.
func (f *faults) wrap(a *agent.Agent) Cluster {
	st := &termStats{agent: a}
	f.mu.Lock()
	f.terms = append(f.terms, st)
	f.mu.Unlock()
	return &faultyCluster{Agent: a, f: f, stats: st}
}

// proposedBy reports whether a scheduler run on a proposed bindings.
func (f *faults) proposedBy(a *agent.Agent) bool {
	for _, r := range f.runs() {
		if r.agent == a && r.entries.Load() > 0 {
			return true
		}
	}
	return false
}

func (f *faults) runs() []*termStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*termStats(nil), f.terms...)
}

func (c *faultyCluster) Propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	b, ok := cmd.(*fsm.Bind)
	if !ok || len(b.Bindings) == 0 {
		return c.Agent.Propose(ctx, cmd)
	}
	c.f.mu.Lock()
	c.f.binds++
	if c.f.binds == c.f.transferAt {
		c.f.wg.Add(1)
		go func() {
			defer c.f.wg.Done()
			c.f.transfer()
		}()
	}
	c.f.mu.Unlock()
	c.stats.entries.Add(1)
	c.stats.bindings.Add(int64(len(b.Bindings)))
	if c.squeezed.CompareAndSwap(false, true) {
		defer c.squeeze(ctx, b.Bindings[0].Node)()
	}
	res, err := c.Agent.Propose(ctx, cmd)
	if err == nil && res != nil {
		for _, r := range res.Batch {
			if errors.Is(r.Err, fsm.ErrDoesNotFit) {
				c.stats.refused.Add(1)
			}
		}
	}
	return res, err
}

// squeeze sets the node's allocatable cpu to what its pods use, and returns
// the function that gives the cpu back.
func (c *faultyCluster) squeeze(ctx context.Context, name string) (restore func()) {
	// Counted before the entry is proposed, so that a test that has seen
	// the entry applied and waits for the faults also waits for this.
	c.f.wg.Add(1)
	rec := c.View().Get(api.Node, "", name)
	if rec == nil {
		c.f.wg.Done()
		return func() {}
	}
	n := rec.Obj.(*corev1.Node).DeepCopy()
	original := n.Status.Allocatable[corev1.ResourceCPU]
	var pods []*corev1.Pod
	c.View().PodsOnNode(name, func(r *fsm.Record) bool {
		pods = append(pods, r.Obj.(*corev1.Pod))
		return true
	})
	n.Status.Allocatable[corev1.ResourceCPU] = *resource.NewMilliQuantity(fit.Used(pods)[corev1.ResourceCPU], resource.DecimalSI)
	if _, err := c.Update(ctx, n, true); err != nil {
		// It may have been applied all the same: give the cpu back anyway.
		c.Logger().Warn("fault squeeze-first-bind: outcome unknown", "node", name, "err", err)
	}
	return func() {
		go func() {
			defer c.f.wg.Done()
			c.f.giveBack(name, original)
		}()
	}
}
