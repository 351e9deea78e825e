package sched

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The example: a pod too big for three nodes and not tolerating the
// taint of two others is explained per reason, counted, most frequent first,
// and waits for the changes that could help (more memory somewhere, a
// taint removed), not for the ones that cannot (labels).
func TestExplainCountsPerReason(t *testing.T) {
	taint := corev1.Taint{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}
	nodes := []*corev1.Node{
		node("small-1", "4", "1Gi", 110, nil), node("small-2", "4", "1Gi", 110, nil), node("small-3", "4", "2Gi", 110, nil),
		node("infra-1", "4", "64Gi", 110, nil, taint), node("infra-2", "4", "64Gi", 110, nil, taint),
	}
	plan := Schedule(NewSnapshot(nodes, nil, nil), podInfos(pod("default", "big-one", "1", "8Gi", 0)), Options{Seed: 1})
	if len(plan.Unschedulable) != 1 {
		t.Fatalf("plan %+v: want big-one unschedulable", plan)
	}
	u := plan.Unschedulable[0]
	if want := "0/5 nodes are available: 3 Insufficient memory, 2 node(s) had untolerated taint {dedicated: infra}."; u.Message != want {
		t.Errorf("message\n%q\nwant\n%q", u.Message, want)
	}
	for _, e := range []EventMask{NodeAdded, NodeAllocatableChanged, AssignedPodRemoved, NodeTaintsChanged} {
		if u.Events&e == 0 {
			t.Errorf("events %b: does not wait for %b", u.Events, e)
		}
	}
	for _, e := range []EventMask{NodeLabelsChanged, AssignedPodAdded, NamespaceLabelsChanged} {
		if u.Events&e != 0 {
			t.Errorf("events %b: woken by %b, which cannot help", u.Events, e)
		}
	}
}

// Each filter's reason, in kube-scheduler's words; a node short of several
// resources counts once for each.
func TestExplainReasons(t *testing.T) {
	notReady := node("n", "4", "4Gi", 110, nil)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	cordoned := node("n", "4", "4Gi", 110, nil)
	cordoned.Spec.Unschedulable = true
	withPort := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80, Protocol: corev1.ProtocolTCP}}
		return p
	}
	selecting := pod("default", "p", "", "", 0)
	selecting.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	tests := []struct {
		name  string
		node  *corev1.Node
		bound []*corev1.Pod
		pod   *corev1.Pod
		want  string
	}{
		{"not ready", notReady, nil, pod("default", "p", "", "", 0), "0/1 nodes are available: 1 node(s) were not ready."},
		{"cordoned", cordoned, nil, pod("default", "p", "", "", 0), "0/1 nodes are available: 1 node(s) were unschedulable."},
		{"selector", node("n", "4", "4Gi", 110, nil), nil, selecting, "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."},
		{"ports", node("n", "4", "4Gi", 110, nil), []*corev1.Pod{bindTo(withPort(pod("default", "q", "", "", 0)), "n")},
			withPort(pod("default", "p", "", "", 0)), "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		{"pods", node("n", "4", "4Gi", 1, nil), []*corev1.Pod{bindTo(pod("default", "q", "", "", 0), "n")},
			pod("default", "p", "", "", 0), "0/1 nodes are available: 1 Too many pods."},
		{"several resources", node("n", "1", "1Gi", 110, nil), nil, pod("default", "p", "2", "2Gi", 0),
			"0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."},
		{"extended resource the node lacks", node("n", "4", "4Gi", 110, nil), nil, func() *corev1.Pod {
			p := pod("default", "p", "", "", 0)
			p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("1")
			return p
		}(), "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Schedule(NewSnapshot([]*corev1.Node{tt.node}, tt.bound, nil), podInfos(tt.pod), Options{Seed: 1, DisablePreemption: true})
			if len(plan.Unschedulable) != 1 {
				t.Fatalf("bindings %v: want the pod unschedulable", plan.Bindings)
			}
			if got := plan.Unschedulable[0].Message; got != tt.want {
				t.Errorf("message %q, want %q", got, tt.want)
			}
		})
	}
	plan := Schedule(NewSnapshot(nil, nil, nil), podInfos(pod("default", "p", "", "", 0)), Options{})
	if u := plan.Unschedulable[0]; u.Message != "no nodes available to schedule pods" || u.Events != NodeAdded {
		t.Errorf("without nodes: %q, events %b", u.Message, u.Events)
	}
}

func TestExplainOrder(t *testing.T) {
	got := explain(7, reasonCounts{"b reason": 2, "a reason": 2, "c reason": 3})
	if want := "0/7 nodes are available: 3 c reason, 2 a reason, 2 b reason."; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
