package sched

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	"pgregory.net/rapid"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

func snapshotOf(c cluster) *Snapshot { return NewSnapshot(c.nodes, c.bound, c.namespaces) }

// No plan overcommits a node (cpu, memory, pods, nvidia.com/gpu) or breaks a
// required constraint, for random clusters and pods in random order; every
// pending pod is bound or explained; preemptions make room.
func TestPropertyPlansAreValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawCluster(t)
		plan := Schedule(snapshotOf(c), podInfos(c.pending...), Options{Seed: rapid.Uint64().Draw(t, "seed")})
		checkAgainstOracle(t, c, plan)
	})
}

// The same plan for the same seed, however the inputs are ordered: no
// map-order or input-order dependence. With queue order, as Run does.
func TestPropertyPlansAreDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawCluster(t)
		seed := rapid.Uint64().Draw(t, "seed")
		q := NewQueue()
		for _, p := range c.pending {
			q.Add(NewPodInfo(p), false)
		}
		order := q.Pop(len(c.pending))
		first := planSummary(Schedule(snapshotOf(c), order, Options{Seed: seed}))

		shuffled := cluster{pending: c.pending, namespaces: c.namespaces,
			nodes: rapid.Permutation(c.nodes).Draw(t, "nodes"), bound: rapid.Permutation(c.bound).Draw(t, "bound")}
		again := make([]*PodInfo, len(order))
		for i, p := range order {
			again[i] = NewPodInfo(p.Pod)
		}
		if second := planSummary(Schedule(snapshotOf(shuffled), again, Options{Seed: seed})); second != first {
			t.Fatalf("same seed, different plans:\n%s---\n%s", first, second)
		}
	})
}

// The FSM's re-check accepts every binding of a plan made from its own
// state: the scheduler never proposes what FSM.Apply would refuse (which
// would cost a retry per pod, or loop forever).
func TestPropertyFSMAcceptsPlans(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawCluster(t)
		plan := Schedule(snapshotOf(c), podInfos(c.pending...), Options{Seed: 1})
		f := newMemFSM(t)
		for _, ns := range c.namespaces {
			f.create(t, api.Namespace, ns)
		}
		for _, n := range c.nodes {
			f.create(t, api.Node, n)
		}
		for _, p := range append(append([]*corev1.Pod{}, c.bound...), c.pending...) {
			f.create(t, api.Pod, p)
		}
		if len(plan.Bindings) == 0 {
			return
		}
		res := f.apply(t, &fsm.Bind{Bindings: plan.Bindings, Time: 1})
		for i, r := range res.Batch {
			if r.Err != nil {
				t.Errorf("FSM refused %+v: %v", plan.Bindings[i], r.Err)
			}
		}
	})
}

// memFSM is a bare FSM, fed log entries directly (no Raft).
type memFSM struct {
	f     *fsm.FSM
	index uint64
}

func newMemFSM(t tb) *memFSM {
	return &memFSM{f: fsm.New(fsm.Config{Halt: func(err error) { t.Fatalf("FSM halted: %v", err) }})}
}

func (m *memFSM) apply(t tb, cmd fsm.Command) *fsm.Result {
	t.Helper()
	m.index++
	res, ok := m.f.Apply(&raft.Log{Index: m.index, Type: raft.LogCommand, Data: fsm.Encode(cmd)}).(*fsm.Result)
	if !ok || res == nil {
		t.Fatalf("apply %T: no result", cmd)
	}
	return res
}

func (m *memFSM) create(t tb, k *api.Kind, obj api.Object) {
	t.Helper()
	b, err := obj.Marshal()
	if err != nil {
		t.Fatalf("marshal %s: %v", obj.GetName(), err)
	}
	if res := m.apply(t, &fsm.Create{Kind: k.Kind, Object: b}); res.Err != nil && !errors.Is(res.Err, fsm.ErrAlreadyExists) {
		t.Fatalf("create %s %s: %v", k.Kind, obj.GetName(), res.Err)
	}
}
