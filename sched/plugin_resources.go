package sched

import (
	"math"

	corev1 "k8s.io/api/core/v1"
)

var (
	_ FilterPlugin = (*NodeResourcesFit)(nil)
	_ ScorePlugin  = (*LeastAllocated)(nil)
	_ ScorePlugin  = (*BalancedAllocation)(nil)
)

// NodeResourcesFit rejects nodes without room for every resource the pod
// requests: cpu, memory, the pod itself, and any extended resource
// (nvidia.com/gpu...), which a node that does not advertise it has none of.
type NodeResourcesFit struct {
	buf []corev1.ResourceName
}

func (*NodeResourcesFit) Name() string { return "NodeResourcesFit" }

func (*NodeResourcesFit) Events() EventMask {
	return NodeAdded | NodeAllocatableChanged | AssignedPodRemoved
}

func (*NodeResourcesFit) PreFilter(*PodInfo, *Snapshot) bool { return true }

func (pl *NodeResourcesFit) Filter(pod *PodInfo, n *NodeInfo) *Status {
	pl.buf = insufficient(&pod.Requests, &n.Allocatable, &n.Requested, pl.buf[:0])
	if len(pl.buf) == 0 {
		return nil
	}
	reasons := make([]string, len(pl.buf))
	for i, name := range pl.buf {
		reasons[i] = insufficientReason(name)
	}
	return unschedulable(pl.Name(), reasons...)
}

// insufficientReason is kube-scheduler's wording.
func insufficientReason(name corev1.ResourceName) string {
	if name == corev1.ResourcePods {
		return "Too many pods"
	}
	return "Insufficient " + string(name)
}

// LeastAllocated prefers nodes with the most cpu and memory left after
// placing the pod (kube-scheduler's default spreading of load).
type LeastAllocated struct{}

func (*LeastAllocated) Name() string                                   { return "NodeResourcesLeastAllocated" }
func (*LeastAllocated) PreScore(*PodInfo, *Snapshot, []*NodeInfo) bool { return true }
func (*LeastAllocated) Normalize([]int64)                              {}

func (*LeastAllocated) Score(pod *PodInfo, n *NodeInfo) int64 {
	return (leastAllocated(n.NonZeroCPU+pod.NonZeroCPU, n.Allocatable.MilliCPU) +
		leastAllocated(n.NonZeroMemory+pod.NonZeroMemory, n.Allocatable.Memory)) / 2
}

func leastAllocated(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * MaxNodeScore / capacity
}

// BalancedAllocation prefers nodes whose cpu and memory would be used in
// similar proportions after placing the pod.
type BalancedAllocation struct{}

func (*BalancedAllocation) Name() string                                   { return "NodeResourcesBalancedAllocation" }
func (*BalancedAllocation) PreScore(*PodInfo, *Snapshot, []*NodeInfo) bool { return true }
func (*BalancedAllocation) Normalize([]int64)                              {}

func (*BalancedAllocation) Score(pod *PodInfo, n *NodeInfo) int64 {
	cpu := fraction(n.Requested.MilliCPU+pod.Requests.MilliCPU, n.Allocatable.MilliCPU)
	mem := fraction(n.Requested.Memory+pod.Requests.Memory, n.Allocatable.Memory)
	// The standard deviation of two fractions is half their distance.
	std := math.Abs(cpu-mem) / 2
	return int64((1 - std) * MaxNodeScore)
}

func fraction(requested, capacity int64) float64 {
	if capacity <= 0 {
		return 1
	}
	return min(float64(requested)/float64(capacity), 1)
}
