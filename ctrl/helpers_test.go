package ctrl

import (
	"context"
	"time"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// faultyCluster is what the controllers see of an agent whose writes a
// test fails or holds on purpose (named failpoints at the one seam the
// controllers have).
type faultyCluster struct {
	*agent.Agent
	// failUpdate, when it returns an error, fails an Update without
	// proposing it.
	failUpdate func(obj api.Object, status bool) error
	// beforeCreateMany runs before each CreateMany; an error fails it
	// without proposing anything.
	beforeCreateMany func(ctx context.Context, a *agent.Agent) error
}

func (f *faultyCluster) Update(ctx context.Context, obj api.Object, status bool) (*fsm.Record, error) {
	if f.failUpdate != nil {
		if err := f.failUpdate(obj, status); err != nil {
			return nil, err
		}
	}
	return f.Agent.Update(ctx, obj, status)
}

func (f *faultyCluster) CreateMany(ctx context.Context, objs []api.Object) ([]*fsm.Result, error) {
	if f.beforeCreateMany != nil {
		if err := f.beforeCreateMany(ctx, f.Agent); err != nil {
			return nil, err
		}
	}
	return f.Agent.CreateMany(ctx, objs)
}

// waitUntil polls cond on the leader's state until it holds, failing the
// test after timeout with what cond last said was missing.
func (tc *testCluster) waitUntil(timeout time.Duration, what string, cond func() (bool, string)) {
	tc.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		start := time.Now()
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		// A costly condition (thousands of pods) is polled less often, so
		// that the test leaves the servers most of the machine.
		time.Sleep(max(10*time.Millisecond, 4*time.Since(start)))
	}
}

// list returns the objects of kind k in namespace ("" for all) from the
// leader's state.
func (tc *testCluster) list(k *api.Kind, namespace string) []api.Object {
	var out []api.Object
	tc.view().List(k, namespace, func(r *fsm.Record) bool {
		out = append(out, r.Obj)
		return true
	})
	return out
}
