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
	anti         topologyCounts // domains holding pods this one refuses
	// Domains holding pods that match all the affinity terms, with and
	// without the placeholders of preemptors (see Snapshot.Placeholder):
	// a node must pass both ways, as in kube-scheduler.
	affinity, affinityReal topologyCounts
	selfMatch              bool // the pod matches its own affinity terms

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
	pl.existingAnti, pl.anti = topologyCounts{}, topologyCounts{}
	pl.affinity, pl.affinityReal = topologyCounts{}, topologyCounts{}
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
					if !snap.Placeholder(q.Key) {
						pl.affinityReal.add(t.TopologyKey, v, 1)
					}
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
	pl.selfMatch = matchesAll(pod.RequiredAffinity, pod, snap)
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
		for _, t := range pod.RequiredAffinity {
			if _, ok := n.Node.Labels[t.TopologyKey]; !ok {
				return unresolvable(pl.Name(), reasonAffinity)
			}
		}
		if !pl.affinityMet(pod, n, pl.affinity) || !pl.affinityMet(pod, n, pl.affinityReal) {
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

// affinityMet: every affinity term has a matching pod in the node's domain,
// or no matching pod is anywhere (with the terms' keys) and the pod matches
// its own terms, so that the first of a group of pods that attract each
// other may go anywhere (kube-scheduler's rule).
func (pl *InterPodAffinity) affinityMet(pod *PodInfo, n *NodeInfo, counts topologyCounts) bool {
	if len(counts) == 0 {
		return pl.selfMatch
	}
	for _, t := range pod.RequiredAffinity {
		if counts.at(t.TopologyKey, n) <= 0 {
			return false
		}
	}
	return true
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
