package sched

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/fsm"
	"orch.dev/orch/sched/fit"
)

// A leadership transfer in the middle of a 2000-pod burst, on three
// servers, with Bind entries in flight and the FSM refusing bindings: every
// pod ends up bound exactly once, no binding ever took a node past its
// allocatable (checked at every applied entry), the new leader's scheduler
// picked up where the old one stopped, refused bindings were retried, and
// every server holds the same final state.
func TestRunLeaderTransferMidBurst(t *testing.T) {
	const pods, nodes = 2000, 10
	f := &faults{transferAt: 5}
	// Raft's own timing rather than inproc.FastRaft: on a loaded machine
	// the fast one adds elections of its own (the test copes, but is much
	// slower).
	steady := func(cfg *agent.Config) { cfg.Raft = agent.SteadyRaftTiming }
	rc := startRunCluster(t, 3, Options{BatchSize: 100}, f.wrap, steady)
	cl := rc.Client()
	start := time.Now()
	watched := rc.Agents[0]
	check := watchBindings(rc.ctx, watched.History(), watched.FSM().AppliedIndex())
	// The faults' goroutines end with this context, before the servers stop.
	fctx, stopFaults := context.WithCancel(rc.ctx)
	t.Cleanup(func() {
		stopFaults()
		f.wg.Wait()
	})
	transferred := make(chan error, 1)
	f.mu.Lock()
	f.transfer = func() { transferred <- moveLeadership(fctx, rc, cl, f, func() bool { return check.bound() >= pods }) }
	f.giveBack = func(name string, cpu resource.Quantity) {
		for range 100 {
			if fctx.Err() != nil {
				return
			}
			obj, err := cl.Get(fctx, api.Node, "", name, false)
			if err != nil {
				continue // the client waits for a leader by itself
			}
			n := obj.(*corev1.Node)
			n.Status.Allocatable[corev1.ResourceCPU] = cpu
			if _, err := cl.UpdateStatus(fctx, n); err == nil {
				return
			}
		}
		t.Errorf("could not give node %s its cpu back", name)
	}
	f.mu.Unlock()

	namespaces := []string{"default", "team-a", "team-b"}
	var objs []api.Object
	for _, ns := range namespaces[1:] {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		api.Namespace.SetTypeMeta(n)
		objs = append(objs, n)
	}
	// 2300 pod slots and 240 cpu for 2000 pods and 200 cpu: nodes fill up
	// to ~90%, and the cluster still has room if a squeezed node were never
	// given its cpu back.
	for i := range nodes {
		objs = append(objs, apiNode(fmt.Sprintf("n%d", i), "24", "16Gi", 230))
	}
	rc.create(objs...)
	for chunk := 0; chunk < pods; chunk += 250 {
		objs = objs[:0]
		for i := chunk; i < chunk+250; i++ {
			objs = append(objs, apiPod(namespaces[i%len(namespaces)], fmt.Sprintf("p%d", i), "100m", "64Mi", ""))
		}
		rc.create(objs...)
	}

	created := time.Since(start)
	if !check.waitBound(pods, 90*time.Second) {
		check.report(t)
		rc.showPending(t, 5)
		t.FailNow()
	}
	select {
	case err := <-transferred:
		if err != nil {
			t.Fatalf("leadership transfer: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the leadership transfer never happened")
	}
	t.Logf("%d pods created in %v, all bound after %v", pods, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	f.wg.Wait() // every node has its cpu back
	got, index := check.report(t)
	if got != pods {
		t.Errorf("%d bindings seen, want %d", got, pods)
	}

	// The work was shared between leaders, and the FSM refused bindings.
	runs := f.runs()
	servers := map[any]bool{}
	var refused int64
	for i, r := range runs {
		t.Logf("scheduler run %d: %d entries, %d bindings, %d refused", i, r.entries.Load(), r.bindings.Load(), r.refused.Load())
		if r.entries.Load() > 0 {
			servers[r.agent] = true
		}
		refused += r.refused.Load()
	}
	if len(servers) < 2 {
		t.Errorf("bindings proposed by %d server(s): the transfer did not happen mid-burst", len(servers))
	}
	if refused == 0 {
		t.Error("the FSM refused no binding: the retry path was not exercised")
	}

	// Every server applied the same bindings, and none is overcommitted.
	// Each server applies committed entries on its own schedule (a leader
	// may be behind a follower): compare them at the furthest point any
	// has reached, which includes the last binding and the last cpu given
	// back.
	ctx, cancel := context.WithTimeout(rc.ctx, 30*time.Second)
	defer cancel()
	for _, a := range rc.Agents {
		index = max(index, a.FSM().AppliedIndex())
	}
	var want map[string]string
	for i, a := range rc.Agents {
		if err := a.FSM().WaitApplied(ctx, index); err != nil {
			t.Fatalf("s%d: %v", i+1, err)
		}
		placed := finalPlacement(t, a.View(), pods)
		if want == nil {
			want = placed
		} else if fmt.Sprint(placed) != fmt.Sprint(want) {
			t.Errorf("s%d holds other bindings than s1", i+1)
		}
	}
}

// finalPlacement checks a server's state: every pod bound and no node
// overcommitted; it returns where each pod is.
func finalPlacement(t *testing.T, v *fsm.View, pods int) map[string]string {
	t.Helper()
	out := map[string]string{}
	perNode := map[string][]*corev1.Pod{}
	v.List(api.Pod, "", func(r *fsm.Record) bool {
		p := r.Obj.(*corev1.Pod)
		out[p.Namespace+"/"+p.Name] = p.Spec.NodeName
		if p.Spec.NodeName == "" {
			t.Errorf("%s/%s is not bound", p.Namespace, p.Name)
		}
		perNode[p.Spec.NodeName] = append(perNode[p.Spec.NodeName], p)
		return true
	})
	if len(out) != pods {
		t.Errorf("%d pods, want %d", len(out), pods)
	}
	v.List(api.Node, "", func(r *fsm.Record) bool {
		n := r.Obj.(*corev1.Node)
		used, alloc := fit.Used(perNode[n.Name]), fit.Allocatable(n)
		for res, q := range used {
			if q > alloc[res] {
				t.Errorf("node %s overcommitted: %s %d > %d", n.Name, res, q, alloc[res])
			}
		}
		return true
	})
	return out
}

// moveLeadership hands leadership to another server and waits until that
// server's scheduler has proposed bindings. Raft may refuse or undo a
// transfer on a busy machine (the target did not catch up in time, or
// loses the next election), so it tries again, as long as pods remain.
func moveLeadership(ctx context.Context, rc *runCluster, cl *client.Client, f *faults, done func() bool) error {
	err := errors.New("no attempt")
	for range 10 {
		from := rc.Leader()
		if from == nil {
			// An election is under way: wait for its outcome.
			if !poll(ctx, 10*time.Second, func() bool { return rc.Leader() != nil }) {
				return errors.New("no leader")
			}
			continue
		}
		var to *agent.Agent
		var name string
		for i, a := range rc.Agents {
			if a != from {
				to, name = a, fmt.Sprintf("s%d", i+1)
				break
			}
		}
		_, err = cl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/v1/operator/raft/transfer-leader",
			Query: url.Values{"to": {name}}})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			continue
		}
		if poll(ctx, 10*time.Second, func() bool { return f.proposedBy(to) || done() }) {
			if f.proposedBy(to) {
				return nil
			}
			return errors.New("every pod was bound before another server led")
		}
	}
	return err
}

// poll waits until cond holds (true), or the timeout passes or ctx ends
// (false).
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
