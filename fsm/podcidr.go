package fsm

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/netdefaults"
)

// ClusterPodCIDR is the range pod networks are cut from, one /24 per node
// (DESIGN.md). It is a cluster-wide constant: every server must allocate
// identically.
var ClusterPodCIDR = netdefaults.PodCIDR

const nodePodCIDRBits = 24

// simulatedLabel marks nodes of `orchd simulate`, which run no pods and get
// no pod network.
const simulatedLabel = "orch.dev/simulated"

// allocatePodCIDR gives a new node the lowest free /24 of the cluster pod
// range, unless it names one itself or is simulated. When the range is
// exhausted the node is created without one (its worker reports that).
func (a *applier) allocatePodCIDR(node *corev1.Node) {
	if node.Spec.PodCIDR != "" || node.Labels[simulatedLabel] == "true" {
		return
	}
	used := map[netip.Prefix]bool{}
	for _, rec := range a.collect(api.Node.Resource, indexID) {
		if p, err := netip.ParsePrefix(rec.Obj.(*corev1.Node).Spec.PodCIDR); err == nil {
			used[p] = true
		}
	}
	base := ClusterPodCIDR.Addr().As4()
	for i := range 1 << (nodePodCIDRBits - ClusterPodCIDR.Bits()) {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), nodePodCIDRBits)
		if !used[p] {
			node.Spec.PodCIDR = p.String()
			node.Spec.PodCIDRs = []string{p.String()}
			return
		}
	}
}
