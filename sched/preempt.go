package sched

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Preemption, as kube-scheduler's DefaultPreemption does it but pure: for a
// pod that fits nowhere, find the nodes where deleting pods of lower
// priority would let it pass every filter, pick the victims on each, then
// the best node.
//
// Order of preference between candidates (and between victim sets on one
// node): the lowest highest-victim priority, then the fewest victims, then
// the lowest sum of victim priorities, then the node name. Pods of equal or
// higher priority, pods already terminating, pods already chosen as victims
// earlier in the same plan, and the pods the plan itself placed or holds a
// place for (pending pods) are never victims.

// exactSearchBudget bounds the filter runs (and, 64 times over, the subsets
// enumerated) spent looking for the fewest victims on one node; past it the
// greedy reprieve's answer stands.
const exactSearchBudget = 256

// maxPreemptionCandidates bounds the nodes a preemption examines in large
// clusters (kube-scheduler: 10% of the nodes, at least 100).
func maxPreemptionCandidates(nodes int) int { return max(nodes/10, 100) }

type victimSet struct {
	node    *NodeInfo
	victims []*PodInfo
	top     int32 // highest victim priority
	sum     int64
}

func newVictimSet(n *NodeInfo, victims []*PodInfo) victimSet {
	v := victimSet{node: n, victims: victims, top: victims[0].Priority}
	for _, p := range victims {
		v.top = max(v.top, p.Priority)
		v.sum += int64(p.Priority)
	}
	return v
}

// better reports whether a is preferred to b.
func (a victimSet) better(b victimSet) bool {
	return cmp.Or(cmp.Compare(a.top, b.top), cmp.Compare(len(a.victims), len(b.victims)),
		cmp.Compare(a.sum, b.sum), strings.Compare(a.node.Name, b.node.Name)) < 0
}

// eligibleToPreempt: the pod may preempt, and is not already waiting for
// earlier victims on its nominated node to go.
func (s *scheduler) eligibleToPreempt(p *PodInfo) bool {
	if s.opts.DisablePreemption {
		return false
	}
	if pol := p.Pod.Spec.PreemptionPolicy; pol != nil && *pol == corev1.PreemptNever {
		return false
	}
	if nom := p.Pod.Status.NominatedNodeName; nom != "" {
		if n := s.snap.Node(nom); n != nil {
			for _, q := range n.Pods {
				if q.Pod.DeletionTimestamp != nil && q.Priority < p.Priority {
					return false
				}
			}
		}
	}
	return true
}

// preempt finds where p could run by deleting lower-priority pods. It
// leaves the snapshot as it found it. It must follow a failed schedulePod
// for p (it uses that scan's rejections).
func (s *scheduler) preempt(p *PodInfo) (Preemption, bool) {
	if !s.eligibleToPreempt(p) {
		return Preemption{}, false
	}
	for ; s.plannedUpTo < len(s.plan.Bindings); s.plannedUpTo++ {
		b := &s.plan.Bindings[s.plannedUpTo]
		s.planned[b.Namespace+"/"+b.Name] = true
	}
	rejected := slices.Clone(s.rejected)
	var best *victimSet
	found, limit := 0, maxPreemptionCandidates(len(rejected))
	for _, r := range rejected {
		if r.st.Unresolvable {
			continue
		}
		v, ok := s.victimsOn(p, r.node)
		if !ok {
			continue
		}
		if best == nil || v.better(*best) {
			best = &v
		}
		if found++; found >= limit {
			break
		}
	}
	if best == nil {
		return Preemption{}, false
	}
	return Preemption{Pod: p, Node: best.node.Name, Victims: best.victims}, true
}

// fitsOn runs every filter for p on one node against the snapshot as it is.
func (s *scheduler) fitsOn(p *PodInfo, n *NodeInfo) bool {
	s.preFilter(p)
	return s.filter(p, n) == nil
}

// without runs fn with the given pods removed from node n.
func (s *scheduler) without(n *NodeInfo, pods []*PodInfo, fn func() bool) bool {
	for _, q := range pods {
		s.snap.RemovePod(q.Key, n.Name)
	}
	ok := fn()
	for _, q := range pods {
		s.snap.AddPod(q, n.Name)
	}
	return ok
}

// victimsOn chooses the victims on node n: the lowest priority level that
// suffices, then the fewest pods within it (exactly for small cases, by
// kube-scheduler's greedy reprieve otherwise), then the lowest priorities.
func (s *scheduler) victimsOn(p *PodInfo, n *NodeInfo) (victimSet, bool) {
	var cands []*PodInfo
	for _, q := range n.Pods {
		if q.Priority < p.Priority && q.Pod.DeletionTimestamp == nil && !s.preempted[q.Key] && !s.planned[q.Key] {
			cands = append(cands, q)
		}
	}
	if len(cands) == 0 {
		return victimSet{}, false
	}
	// Lowest priority first; among equals, the larger first (fewer needed),
	// then by key for determinism.
	slices.SortFunc(cands, func(a, b *PodInfo) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Requests.MilliCPU+b.Requests.Memory/1e6, a.Requests.MilliCPU+a.Requests.Memory/1e6),
			strings.Compare(a.Key, b.Key))
	})
	if !s.resourcesCouldFit(p, n, cands) || !s.without(n, cands, func() bool { return s.fitsOn(p, n) }) {
		return victimSet{}, false
	}
	// The lowest priority level whose removal (with everything below it)
	// suffices.
	pool := cands
	for i := 0; i < len(cands); {
		j := i
		for j < len(cands) && cands[j].Priority == cands[i].Priority {
			j++
		}
		if s.without(n, cands[:j], func() bool { return s.fitsOn(p, n) }) {
			pool = cands[:j]
			break
		}
		i = j
	}
	victims := s.reprieve(p, n, pool)
	victims = s.fewest(p, n, pool, victims)
	return newVictimSet(n, victims), true
}

// resourcesCouldFit is a cheap necessary condition: the pod's requests fit
// once every candidate is gone.
func (s *scheduler) resourcesCouldFit(p *PodInfo, n *NodeInfo, cands []*PodInfo) bool {
	used := n.Requested.Clone()
	for _, q := range cands {
		used.Sub(&q.Requests)
	}
	return len(insufficient(&p.Requests, &n.Allocatable, &used, nil)) == 0
}

// reprieve is kube-scheduler's: with the whole pool removed, put pods back
// highest priority first and keep each one the pod still fits beside.
func (s *scheduler) reprieve(p *PodInfo, n *NodeInfo, pool []*PodInfo) []*PodInfo {
	for _, q := range pool {
		s.snap.RemovePod(q.Key, n.Name)
	}
	var victims []*PodInfo
	for i := len(pool) - 1; i >= 0; i-- {
		q := pool[i]
		s.snap.AddPod(q, n.Name)
		if !s.fitsOn(p, n) {
			s.snap.RemovePod(q.Key, n.Name)
			victims = append(victims, q)
		}
	}
	for _, q := range victims {
		s.snap.AddPod(q, n.Name)
	}
	slices.Reverse(victims)
	return victims
}

// fewest looks, within a budget, for a victim set from pool that is better
// than greedy (fewer pods, or as few with lower priorities): subsets by
// increasing size, each size in lexicographic order of the pool.
func (s *scheduler) fewest(p *PodInfo, n *NodeInfo, pool, greedy []*PodInfo) []*PodInfo {
	best := newVictimSet(n, greedy)
	budget, steps := exactSearchBudget, 64*exactSearchBudget
	idx := make([]int, 0, len(greedy))
	var try func(start, k int) bool // false when out of budget
	subset := make([]*PodInfo, 0, len(greedy))
	try = func(start, k int) bool {
		if steps--; steps < 0 {
			return false
		}
		if len(idx) == k {
			subset = subset[:0]
			for _, i := range idx {
				subset = append(subset, pool[i])
			}
			cand := newVictimSet(n, subset)
			if !cand.better(best) {
				return true
			}
			if budget--; budget < 0 {
				return false
			}
			if s.without(n, subset, func() bool { return s.fitsOn(p, n) }) {
				best = newVictimSet(n, slices.Clone(subset))
			}
			return true
		}
		for i := start; i < len(pool); i++ {
			idx = append(idx, i)
			ok := try(i+1, k)
			idx = idx[:len(idx)-1]
			if !ok {
				return false
			}
		}
		return true
	}
	for k := 1; k <= len(best.victims); k++ {
		if !try(0, k) {
			break
		}
	}
	return best.victims
}
