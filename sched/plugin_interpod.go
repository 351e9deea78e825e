package sched

var (
	_ FilterPlugin = (*InterPodAffinity)(nil)
	_ ScorePlugin  = (*InterPodAffinity)(nil)
)

// Reasons InterPodAffinity gives, in kube-scheduler's words.
const (
	reasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
	reasonAffinity             = "node(s) didn't match pod affinity rules"
	reasonAntiAffinity         = "node(s) didn't match pod anti-affinity rules"
)

// topologyCounts counts pods per topology domain: key -> value -> count.
type topologyCounts map[string]map[string]int64

func (c topologyCounts) add(key, value string, n int64) {
	m := c[key]
	if m == nil {
		m = map[string]int64{}
		c[key] = m
	}
	m[value] += n
}

// at is the count of the domain the node is in for key (0 when the node
// does not have the key).
func (c topologyCounts) at(key string, n *NodeInfo) int64 {
	v, ok := n.Node.Labels[key]
	if !ok {
		return 0
	}
	return c[key][v]
}

// InterPodAffinity enforces required pod affinity and anti-affinity by
// topologyKey, including the anti-affinity of pods already placed (a new
// pod may not land where an existing pod refuses it), and scores preferred
// terms of both the pod and the existing pods.
type InterPodAffinity struct {
	existingAnti topologyCounts // domains where an existing pod refuses this one
	affinity     topologyCounts // domains holding pods that match all affinity terms
	anti         topologyCounts // domains holding pods this one refuses
	selfAffine   bool           // no pod matches the affinity terms, but the pod matches itself

	score topologyCounts
}

func (*InterPodAffinity) Name() string { return "InterPodAffinity" }

func (*InterPodAffinity) Events() EventMask {
	return NodeAdded | NodeLabelsChanged | AssignedPodAdded | AssignedPodRemoved | AssignedPodLabelsChanged | NamespaceLabelsChanged
}

func (pl *InterPodAffinity) PreFilter(pod *PodInfo, snap *Snapshot) bool {
	if !pod.HasRequiredPodAffinity() && snap.antiAffinityPods == 0 {
		return false
	}
	pl.existingAnti, pl.affinity, pl.anti = topologyCounts{}, topologyCounts{}, topologyCounts{}
	snap.eachPod(func(q *PodInfo, n *NodeInfo) bool {
		if n.Node == nil {
			return true
		}
		for i := range q.RequiredAntiAffinity {
			t := &q.RequiredAntiAffinity[i]
			if v, ok := n.Node.Labels[t.TopologyKey]; ok && t.Matches(pod, snap) {
				pl.existingAnti.add(t.TopologyKey, v, 1)
			}
		}
		if len(pod.RequiredAffinity) > 0 && matchesAll(pod.RequiredAffinity, q, snap) {
			for _, t := range pod.RequiredAffinity {
				if v, ok := n.Node.Labels[t.TopologyKey]; ok {
					pl.affinity.add(t.TopologyKey, v, 1)
				}
			}
		}
		for i := range pod.RequiredAntiAffinity {
			t := &pod.RequiredAntiAffinity[i]
			if v, ok := n.Node.Labels[t.TopologyKey]; ok && t.Matches(q, snap) {
				pl.anti.add(t.TopologyKey, v, 1)
			}
		}
		return true
	})
	// The first of a group of pods that attract each other may go anywhere
	// with the topology labels (kube-scheduler's rule).
	pl.selfAffine = len(pl.affinity) == 0 && matchesAll(pod.RequiredAffinity, pod, snap)
	return true
}

func matchesAll(terms []AffinityTerm, p *PodInfo, snap *Snapshot) bool {
	for i := range terms {
		if !terms[i].Matches(p, snap) {
			return false
		}
	}
	return true
}

func (pl *InterPodAffinity) Filter(pod *PodInfo, n *NodeInfo) *Status {
	for key, values := range pl.existingAnti {
		if v, ok := n.Node.Labels[key]; ok && values[v] > 0 {
			return unschedulable(pl.Name(), reasonExistingAntiAffinity)
		}
	}
	if len(pod.RequiredAffinity) > 0 {
		exist := true
		for _, t := range pod.RequiredAffinity {
			if _, ok := n.Node.Labels[t.TopologyKey]; !ok {
				return unresolvable(pl.Name(), reasonAffinity)
			}
			if pl.affinity.at(t.TopologyKey, n) <= 0 {
				exist = false
			}
		}
		if !exist && !pl.selfAffine {
			return unresolvable(pl.Name(), reasonAffinity)
		}
	}
	for _, t := range pod.RequiredAntiAffinity {
		if pl.anti.at(t.TopologyKey, n) > 0 {
			return unschedulable(pl.Name(), reasonAntiAffinity)
		}
	}
	return nil
}

func (pl *InterPodAffinity) PreScore(pod *PodInfo, snap *Snapshot, _ []*NodeInfo) bool {
	if len(pod.PreferredAffinity)+len(pod.PreferredAntiAffinity) == 0 && snap.affinityPods == 0 {
		return false
	}
	pl.score = topologyCounts{}
	snap.eachPod(func(q *PodInfo, n *NodeInfo) bool {
		if n.Node == nil {
			return true
		}
		add := func(t *AffinityTerm, match *PodInfo, w int64) {
			if v, ok := n.Node.Labels[t.TopologyKey]; ok && t.Matches(match, snap) {
				pl.score.add(t.TopologyKey, v, w)
			}
		}
		for i := range pod.PreferredAffinity {
			add(&pod.PreferredAffinity[i].AffinityTerm, q, pod.PreferredAffinity[i].Weight)
		}
		for i := range pod.PreferredAntiAffinity {
			add(&pod.PreferredAntiAffinity[i].AffinityTerm, q, -pod.PreferredAntiAffinity[i].Weight)
		}
		// Symmetry: existing pods' terms about the incoming pod.
		for i := range q.PreferredAffinity {
			add(&q.PreferredAffinity[i].AffinityTerm, pod, q.PreferredAffinity[i].Weight)
		}
		for i := range q.PreferredAntiAffinity {
			add(&q.PreferredAntiAffinity[i].AffinityTerm, pod, -q.PreferredAntiAffinity[i].Weight)
		}
		for i := range q.RequiredAffinity {
			add(&q.RequiredAffinity[i], pod, 1) // kube-scheduler's hardPodAffinityWeight
		}
		return true
	})
	return len(pl.score) > 0
}

func (pl *InterPodAffinity) Score(_ *PodInfo, n *NodeInfo) int64 {
	var s int64
	for key, values := range pl.score {
		if v, ok := n.Node.Labels[key]; ok {
			s += values[v]
		}
	}
	return s
}

// Normalize maps the lowest score to 0 and the highest to MaxNodeScore.
func (*InterPodAffinity) Normalize(scores []int64) {
	if len(scores) == 0 {
		return
	}
	lo, hi := scores[0], scores[0]
	for _, s := range scores {
		lo, hi = min(lo, s), max(hi, s)
	}
	for i, s := range scores {
		if hi > lo {
			scores[i] = (s - lo) * MaxNodeScore / (hi - lo)
		} else {
			scores[i] = 0
		}
	}
}
