package sched

import (
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/fsm"
)

// Options tune Schedule.
type Options struct {
	// Seed makes tie-breaking between equally scored nodes reproducible.
	Seed uint64
	// PercentageOfNodesToScore bounds how many feasible nodes are looked
	// for per pod, as a percentage of the cluster (at least MinFeasibleNodes);
	// 0 is kube-scheduler's adaptive default (50% minus 1% per 125 nodes,
	// at least 5%), 100 scores every node.
	PercentageOfNodesToScore int
	// MinFeasibleNodes is the floor of the sample (default 100).
	MinFeasibleNodes int
	// DisablePreemption turns preemption off.
	DisablePreemption bool

	// For Run only:
	// BatchSize caps the pods one cycle (and one Bind entry) takes
	// (default 1000).
	BatchSize int
	// MaxInFlight caps the Bind entries proposed and not yet answered
	// (default 4): while some commit, the next plan is computed on top of
	// them. At a low rate each pod is its own plan, and a pod should not
	// wait for an earlier pod's commit to be proposed: the agent merges
	// what is proposed meanwhile into its next Raft entry anyway.
	MaxInFlight int
}

// Plan is what one Schedule call decided.
type Plan struct {
	// Bindings place pods, in the order they were decided.
	Bindings []fsm.Binding
	// Unschedulable are the pods that fit nowhere, with why.
	Unschedulable []Unschedulable
	// Preemptions are the lower-priority pods to delete so that a pod
	// that fits nowhere can run; the pod is retried once they are gone.
	Preemptions []Preemption
}

// Unschedulable is a pod that fits nowhere.
type Unschedulable struct {
	Pod *PodInfo
	// Message reads like kube-scheduler's: "0/5 nodes are available: ...".
	Message string
	// Events are the cluster changes that may let it fit.
	Events EventMask
}

// Preemption nominates a node for a pod and names the pods to remove.
type Preemption struct {
	Pod     *PodInfo
	Node    string
	Victims []*PodInfo
}

// Schedule places pods, in the order given, each on the best-scoring node
// that passes every filter, and adds each placed pod to snap (assumes it),
// so that later pods see it and a plan never overcommits a node. Pods that
// fit nowhere may preempt lower-priority pods (never ones this plan placed).
// For the same snapshot, pods and options, the plan is always the same.
func Schedule(snap *Snapshot, pods []*PodInfo, opts Options) Plan {
	s := newScheduler(snap, opts)
	var plan Plan
	s.plan = &plan
	for _, p := range pods {
		node, u := s.schedulePod(p)
		if node != nil {
			snap.AddPod(p, node.Name)
			plan.Bindings = append(plan.Bindings, fsm.Binding{Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: string(p.Pod.UID), Node: node.Name})
			continue
		}
		if pr, ok := s.preempt(p); ok {
			plan.Preemptions = append(plan.Preemptions, pr)
			u.Events |= AssignedPodRemoved
			// Until the plan is done, the preemptor holds its place on the
			// node (beside its victims, which are still there), so that the
			// pods after it neither take that place nor preempt for it. It
			// is not there yet, so no pod may count on it being there
			// (required affinity, spreading): see Snapshot.Placeholder.
			snap.AddPod(p, pr.Node)
			snap.placeholders[p.Key] = true
			s.planned[p.Key] = true
			for _, v := range pr.Victims {
				s.preempted[v.Key] = true
			}
		}
		plan.Unschedulable = append(plan.Unschedulable, u)
	}
	for _, pr := range plan.Preemptions {
		snap.RemovePod(pr.Pod.Key, pr.Node)
		delete(snap.placeholders, pr.Pod.Key)
	}
	return plan
}

type rejection struct {
	node *NodeInfo
	st   *Status
}

type scheduler struct {
	snap     *Snapshot
	opts     Options
	fw       *Framework
	rng      *rand.Rand
	filters  []FilterPlugin // the relevant ones for the current pod
	feasible []*NodeInfo
	rejected []rejection
	total    []int64
	scores   []int64
	// preempted are the victims of this plan's preemptions; planned are the
	// pods this plan placed, or whose place it holds for a preemptor: they
	// are pending pods, never victims. planned is only kept up to date
	// (from plan, up to plannedUpTo) when a preemption is looked for.
	preempted, planned map[string]bool
	plan               *Plan
	plannedUpTo        int
}

func newScheduler(snap *Snapshot, opts Options) *scheduler {
	if opts.MinFeasibleNodes <= 0 {
		opts.MinFeasibleNodes = 100
	}
	return &scheduler{snap: snap, opts: opts, fw: NewFramework(), rng: rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		preempted: map[string]bool{}, planned: map[string]bool{}, plan: &Plan{}}
}

// numFeasibleNodesToFind is kube-scheduler's adaptive sample size.
func (s *scheduler) numFeasibleNodesToFind(n int) int {
	if n < s.opts.MinFeasibleNodes {
		return n
	}
	pct := s.opts.PercentageOfNodesToScore
	if pct <= 0 {
		pct = max(50-n/125, 5)
	}
	if pct >= 100 {
		return n
	}
	return max(n*pct/100, s.opts.MinFeasibleNodes)
}

// preFilter prepares the filters for p and keeps the relevant ones.
func (s *scheduler) preFilter(p *PodInfo) {
	s.filters = s.filters[:0]
	for _, f := range s.fw.filters {
		if f.PreFilter(p, s.snap) {
			s.filters = append(s.filters, f)
		}
	}
}

// filter runs the prepared filters on one node.
func (s *scheduler) filter(p *PodInfo, n *NodeInfo) *Status {
	for _, f := range s.filters {
		if st := f.Filter(p, n); st != nil {
			return st
		}
	}
	return nil
}

// schedulePod finds the node for p, or explains why there is none.
func (s *scheduler) schedulePod(p *PodInfo) (*NodeInfo, Unschedulable) {
	nodes := s.snap.Nodes()
	s.feasible, s.rejected = s.feasible[:0], s.rejected[:0]
	if len(nodes) == 0 {
		return nil, Unschedulable{Pod: p, Message: errNoNodes, Events: NodeAdded}
	}
	s.preFilter(p)
	want := s.numFeasibleNodesToFind(len(nodes))
	start, processed := s.snap.nextStart%len(nodes), 0
	for i := 0; i < len(nodes) && len(s.feasible) < want; i++ {
		n := nodes[(start+i)%len(nodes)]
		processed++
		if st := s.filter(p, n); st != nil {
			s.rejected = append(s.rejected, rejection{n, st})
		} else {
			s.feasible = append(s.feasible, n)
		}
	}
	s.snap.nextStart = (start + processed) % len(nodes)
	switch len(s.feasible) {
	case 0:
		reasons, plugins := reasonCounts{}, map[string]bool{}
		for _, r := range s.rejected {
			reasons.add(r.st)
			plugins[r.st.Plugin] = true
		}
		return nil, Unschedulable{Pod: p, Message: explain(len(nodes), reasons), Events: s.fw.eventsFor(plugins)}
	case 1:
		return s.feasible[0], Unschedulable{}
	}
	return s.best(p), Unschedulable{}
}

// best scores the feasible nodes and picks the highest, breaking ties at
// random (seeded) among equals.
func (s *scheduler) best(p *PodInfo) *NodeInfo {
	nodes := s.feasible
	s.total = resize(s.total, len(nodes))
	clear(s.total)
	for _, w := range s.fw.scores {
		if !w.PreScore(p, s.snap, nodes) {
			continue
		}
		s.scores = resize(s.scores, len(nodes))
		for i, n := range nodes {
			s.scores[i] = w.Score(p, n)
		}
		w.Normalize(s.scores)
		for i, v := range s.scores {
			s.total[i] += v * w.weight
		}
	}
	bestIdx, ties := 0, 1
	for i := 1; i < len(nodes); i++ {
		switch {
		case s.total[i] > s.total[bestIdx]:
			bestIdx, ties = i, 1
		case s.total[i] == s.total[bestIdx]:
			ties++
			if s.rng.IntN(ties) == 0 {
				bestIdx = i
			}
		}
	}
	return nodes[bestIdx]
}

func resize(b []int64, n int) []int64 {
	if cap(b) < n {
		return make([]int64, n)
	}
	return b[:n]
}

// PodPriority is a pod's spec.priority (0 when unset).
func PodPriority(pod *corev1.Pod) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	return 0
}
