package sched

import (
	"math"

	"k8s.io/apimachinery/pkg/labels"

	"orch.dev/orch/sched/fit"
)

var (
	_ FilterPlugin = (*PodTopologySpread)(nil)
	_ ScorePlugin  = (*PodTopologySpread)(nil)
	_ ScorePlugin  = (*DefaultSpread)(nil)
)

const (
	reasonSpread             = "node(s) didn't match pod topology spread constraints"
	reasonSpreadMissingLabel = "node(s) didn't match pod topology spread constraints (missing required label)"
)

// spreadCounts is one constraint's matching pods per domain, over the nodes
// the constraint counts, and the smallest count.
type spreadCounts struct {
	c *SpreadConstraint
	// counts include the placeholders of preemptors (see
	// Snapshot.Placeholder), real leaves them out, each with its smallest
	// count: the filter must hold both ways, as in kube-scheduler.
	counts, real map[string]int64
	min, minReal int64
	self         int64 // 1 when the pod matches its own selector
}

// PodTopologySpread enforces topologySpreadConstraints: DoNotSchedule ones
// as a filter (a node may not push its domain more than maxSkew above the
// least loaded domain), ScheduleAnyway ones as a score.
type PodTopologySpread struct {
	hard, soft []spreadCounts
}

func (*PodTopologySpread) Name() string { return "PodTopologySpread" }

func (*PodTopologySpread) Events() EventMask {
	return NodeAdded | NodeLabelsChanged | NodeTaintsChanged | AssignedPodAdded | AssignedPodRemoved | AssignedPodLabelsChanged
}

// count builds the per-domain counts of the constraints that hard selects,
// over the candidate nodes that have all their keys and that the pod's
// affinity and tolerations admit where the constraint says so.
func spreadCountsFor(pod *PodInfo, snap *Snapshot, hard bool) []spreadCounts {
	var out []spreadCounts
	for i := range pod.Spread {
		c := &pod.Spread[i]
		if c.Hard == hard {
			out = append(out, spreadCounts{c: c, counts: map[string]int64{}, real: map[string]int64{}})
		}
	}
	if len(out) == 0 {
		return nil
	}
	podLabels := labels.Set(pod.Pod.Labels)
nodes:
	for _, n := range snap.Nodes() {
		for _, sc := range out {
			if _, ok := n.Node.Labels[sc.c.TopologyKey]; !ok {
				continue nodes
			}
		}
		for _, sc := range out {
			if sc.c.HonorAffinity && !pod.MatchesNodeAffinity(n.Node) {
				continue
			}
			if sc.c.HonorTaints {
				if _, bad := fit.UntoleratedTaint(pod.Pod, n.Node); bad {
					continue
				}
			}
			v := n.Node.Labels[sc.c.TopologyKey]
			var k, real int64
			for _, q := range n.Pods {
				if q.Pod.Namespace == pod.Pod.Namespace && q.Pod.DeletionTimestamp == nil && sc.c.Selector.Matches(labels.Set(q.Pod.Labels)) {
					k++
					if !snap.Placeholder(q.Key) {
						real++
					}
				}
			}
			sc.counts[v] += k
			sc.real[v] += real
		}
	}
	for i := range out {
		sc := &out[i]
		sc.min, sc.minReal = math.MaxInt64, math.MaxInt64
		for v, k := range sc.counts {
			sc.min, sc.minReal = min(sc.min, k), min(sc.minReal, sc.real[v])
		}
		if sc.min == math.MaxInt64 || int32(len(sc.counts)) < sc.c.MinDomains {
			sc.min, sc.minReal = 0, 0
		}
		if sc.c.Selector.Matches(podLabels) {
			sc.self = 1
		}
	}
	return out
}

func (pl *PodTopologySpread) PreFilter(pod *PodInfo, snap *Snapshot) bool {
	pl.hard = spreadCountsFor(pod, snap, true)
	return len(pl.hard) > 0
}

func (pl *PodTopologySpread) Filter(_ *PodInfo, n *NodeInfo) *Status {
	for _, sc := range pl.hard {
		v, ok := n.Node.Labels[sc.c.TopologyKey]
		if !ok {
			return unresolvable(pl.Name(), reasonSpreadMissingLabel)
		}
		if sc.counts[v]+sc.self-sc.min > int64(sc.c.MaxSkew) || sc.real[v]+sc.self-sc.minReal > int64(sc.c.MaxSkew) {
			return unschedulable(pl.Name(), reasonSpread)
		}
	}
	return nil
}

func (pl *PodTopologySpread) PreScore(pod *PodInfo, snap *Snapshot, _ []*NodeInfo) bool {
	pl.soft = spreadCountsFor(pod, snap, false)
	return len(pl.soft) > 0
}

// Score weighs each constraint by the log of its number of domains, as
// kube-scheduler does; -1 marks a node without a constraint's key.
func (pl *PodTopologySpread) Score(_ *PodInfo, n *NodeInfo) int64 {
	var s float64
	for _, sc := range pl.soft {
		v, ok := n.Node.Labels[sc.c.TopologyKey]
		if !ok {
			return -1
		}
		w := math.Log(float64(len(sc.counts) + 2))
		s += float64(sc.counts[v])*w + float64(sc.c.MaxSkew-1)
	}
	return int64(math.Round(s))
}

func (*PodTopologySpread) Normalize(scores []int64) {
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, s := range scores {
		if s >= 0 {
			lo, hi = min(lo, s), max(hi, s)
		}
	}
	for i, s := range scores {
		switch {
		case s < 0:
			scores[i] = 0
		case hi == 0:
			scores[i] = MaxNodeScore
		default:
			scores[i] = MaxNodeScore * (hi + lo - s) / hi
		}
	}
}

// DefaultSpread spreads the pods of one controller (a ReplicaSet's, a
// DaemonSet's...) across nodes and, weighted two to one, across zones,
// for pods without topologySpreadConstraints of their own.
type DefaultSpread struct {
	owner            int32
	maxNode, maxZone int32
	zoneCounts       []int32 // by zone number
	zones            bool
}

func (*DefaultSpread) Name() string { return "DefaultSpread" }

func (pl *DefaultSpread) PreScore(pod *PodInfo, snap *Snapshot, nodes []*NodeInfo) bool {
	if pod.Owner == "" || len(pod.Spread) > 0 {
		return false
	}
	pl.owner = snap.ownerID(pod.Owner, false)
	if pl.owner == 0 {
		return false // no pod of its controller anywhere: all alike
	}
	pl.zoneCounts = resize32(pl.zoneCounts, len(snap.zoneIDs)+1)
	for z := range pl.zoneCounts {
		pl.zoneCounts[z] = snap.zoneOwnerCount(int32(z), pl.owner)
	}
	pl.maxNode, pl.maxZone, pl.zones = 0, 0, false
	for _, n := range nodes {
		pl.maxNode = max(pl.maxNode, n.ownerCount(pl.owner))
		if n.zoneID != 0 {
			pl.zones = true
			pl.maxZone = max(pl.maxZone, pl.zoneCounts[n.zoneID])
		}
	}
	return true
}

func resize32(b []int32, n int) []int32 {
	if cap(b) < n {
		return make([]int32, n)
	}
	return b[:n]
}

func (pl *DefaultSpread) Score(_ *PodInfo, n *NodeInfo) int64 {
	s := int64(MaxNodeScore)
	if pl.maxNode > 0 {
		s = MaxNodeScore * int64(pl.maxNode-n.ownerCount(pl.owner)) / int64(pl.maxNode)
	}
	if pl.zones && n.zoneID != 0 {
		z := int64(MaxNodeScore)
		if pl.maxZone > 0 {
			z = MaxNodeScore * int64(pl.maxZone-pl.zoneCounts[n.zoneID]) / int64(pl.maxZone)
		}
		s = (s + 2*z) / 3
	}
	return s
}

func (*DefaultSpread) Normalize([]int64) {}
