package ctrl

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
)

// holdCreates is a failpoint: the first server whose controllers make a
// CreateMany call after `pass` of their own is held in that call, and in
// any later one, until it stops leading (and the calls fail then, as with
// a lost leadership). Other servers, and that server should it lead
// again, go on.
type holdCreates struct {
	mu      sync.Mutex
	pass    int
	calls   map[*agent.Agent]int
	holding *agent.Agent
	done    bool // holding has stopped leading
	held    chan struct{}
}

func newHoldCreates(pass int) *holdCreates {
	return &holdCreates{pass: pass, calls: map[*agent.Agent]int{}, held: make(chan struct{})}
}

func (h *holdCreates) before(ctx context.Context, a *agent.Agent) error {
	h.mu.Lock()
	h.calls[a]++
	hold := !h.done && h.calls[a] > h.pass && (h.holding == nil || h.holding == a)
	if hold && h.holding == nil {
		h.holding = a
		close(h.held)
	}
	h.mu.Unlock()
	if !hold {
		return nil
	}
	<-ctx.Done()
	h.mu.Lock()
	h.done = true
	h.mu.Unlock()
	return fmt.Errorf("held until leadership was lost: %w", ctx.Err())
}

// steadyRaft are Raft timings for the leader-change tests: leadership
// moves when the test moves it, not because a heartbeat was late on a
// loaded machine under the race detector (a transfer is immediate
// whatever the timeouts).
func steadyRaft(c *agent.Config) {
	c.Raft = agent.RaftTiming{HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}
}

// newLeader transfers leadership away from the current leader and waits
// for another server to be ready to lead. It first lets every server
// apply what the leader has: with AppendEntries still in flight, a
// transfer can wedge hashicorp/raft's pipelined replication (raft issue
// #612), after which the old leader's Raft never shuts down.
func (tc *testCluster) newLeader() (from, to *agent.Agent) {
	tc.t.Helper()
	from = tc.Leader()
	tc.waitUntil(20*time.Second, "every server caught up with the leader", func() (bool, string) {
		want := from.FSM().AppliedIndex()
		for _, a := range tc.Agents {
			if got := a.FSM().AppliedIndex(); got != want {
				return false, fmt.Sprintf("a server at index %d, the leader at %d", got, want)
			}
		}
		return true, ""
	})
	tc.transferLeader()
	tc.waitUntil(20*time.Second, "another ready leader", func() (bool, string) {
		to = tc.Leader()
		return to != nil && to != from, "none yet"
	})
	return from, to
}

// TestLeaderChangeMidScaleUp: the leader creates the first 1,000 of 5,000
// pods and loses leadership while creating more; the new leader creates
// the rest. In no state of the log were there more than 5,000 pods, and
// exactly 5,000 were ever created: none twice, none lost.
func TestLeaderChangeMidScaleUp(t *testing.T) {
	const replicas = 5000
	hold := newHoldCreates(2) // two batches of createBatch pods, then hold
	tc := startCluster(t, clusterOptions{servers: 3, noKubelet: true, configure: steadyRaft, wrap: func(a *agent.Agent) Cluster {
		return &faultyCluster{Agent: a, beforeCreateMany: hold.before}
	}})
	tr := tc.track("app=big", func(_ uint64, pods map[string]*corev1.Pod) error {
		if n := countPods(pods, podActive); n > replicas {
			return fmt.Errorf("%d active pods for %d replicas", n, replicas)
		}
		return nil
	})
	tc.create(newReplicaSet("big", replicas))
	select {
	case <-hold.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the leader never got to its third batch of pods")
	}
	// The calls that passed may still be committing (creates run in
	// parallel): normally 2*createBatch, more if leadership moved on its
	// own before.
	var n int
	tc.waitUntil(20*time.Second, "the batches before the held one created", func() (bool, string) {
		n = tc.view().Count(api.Pod)
		return n >= 2*createBatch, fmt.Sprintf("%d pods", n)
	})
	if n >= replicas {
		t.Fatalf("%d pods before the leader change: not half-way", n)
	}
	from, to := tc.newLeader()
	t.Logf("leadership moved from %s to %s with %d pods created", from.HTTPAddr(), to.HTTPAddr(), n)
	tc.waitUntil(120*time.Second, fmt.Sprintf("%d pods and a status saying so", replicas), func() (bool, string) {
		v := tc.view()
		rs := v.Get(api.ReplicaSet, "default", "big").Obj.(*appsv1.ReplicaSet)
		n := len(ownedPods(v, rs.UID))
		return n == replicas && rs.Status.Replicas == replicas, fmt.Sprintf("%d pods, status.replicas %d", n, rs.Status.Replicas)
	})
	tr.finish(tc)
	if len(tr.created) != replicas || tr.removed != 0 {
		t.Errorf("%d pods created and %d removed in all; want %d and 0", len(tr.created), tr.removed, replicas)
	}
}

// TestLeaderChangeMidRollout: a rolling update stopped half-way (its new
// pods held unready) when leadership moves; the new leader finishes it
// within maxSurge and maxUnavailable, creating each new pod once.
func TestLeaderChangeMidRollout(t *testing.T) {
	tc := startCluster(t, clusterOptions{servers: 3, configure: steadyRaft})
	tc.kubelet.addNode("n1", nil)
	tc.kubelet.addNode("n2", nil)
	var holding atomic.Bool
	tc.kubelet.setReadiness(0, func(p *corev1.Pod) bool { return holding.Load() && p.Spec.Containers[0].Image == "app:2" })
	tc.create(rollingUpdate(newDeployment("mid", 6, "app:1"), 2, 1))
	tc.waitRolledOut("mid", "app:1")

	tr := tc.track("app=mid", func(_ uint64, pods map[string]*corev1.Pod) error {
		if n := countPods(pods, podActive); n > 8 {
			return fmt.Errorf("%d active pods, maxSurge allows 8", n)
		}
		if n := countPods(pods, podAvailableNow); n < 5 {
			return fmt.Errorf("%d available pods, maxUnavailable allows no fewer than 5", n)
		}
		return nil
	})
	holding.Store(true)
	tc.update(api.Deployment, "default", "mid", setImage("app:2"))
	// Half-way: surge and unavailability budgets spent, waiting for the
	// new pods to become Ready.
	tc.waitUntil(30*time.Second, "the rollout stuck half-way", func() (bool, string) {
		images := map[string]int{}
		for _, p := range tc.appPods("mid") {
			if podActive(p) {
				images[p.Spec.Containers[0].Image]++
			}
		}
		return images["app:1"] == 5 && images["app:2"] == 3, fmt.Sprint(images)
	})
	tc.newLeader()
	holding.Store(false)
	d := tc.waitRolledOut("mid", "app:2")
	tr.finish(tc)
	newPods := 0
	for _, p := range tr.created {
		if p.Spec.Containers[0].Image == "app:2" {
			newPods++
		}
	}
	if newPods != 6 {
		t.Errorf("%d new pods created for 6 replicas", newPods)
	}
	checkCompleteStatus(t, tc, d, 2)
}
