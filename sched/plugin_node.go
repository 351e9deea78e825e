package sched

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"orch.dev/orch/sched/fit"
)

// Reasons the node plugins give.
const (
	reasonNotReady      = "node(s) were not ready"
	reasonUnschedulable = "node(s) were unschedulable"
	reasonNodeAffinity  = "node(s) didn't match Pod's node affinity/selector"
	reasonPorts         = "node(s) didn't have free ports for the requested pod ports"
)

var (
	_ FilterPlugin = (*NodeReadyUnschedulable)(nil)
	_ FilterPlugin = (*NodeAffinity)(nil)
	_ ScorePlugin  = (*NodeAffinity)(nil)
	_ FilterPlugin = (*TaintToleration)(nil)
	_ ScorePlugin  = (*TaintToleration)(nil)
	_ FilterPlugin = (*NodePorts)(nil)
)

// NodeReadyUnschedulable rejects nodes that are not Ready, and cordoned
// nodes unless the pod tolerates the unschedulable taint (daemon pods do).
type NodeReadyUnschedulable struct{}

func (*NodeReadyUnschedulable) Name() string { return "NodeReadyUnschedulable" }

func (*NodeReadyUnschedulable) Events() EventMask {
	return NodeAdded | NodeReadyChanged | NodeSchedulableChanged
}

func (*NodeReadyUnschedulable) PreFilter(*PodInfo, *Snapshot) bool { return true }

func (pl *NodeReadyUnschedulable) Filter(pod *PodInfo, n *NodeInfo) *Status {
	if !n.Ready {
		return unresolvable(pl.Name(), reasonNotReady)
	}
	if n.Unschedulable && fit.Cordoned(pod.Pod, n.Node) {
		return unresolvable(pl.Name(), reasonUnschedulable)
	}
	return nil
}

// NodeAffinity filters by nodeSelector and required node affinity, and
// scores the sum of the weights of the preferred terms a node matches.
type NodeAffinity struct{}

func (*NodeAffinity) Name() string      { return "NodeAffinity" }
func (*NodeAffinity) Events() EventMask { return NodeAdded | NodeLabelsChanged }

func (*NodeAffinity) PreFilter(pod *PodInfo, _ *Snapshot) bool { return pod.hasNodeAffinity }

func (pl *NodeAffinity) Filter(pod *PodInfo, n *NodeInfo) *Status {
	if !pod.MatchesNodeAffinity(n.Node) {
		return unresolvable(pl.Name(), reasonNodeAffinity)
	}
	return nil
}

func (*NodeAffinity) PreScore(pod *PodInfo, _ *Snapshot, _ []*NodeInfo) bool {
	return pod.preferredAffinity != nil
}

func (*NodeAffinity) Score(pod *PodInfo, n *NodeInfo) int64 {
	return pod.preferredAffinity.Score(n.Node)
}

func (*NodeAffinity) Normalize(scores []int64) { normalize(scores, false) }

// TaintToleration rejects nodes with a NoSchedule or NoExecute taint the
// pod does not tolerate, and prefers nodes with fewer untolerated
// PreferNoSchedule taints.
type TaintToleration struct{}

func (*TaintToleration) Name() string      { return "TaintToleration" }
func (*TaintToleration) Events() EventMask { return NodeAdded | NodeTaintsChanged }

func (*TaintToleration) PreFilter(*PodInfo, *Snapshot) bool { return true }

func (pl *TaintToleration) Filter(pod *PodInfo, n *NodeInfo) *Status {
	if !n.hasTaints {
		return nil
	}
	if t, ok := fit.UntoleratedTaint(pod.Pod, n.Node); ok {
		return unresolvable(pl.Name(), fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value))
	}
	return nil
}

func (*TaintToleration) PreScore(_ *PodInfo, snap *Snapshot, _ []*NodeInfo) bool {
	return snap.preferNoSchedule > 0
}

func (*TaintToleration) Score(pod *PodInfo, n *NodeInfo) int64 {
	if !n.preferNoSchedule {
		return 0
	}
	var c int64
	for i := range n.Node.Spec.Taints {
		t := &n.Node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule && !tolerates(pod.Pod, t) {
			c++
		}
	}
	return c
}

func (*TaintToleration) Normalize(scores []int64) { normalize(scores, true) }

// tolerates is fit.Tolerates limited, as kube-scheduler's scoring is, to
// tolerations of PreferNoSchedule (or of every effect).
func tolerates(pod *corev1.Pod, t *corev1.Taint) bool {
	for _, tol := range pod.Spec.Tolerations {
		if (tol.Effect == "" || tol.Effect == corev1.TaintEffectPreferNoSchedule) && tol.ToleratesTaint(klog.Background(), t, false) {
			return true
		}
	}
	return false
}

// NodePorts rejects nodes where a host port the pod asks for is taken.
type NodePorts struct{}

func (*NodePorts) Name() string      { return "NodePorts" }
func (*NodePorts) Events() EventMask { return NodeAdded | AssignedPodRemoved }

func (*NodePorts) PreFilter(pod *PodInfo, _ *Snapshot) bool { return len(pod.Ports) > 0 }

func (pl *NodePorts) Filter(pod *PodInfo, n *NodeInfo) *Status {
	if n.portConflict(pod.Ports) {
		return unschedulable(pl.Name(), reasonPorts)
	}
	return nil
}

// normalize maps scores to [0, MaxNodeScore] in proportion to the highest
// one; reverse favours the lowest instead.
func normalize(scores []int64, reverse bool) {
	var hi int64
	for _, s := range scores {
		hi = max(hi, s)
	}
	for i, s := range scores {
		switch {
		case hi == 0 && reverse:
			scores[i] = MaxNodeScore
		case hi == 0:
			scores[i] = 0
		case reverse:
			scores[i] = MaxNodeScore - s*MaxNodeScore/hi
		default:
			scores[i] = s * MaxNodeScore / hi
		}
	}
}
