package sched

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Pods that arrive together are bound together: one Bind entry for the
// whole plan, spread over the nodes, each pod with PodScheduled=True.
func TestRunBindsABurstInOneEntry(t *testing.T) {
	var counter atomic.Pointer[countingCluster]
	rc := startRunCluster(t, 1, Options{}, func(a *agent.Agent) Cluster {
		c := &countingCluster{Agent: a}
		counter.Store(c)
		return c
	})
	var nodes []api.Object
	for i := range 4 {
		nodes = append(nodes, apiNode(fmt.Sprintf("n%d", i), "8", "16Gi", 110))
	}
	rc.create(nodes...)
	var pods []api.Object
	for i := range 300 {
		pods = append(pods, apiPod("default", fmt.Sprintf("p%d", i), "10m", "16Mi", ""))
	}
	rc.create(pods...) // one Raft entry: the scheduler sees them at once
	perNode := map[string]int{}
	for i := range 300 {
		p := rc.waitPod("default", fmt.Sprintf("p%d", i), "bound", bound)
		perNode[p.Spec.NodeName]++
		if c := podScheduledCondition(p); c == nil || c.Status != corev1.ConditionTrue {
			t.Errorf("%s bound without PodScheduled=True: %+v", p.Name, c)
		}
	}
	if got := counter.Load().entries(); !slices.Equal(got, []int{300}) {
		t.Errorf("Bind entries carried %v bindings, want one entry of 300", got)
	}
	for i := range 4 {
		if n := perNode[fmt.Sprintf("n%d", i)]; n < 50 {
			t.Errorf("node n%d got %d of 300 pods: %v (not spread)", i, n, perNode)
		}
	}
}

// A pod that fits nowhere gets PodScheduled=False with the reasons counted
// per node, and one FailedScheduling Event; it is bound as soon as the
// cluster changes in a way that lets it fit.
func TestRunExplainsThenRetriesOnClusterChange(t *testing.T) {
	rc := startRunCluster(t, 1, Options{}, nil)
	taint := corev1.Taint{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}
	rc.create(apiNode("small-1", "4", "1Gi", 110), apiNode("small-2", "4", "1Gi", 110), apiNode("small-3", "4", "2Gi", 110),
		apiNode("infra-1", "4", "64Gi", 110, taint), apiNode("infra-2", "4", "64Gi", 110, taint))
	rc.create(apiPod("default", "big-one", "1", "8Gi", ""))

	const want = "0/5 nodes are available: 3 Insufficient memory, 2 node(s) had untolerated taint {dedicated: infra}."
	p := rc.waitPod("default", "big-one", "explained", func(p *corev1.Pod) bool {
		c := podScheduledCondition(p)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	c := podScheduledCondition(p)
	if c.Reason != corev1.PodReasonUnschedulable || c.Message != want {
		t.Errorf("PodScheduled: reason %q, message %q; want %q, %q", c.Reason, c.Message, corev1.PodReasonUnschedulable, want)
	}
	rc.WaitFor(20*time.Second, "a FailedScheduling event", func() bool { return len(rc.events(p)) > 0 })
	ev := rc.events(p)[0]
	if ev.Reason != "FailedScheduling" || ev.Message != want || ev.Type != corev1.EventTypeWarning {
		t.Errorf("event: %s %s %q", ev.Type, ev.Reason, ev.Message)
	}

	// A change that cannot help (a new tainted node) leaves it pending and
	// explained by the new count; one that can (room) binds it.
	rc.create(apiNode("infra-3", "4", "64Gi", 110, taint))
	rc.waitPod("default", "big-one", "re-explained", func(p *corev1.Pod) bool {
		c := podScheduledCondition(p)
		return c != nil && c.Message == "0/6 nodes are available: 3 Insufficient memory, 3 node(s) had untolerated taint {dedicated: infra}."
	})
	rc.create(apiNode("roomy", "4", "16Gi", 110))
	p = rc.waitPod("default", "big-one", "bound", bound)
	if p.Spec.NodeName != "roomy" {
		t.Errorf("bound to %s, want roomy", p.Spec.NodeName)
	}
	// One event per explanation, however many attempts.
	rc.WaitFor(20*time.Second, "the second event", func() bool { return len(rc.events(p)) >= 2 })
	if evs := rc.events(p); len(evs) != 2 || evs[0].Message == evs[1].Message {
		t.Errorf("%d events, want one per explanation (2)", len(evs))
	}
}

// A high-priority pod that fits nowhere preempts: the lowest-priority pod
// and only as many as needed are deleted, the pod is nominated and then
// bound where they were.
func TestRunPreemptsLowerPriority(t *testing.T) {
	rc := startRunCluster(t, 1, Options{}, nil)
	rc.create(priorityClass("low", 10), priorityClass("mid", 500), priorityClass("high", 1000))
	rc.create(apiNode("n1", "3", "4Gi", 110))
	var zero int64
	var victims []api.Object
	for _, p := range []*corev1.Pod{apiPod("default", "low-a", "1", "", "low"), apiPod("default", "low-b", "1", "", "low"),
		apiPod("default", "mid", "1", "", "mid")} {
		p.Spec.TerminationGracePeriodSeconds = &zero // deleted at once: no kubelet here
		victims = append(victims, p)
	}
	rc.create(victims...)
	for _, name := range []string{"low-a", "low-b", "mid"} {
		rc.waitPod("default", name, "bound", bound)
	}

	rc.create(apiPod("default", "high", "1", "", "high"))
	p := rc.waitPod("default", "high", "bound", bound)
	if p.Spec.NodeName != "n1" || p.Status.NominatedNodeName != "n1" {
		t.Errorf("high: bound to %q, nominated %q; want n1 for both", p.Spec.NodeName, p.Status.NominatedNodeName)
	}
	if rc.pod("default", "low-a") != nil {
		t.Error("low-a (lowest priority, first by name) was not preempted")
	}
	for _, name := range []string{"low-b", "mid"} {
		if q := rc.pod("default", name); q == nil || !bound(q) {
			t.Errorf("%s was preempted too: one victim was enough", name)
		}
	}
	var remaining []string
	rc.leader().View().PodsOnNode("n1", func(r *fsm.Record) bool {
		remaining = append(remaining, r.Obj.GetName())
		return true
	})
	slices.Sort(remaining)
	if !slices.Equal(remaining, []string{"high", "low-b", "mid"}) {
		t.Errorf("n1 holds %v", remaining)
	}
}
