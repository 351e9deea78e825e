package fsm

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

// Nodes get the lowest free /24 of the cluster pod range, a freed one is
// reused, a node naming its own keeps it, simulated nodes get none.
func TestNodesGetPodCIDRs(t *testing.T) {
	f := newTestFSM(t)
	cidr := func(name string) string { return f.get(api.Node, "", name).Obj.(*corev1.Node).Spec.PodCIDR }
	bare := func(name string) *corev1.Node { n := node(name); n.Spec.PodCIDR = ""; return n }
	f.mustApply(createCmd(t, bare("a")))
	f.mustApply(createCmd(t, bare("b")))
	if cidr("a") != "10.244.0.0/24" || cidr("b") != "10.244.1.0/24" {
		t.Fatalf("got %s %s", cidr("a"), cidr("b"))
	}
	own := bare("own")
	own.Spec.PodCIDR = "10.244.7.0/24"
	f.mustApply(createCmd(t, own))
	sim := bare("sim")
	sim.Labels = map[string]string{simulatedLabel: "true"}
	f.mustApply(createCmd(t, sim))
	if cidr("own") != "10.244.7.0/24" || cidr("sim") != "" {
		t.Fatalf("own %s sim %q", cidr("own"), cidr("sim"))
	}
	f.mustApply(&Delete{Kind: "Node", Name: "a"})
	f.mustApply(createCmd(t, bare("c")))
	if cidr("c") != "10.244.0.0/24" {
		t.Fatalf("a freed range was not reused: %s", cidr("c"))
	}
}
