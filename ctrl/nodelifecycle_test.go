package ctrl

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func (tc *testCluster) node(name string) *corev1.Node {
	n, _ := tc.get(api.Node, "", name).(*corev1.Node)
	return n
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	if c := nodeCondition(n, corev1.NodeReady); c != nil {
		return c.Status
	}
	return ""
}

func taint(n *corev1.Node, key string, effect corev1.TaintEffect) *corev1.Taint {
	for i := range n.Spec.Taints {
		if t := &n.Spec.Taints[i]; t.Key == key && t.Effect == effect {
			return t
		}
	}
	return nil
}

// TestNodeLifecycle: a node that stops heartbeating goes Ready=Unknown
// and is tainted unreachable; its pods are deleted once their toleration
// of that taint runs out (not before, and not those that tolerate it
// longer) and are replaced elsewhere; when it heartbeats again it is
// Ready and untainted; when its Node is deleted, so are its pods.
func TestNodeLifecycle(t *testing.T) {
	const tolerationSeconds, grace = 2, 2 * time.Second
	tc := startCluster(t, clusterOptions{servers: 1,
		opts:      Options{NodeMonitorGracePeriod: grace, NodeMonitorPeriod: 100 * time.Millisecond},
		configure: func(c *agent.Config) { c.DefaultTolerationSeconds = tolerationSeconds }})
	tc.kubelet.addNode("n1", nil)
	tc.create(newReplicaSet("web", 3))
	patient := newReplicaSet("patient", 1)
	forever := int64(3600)
	patient.Spec.Template.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &forever}}
	tc.create(patient)
	loyal := newReplicaSet("loyal", 1) // tolerates unreachable for ever, as daemons do
	loyal.Spec.Template.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}
	tc.create(loyal)
	tc.waitReplicas("web", 3)
	patientPod := tc.waitReplicas("patient", 1)[0]
	loyalPod := tc.waitReplicas("loyal", 1)[0]
	// Only now a second node: every pod so far is on n1.
	tc.kubelet.addNode("n2", nil)

	tc.kubelet.setAlive("n1", false)
	// A node that registers and never heartbeats (tainted so that no pod
	// goes there): Unknown only once the grace period from its creation
	// has passed, however long this leader has led.
	silent := newNode("silent", nil)
	silent.Spec.Taints = []corev1.Taint{{Key: "example.com/silent", Effect: corev1.TaintEffectNoSchedule}}
	silent = tc.create(silent).(*corev1.Node)
	var unreachable *corev1.Taint
	tc.waitUntil(20*time.Second, "n1 Ready=Unknown and tainted unreachable", func() (bool, string) {
		n := tc.node("n1")
		unreachable = taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
		ok := readyStatus(n) == corev1.ConditionUnknown && unreachable != nil && unreachable.TimeAdded != nil &&
			taint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) != nil
		return ok, fmt.Sprintf("ready %s, taints %+v", readyStatus(n), n.Spec.Taints)
	})
	if c := nodeCondition(tc.node("n1"), corev1.NodeReady); c.Reason != reasonNodeStatusUnknown {
		t.Errorf("Ready condition: %+v", c)
	}
	tc.waitUntil(20*time.Second, "the silent node Ready=Unknown", func() (bool, string) {
		n := tc.node("silent")
		return readyStatus(n) == corev1.ConditionUnknown, fmt.Sprintf("ready %s", readyStatus(n))
	})
	// Both times are whole seconds, the grace period too.
	if c := nodeCondition(tc.node("silent"), corev1.NodeReady); c.LastTransitionTime.Before(ptr(metav1.NewTime(silent.CreationTimestamp.Add(grace)))) {
		t.Errorf("the silent node created at %s went Unknown at %s, within the %s grace period", silent.CreationTimestamp, c.LastTransitionTime, grace)
	}
	var evicted []*corev1.Pod
	tc.waitUntil(20*time.Second, "n1's web pods evicted and replaced on n2", func() (bool, string) {
		evicted = nil
		onN2 := 0
		for _, p := range tc.appPods("web") {
			switch {
			case p.Spec.NodeName == "n1" && p.DeletionTimestamp != nil:
				evicted = append(evicted, p)
			case p.Spec.NodeName == "n2" && podAvailableNow(p):
				onN2++
			}
		}
		return len(evicted) == 3 && onN2 == 3, fmt.Sprintf("%d evicted, %d ready on n2", len(evicted), onN2)
	})
	for _, p := range evicted {
		// A graceful deletion sets deletionTimestamp to the moment of
		// deletion plus the grace period; both are whole seconds here.
		deletedAt := p.DeletionTimestamp.Add(-time.Duration(*p.DeletionGracePeriodSeconds) * time.Second)
		if due := unreachable.TimeAdded.Add(tolerationSeconds * time.Second); deletedAt.Before(due) {
			t.Errorf("pod %s deleted at %s, before its toleration ran out at %s", p.Name, deletedAt, due)
		}
	}
	for _, kept := range []*corev1.Pod{patientPod, loyalPod} {
		if p, _ := tc.get(api.Pod, "default", kept.Name).(*corev1.Pod); p == nil || p.DeletionTimestamp != nil {
			t.Errorf("pod %s tolerates unreachable long enough but was evicted", kept.Name)
		}
	}

	tc.kubelet.setAlive("n1", true)
	tc.waitUntil(20*time.Second, "n1 Ready and untainted, its evicted pods gone", func() (bool, string) {
		n := tc.node("n1")
		if readyStatus(n) != corev1.ConditionTrue || len(n.Spec.Taints) > 0 {
			return false, fmt.Sprintf("ready %s, taints %+v", readyStatus(n), n.Spec.Taints)
		}
		for _, p := range tc.appPods("web") {
			if p.Spec.NodeName == "n1" {
				return false, "pod " + p.Name + " remains on n1"
			}
		}
		return true, ""
	})
	if p, _ := tc.get(api.Pod, "default", patientPod.Name).(*corev1.Pod); p == nil || !podAvailableNow(p) {
		t.Errorf("the patient pod should be running again on n1: %+v", p)
	}

	// A Node deleted for good: no kubelet will confirm its pods'
	// termination, so they are deleted at once.
	tc.kubelet.setAlive("n1", false)
	if err := tc.cl.Delete(tc.ctx, api.Node, "", "n1", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	tc.waitUntil(20*time.Second, "the deleted node's pod gone and replaced on n2", func() (bool, string) {
		if tc.get(api.Pod, "default", patientPod.Name) != nil {
			return false, "pod " + patientPod.Name + " remains"
		}
		pods := tc.readyReplicas("patient")
		return len(pods) == 1 && pods[0].Spec.NodeName == "n2", fmt.Sprintf("%d patient pods", len(pods))
	})
}

// readyReplicas are the Ready pods ReplicaSet name controls.
func (tc *testCluster) readyReplicas(name string) []*corev1.Pod {
	controlled, _ := tc.rsPods(name)
	var out []*corev1.Pod
	for _, p := range controlled {
		if podAvailableNow(p) {
			out = append(out, p)
		}
	}
	return out
}
