package sched

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/sched/fit"
)

// NodeInfo is a node with the pods that occupy it and what they take. The
// scheduler's own bookkeeping (assumed bindings) lives here too: an assumed
// pod counts exactly like a bound one.
//
// The fields every scanned node is checked on come first, so that a scan
// over thousands of nodes touches little memory per node.
type NodeInfo struct {
	Ready         bool
	Unschedulable bool
	// hasTaints: the node has taints; preferNoSchedule: some of them are
	// PreferNoSchedule.
	hasTaints, preferNoSchedule bool
	zoneID                      int32 // the snapshot's number for Zone, 0 for none

	Allocatable Resource
	Requested   Resource
	// NonZeroCPU and NonZeroMemory sum the pods' requests as scores count
	// them (with defaults for pods that request nothing).
	NonZeroCPU, NonZeroMemory int64
	// owners counts pods per controller (the snapshot numbers them).
	owners []ownerCount
	ports  []fit.HostPort

	Name string
	// Node is nil while pods name a node that does not exist (yet): such a
	// NodeInfo only keeps their account and is never a candidate.
	Node *corev1.Node
	Zone string
	Pods []*PodInfo
	// antiAffinityPods counts pods with required anti-affinity terms.
	antiAffinityPods int
}

type ownerCount struct{ id, n int32 }

func newNodeInfo(name string) *NodeInfo { return &NodeInfo{Name: name} }

// zoneOf is the zone label of a node, "" when it has none.
func zoneOf(node *corev1.Node) string {
	if z, ok := node.Labels[corev1.LabelTopologyZone]; ok {
		return z
	}
	return node.Labels[corev1.LabelFailureDomainBetaZone]
}

func (n *NodeInfo) setNode(node *corev1.Node) {
	n.Node = node
	if node == nil {
		n.Allocatable = Resource{}
		n.Ready, n.hasTaints, n.preferNoSchedule = false, false, false
		return
	}
	n.Allocatable = newResource(fit.Allocatable(node))
	n.Ready = fit.Ready(node)
	n.Unschedulable = node.Spec.Unschedulable
	n.Zone = zoneOf(node)
	n.hasTaints = len(node.Spec.Taints) > 0
	n.preferNoSchedule = slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Effect == corev1.TaintEffectPreferNoSchedule })
}

func (n *NodeInfo) addPod(p *PodInfo, owner int32) {
	n.Pods = append(n.Pods, p)
	n.Requested.Add(&p.Requests)
	n.NonZeroCPU += p.NonZeroCPU
	n.NonZeroMemory += p.NonZeroMemory
	n.ports = append(n.ports, p.Ports...)
	if owner != 0 {
		if i := n.ownerIndex(owner); i >= 0 {
			n.owners[i].n++
		} else {
			n.owners = append(n.owners, ownerCount{owner, 1})
		}
	}
	if len(p.RequiredAntiAffinity) > 0 {
		n.antiAffinityPods++
	}
}

// removePod removes the pod with key and returns it, or nil.
func (n *NodeInfo) removePod(key string, owner int32) *PodInfo {
	i := slices.IndexFunc(n.Pods, func(p *PodInfo) bool { return p.Key == key })
	if i < 0 {
		return nil
	}
	p := n.Pods[i]
	last := len(n.Pods) - 1
	n.Pods[i] = n.Pods[last]
	n.Pods[last] = nil
	n.Pods = n.Pods[:last]
	n.Requested.Sub(&p.Requests)
	n.NonZeroCPU -= p.NonZeroCPU
	n.NonZeroMemory -= p.NonZeroMemory
	if len(p.Ports) > 0 {
		n.ports = n.ports[:0]
		for _, q := range n.Pods {
			n.ports = append(n.ports, q.Ports...)
		}
	}
	if i := n.ownerIndex(owner); owner != 0 && i >= 0 {
		if n.owners[i].n--; n.owners[i].n <= 0 {
			n.owners = slices.Delete(n.owners, i, i+1)
		}
	}
	if len(p.RequiredAntiAffinity) > 0 {
		n.antiAffinityPods--
	}
	return p
}

func (n *NodeInfo) ownerIndex(owner int32) int {
	for i := range n.owners {
		if n.owners[i].id == owner {
			return i
		}
	}
	return -1
}

// ownerCount is how many pods of the controller numbered owner the node
// holds.
func (n *NodeInfo) ownerCount(owner int32) int32 {
	for i := range n.owners {
		if n.owners[i].id == owner {
			return n.owners[i].n
		}
	}
	return 0
}

// portConflict reports whether one of want is taken on the node, with
// sched/fit.PortConflict's rule.
func (n *NodeInfo) portConflict(want []fit.HostPort) bool {
	for _, h := range n.ports {
		for _, w := range want {
			if h.Port == w.Port && h.Protocol == w.Protocol && (h.IP == w.IP || h.IP == "0.0.0.0" || w.IP == "0.0.0.0") {
				return true
			}
		}
	}
	return false
}
