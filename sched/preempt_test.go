package sched

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// preemptions schedules pending (in this order) and returns, per
// preemptor, "node: victim victim...".
func preemptions(t *testing.T, nodes []*corev1.Node, bound []*corev1.Pod, pending ...*corev1.Pod) map[string]string {
	t.Helper()
	snap := NewSnapshot(nodes, bound, nil)
	plan := Schedule(snap, podInfos(pending...), Options{Seed: 1})
	if len(plan.Bindings) > 0 {
		t.Fatalf("unexpected bindings %v", plan.Bindings)
	}
	isBound := map[string]bool{}
	for _, p := range bound {
		isBound[keyOf(p)] = true
	}
	out := map[string]string{}
	for _, pr := range plan.Preemptions {
		var victims []string
		for _, v := range pr.Victims {
			if !isBound[v.Key] {
				t.Errorf("%s preempts %s, which is not a bound pod", pr.Pod.Key, v.Key)
			}
			if v.Priority >= pr.Pod.Priority {
				t.Errorf("%s (priority %d) preempts %s of priority %d", pr.Pod.Key, pr.Pod.Priority, v.Key, v.Priority)
			}
			victims = append(victims, v.Pod.Name)
		}
		slices.Sort(victims)
		out[pr.Pod.Pod.Name] = pr.Node + ": " + strings.Join(victims, " ")
	}
	return out
}

func cpuNode(name, cpu string) *corev1.Node { return node(name, cpu, "64Gi", 110, nil) }

func on(n string, name, cpu string, prio int32) *corev1.Pod {
	return bindTo(pod("default", name, cpu, "", prio), n)
}

func TestPreemptionPicksLowestPriorityVictims(t *testing.T) {
	got := preemptions(t,
		[]*corev1.Node{cpuNode("n1", "2"), cpuNode("n2", "2")},
		[]*corev1.Pod{
			on("n1", "one-a", "1", 1), on("n1", "one-b", "1", 1), // two victims, but of priority 1
			on("n2", "five", "2", 5), // a single victim of priority 5
		},
		pod("default", "high", "2", "", 10))
	if want := "n1: one-a one-b"; got["high"] != want {
		t.Errorf("high preempts %q, want %q (lower priorities before fewer victims)", got["high"], want)
	}
}

// On one node, the lowest priority level that suffices is used, and the
// higher-priority pods on it are left alone.
func TestPreemptionStaysAtTheLowestSufficientLevel(t *testing.T) {
	got := preemptions(t,
		[]*corev1.Node{cpuNode("n1", "4")},
		[]*corev1.Pod{on("n1", "zero", "1", 0), on("n1", "three-a", "1", 3), on("n1", "three-b", "1", 3), on("n1", "eight", "1", 8)},
		pod("default", "high", "2", "", 10))
	if want := "n1: three-a zero"; got["high"] != want {
		t.Errorf("high preempts %q, want %q", got["high"], want)
	}
}

// The fewest victims, also where kube-scheduler's greedy reprieve (put the
// small pods back first and keep each that still leaves room) takes two:
// it keeps "cpu-hog" (smallest) and then has to evict both memory pods.
func TestPreemptionPicksFewestVictims(t *testing.T) {
	got := preemptions(t,
		[]*corev1.Node{node("n1", "10", "10Gi", 110, nil)},
		[]*corev1.Pod{bindTo(pod("default", "cpu-hog", "5", "", 0), "n1"),
			bindTo(pod("default", "mem-1", "1", "2Gi", 0), "n1"), bindTo(pod("default", "mem-2", "1", "2Gi", 0), "n1")},
		pod("default", "high", "5", "5Gi", 10))
	if want := "n1: cpu-hog"; got["high"] != want {
		t.Errorf("high preempts %q, want %q", got["high"], want)
	}
	got = preemptions(t,
		[]*corev1.Node{cpuNode("n1", "16")},
		[]*corev1.Pod{on("n1", "big", "6", 0), on("n1", "m1", "5", 0), on("n1", "m2", "5", 0)},
		pod("default", "high", "5", "", 10))
	if want := "n1: big"; got["high"] != want {
		t.Errorf("high preempts %q, want %q", got["high"], want)
	}
	// Across nodes, at the same victim priority: the node needing fewer.
	got = preemptions(t,
		[]*corev1.Node{cpuNode("a", "4"), cpuNode("b", "4")},
		[]*corev1.Pod{on("a", "a1", "2", 0), on("a", "a2", "1", 0), on("a", "a3", "1", 0), on("b", "b1", "1", 0), on("b", "b2", "3", 0)},
		pod("default", "high", "3", "", 10))
	if want := "b: b2"; got["high"] != want {
		t.Errorf("high preempts %q, want %q", got["high"], want)
	}
}

func TestPreemptionNeverTakes(t *testing.T) {
	never := corev1.PreemptNever
	polite := pod("default", "polite", "2", "", 100)
	polite.Spec.PreemptionPolicy = &never
	terminating := on("n2", "terminating", "2", 0)
	terminating.DeletionTimestamp = &metav1.Time{}
	tainted := cpuNode("n3", "2")
	tainted.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
	tests := []struct {
		name    string
		nodes   []*corev1.Node
		bound   []*corev1.Pod
		pending *corev1.Pod
	}{
		{"pods of equal priority", []*corev1.Node{cpuNode("n1", "2")}, []*corev1.Pod{on("n1", "equal", "2", 10)}, pod("default", "p", "2", "", 10)},
		{"pods of higher priority", []*corev1.Node{cpuNode("n1", "2")}, []*corev1.Pod{on("n1", "higher", "2", 11)}, pod("default", "p", "2", "", 10)},
		{"anything, for a pod with preemptionPolicy Never", []*corev1.Node{cpuNode("n1", "2")}, []*corev1.Pod{on("n1", "low", "2", 0)}, polite},
		{"a pod already terminating", []*corev1.Node{cpuNode("n2", "2")}, []*corev1.Pod{terminating}, pod("default", "p", "2", "", 10)},
		{"pods on a node whose taint the pod does not tolerate", []*corev1.Node{tainted}, []*corev1.Pod{on("n3", "low", "2", 0)}, pod("default", "p", "2", "", 10)},
		{"pods whose removal is not enough", []*corev1.Node{cpuNode("n1", "2")}, []*corev1.Pod{on("n1", "low", "1", 0), on("n1", "high", "1", 50)}, pod("default", "p", "2", "", 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := preemptions(t, tt.nodes, tt.bound, tt.pending); len(got) > 0 {
				t.Errorf("preempted %v", got)
			}
		})
	}
}

// A pod that already preempted waits for its victims to go instead of
// choosing more.
func TestPreemptionWaitsForEarlierVictims(t *testing.T) {
	leaving := on("n1", "leaving", "1", 0)
	leaving.DeletionTimestamp = &metav1.Time{}
	high := pod("default", "high", "1", "", 10)
	high.Status.NominatedNodeName = "n1"
	got := preemptions(t, []*corev1.Node{cpuNode("n1", "2"), cpuNode("n2", "2")},
		[]*corev1.Pod{leaving, on("n1", "stays", "1", 0), on("n2", "other", "2", 0)}, high)
	if len(got) > 0 {
		t.Errorf("preempted %v while its earlier victim is still terminating", got)
	}
	// Without the nomination it preempts as usual.
	high.Status.NominatedNodeName = ""
	if got := preemptions(t, []*corev1.Node{cpuNode("n1", "2"), cpuNode("n2", "2")},
		[]*corev1.Pod{leaving, on("n1", "stays", "1", 0), on("n2", "other", "2", 0)}, high); got["high"] != "n1: stays" {
		t.Errorf("preempted %v, want n1: stays", got)
	}
}

// Within one plan, two preemptors never count on the same victims, and a
// preemptor holding its place is never a victim itself (it is a pending
// pod: deleting it would be a disaster), whatever order the pods come in.
func TestPreemptionWithinOnePlan(t *testing.T) {
	got := preemptions(t, []*corev1.Node{cpuNode("n1", "2"), cpuNode("n2", "2")},
		[]*corev1.Pod{on("n1", "low1", "2", 0), on("n2", "low2", "2", 0)},
		pod("default", "first", "2", "", 10), pod("default", "second", "2", "", 10))
	if got["first"] == "" || got["second"] == "" || got["first"] == got["second"] {
		t.Errorf("preemptions %v: want each preemptor on its own node and victim", got)
	}
	// top would fit beside low, but not beside low and mid's placeholder;
	// removing the placeholder alone would make room.
	got = preemptions(t, []*corev1.Node{cpuNode("n1", "4")},
		[]*corev1.Pod{on("n1", "low", "3", 0)},
		pod("default", "mid", "2", "", 50), pod("default", "top", "1", "", 100))
	if want := map[string]string{"mid": "n1: low"}; len(got) != 1 || got["mid"] != want["mid"] {
		t.Errorf("preemptions %v, want %v", got, want)
	}
}

// While its victims are still there, the preemptor's place is taken for
// the rest of the plan: a pod after it neither binds there nor preempts
// the same node, and the snapshot is left without the placeholder.
func TestPreemptorHoldsItsPlace(t *testing.T) {
	snap := NewSnapshot([]*corev1.Node{cpuNode("n1", "2")}, []*corev1.Pod{on("n1", "low", "1", 0)}, nil)
	plan := Schedule(snap, podInfos(pod("default", "high", "2", "", 10), pod("default", "small", "1", "", 10)), Options{Seed: 1})
	if len(plan.Preemptions) != 1 || len(plan.Bindings) != 0 {
		t.Fatalf("plan: %d preemptions, bindings %v; want one preemption and no binding", len(plan.Preemptions), plan.Bindings)
	}
	if n := snap.Node("n1"); len(n.Pods) != 1 || n.Pods[0].Key != "default/low" || n.Requested.MilliCPU != 1000 {
		t.Errorf("snapshot after the plan holds %d pods, %dm cpu; want only the bound pod", len(n.Pods), n.Requested.MilliCPU)
	}
}

// A preemptor's placeholder is not a pod that is there: a pod may rely on
// it only as kube-scheduler lets it rely on a nominated pod, that is when
// the filters pass both with and without it.
func TestPreemptorPlaceholderIsNotThere(t *testing.T) {
	zone := func(z string) map[string]string { return map[string]string{corev1.LabelTopologyZone: z} }
	nodes := []*corev1.Node{
		node("a-full", "6", "8Gi", 110, zone("a")),  // the preemptor's node
		node("a-room", "4", "8Gi", 110, zone("a")),  // room for 2 cpu
		node("b-roomy", "4", "8Gi", 110, zone("b")), // room for 4
	}
	bound := []*corev1.Pod{on("a-full", "low", "6", 0), on("a-room", "other", "2", 100)}
	labelled := func(p *corev1.Pod, app string) *corev1.Pod { p.Labels = map[string]string{"app": app}; return p }
	affine := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: corev1.LabelTopologyZone}}}}
		return p
	}
	schedule := func(bound []*corev1.Pod, pending ...*corev1.Pod) (Plan, map[string]string) {
		plan := Schedule(NewSnapshot(nodes, bound, nil), podInfos(pending...), Options{Seed: 1})
		where := map[string]string{}
		for _, b := range plan.Bindings {
			where[b.Name] = b.Node
		}
		return plan, where
	}
	// web preempts low on a-full (zone a): 5 cpu fit nowhere else.
	web := labelled(pod("default", "web", "5", "", 50), "web")

	// Not the first of its group (it is no web pod): it cannot count on
	// web, which is not there yet.
	plan, where := schedule(bound, web, affine(labelled(pod("default", "cache", "1", "", 10), "cache")))
	if len(plan.Preemptions) != 1 || where["cache"] != "" {
		t.Errorf("cache: preemptions %d, bound to %q; want web to preempt and cache to wait", len(plan.Preemptions), where["cache"])
	}
	// The first of its group may go anywhere without it, and only next to
	// it with it: zone a, although b is emptier.
	if _, where = schedule(bound, web, affine(labelled(pod("default", "web-2", "1", "", 10), "web"))); where["web-2"] != "a-room" {
		t.Errorf("web-2 bound to %q, want a-room (next to the preemptor)", where["web-2"])
	}

	// Spreading (maxSkew 1 over zones) with a web pod in zone b: zone b is
	// full without the placeholder (1-0+1 > 1), zone a fits both ways.
	spread := labelled(pod("default", "spread", "1", "", 10), "web")
	spread.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone,
		WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	inB := labelled(on("b-roomy", "web-b", "1", 100), "web")
	if _, where = schedule(append(bound, inB), web, spread); where["spread"] != "a-room" {
		t.Errorf("spread bound to %q, want a-room", where["spread"])
	}
	// Without web-b, zone a is full with the placeholder (1+1-0 > 1): b,
	// although a-room has more room left.
	filler := on("b-roomy", "filler", "3", 100)
	if _, where = schedule(append(bound, filler), web, spread); where["spread"] != "b-roomy" {
		t.Errorf("spread bound to %q, want b-roomy", where["spread"])
	}
}
