package ctrl

import (
	"fmt"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

func newDaemonSet(name, image string, nodeSelector map[string]string, surge, unavailable int32) *appsv1.DaemonSet {
	s, u := intstr.FromInt32(surge), intstr.FromInt32(unavailable)
	tmpl := template(name, image)
	tmpl.Spec.NodeSelector = nodeSelector
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labelsOf(name)}, Template: tmpl,
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: &s, MaxUnavailable: &u}}}}
	api.DaemonSet.SetTypeMeta(ds)
	return ds
}

// waitDaemons waits until DaemonSet name runs exactly one Ready pod of
// image on each of nodes and nowhere else (no terminating pod left), and
// its status says so.
func (tc *testCluster) waitDaemons(name, image string, nodes ...string) []*corev1.Pod {
	tc.t.Helper()
	sort.Strings(nodes)
	var pods []*corev1.Pod
	tc.waitUntil(30*time.Second, fmt.Sprintf("daemon set %s on %v with %s", name, nodes, image), func() (bool, string) {
		pods = tc.appPods(name)
		var on []string
		for _, p := range pods {
			if !podAvailableNow(p) || p.Spec.Containers[0].Image != image {
				return false, fmt.Sprintf("pod %s on %q: image %s ready %v terminating %v", p.Name, p.Spec.NodeName,
					p.Spec.Containers[0].Image, podReady(p), p.DeletionTimestamp != nil)
			}
			on = append(on, p.Spec.NodeName)
		}
		sort.Strings(on)
		if fmt.Sprint(on) != fmt.Sprint(nodes) {
			return false, fmt.Sprintf("pods on %v", on)
		}
		ds, _ := tc.get(api.DaemonSet, "default", name).(*appsv1.DaemonSet)
		n := int32(len(nodes))
		if st := ds.Status; st.ObservedGeneration != ds.Generation || st.DesiredNumberScheduled != n || st.CurrentNumberScheduled != n ||
			st.NumberReady != n || st.NumberAvailable != n || st.UpdatedNumberScheduled != n || st.NumberUnavailable != 0 || st.NumberMisscheduled != 0 {
			return false, fmt.Sprintf("status %+v", st)
		}
		return true, ""
	})
	return pods
}

func relabelNode(name string, change func(map[string]string)) func(api.Object) {
	return func(o api.Object) {
		if o.GetLabels() == nil {
			o.SetLabels(map[string]string{})
		}
		change(o.GetLabels())
	}
}

// TestDaemonSet: one pod per matching node, pinned to it by node
// affinity and tolerating what a node agent must; pods follow nodes that
// appear and labels that change; and a rolling update, with and without
// surge, keeps within its bounds in every state of the log.
func TestDaemonSet(t *testing.T) {
	tc := startCluster(t, clusterOptions{servers: 1})
	edge := map[string]string{"role": "edge"}
	tc.kubelet.addNode("n1", map[string]string{"role": "edge"})
	tc.kubelet.addNode("n2", map[string]string{"role": "edge"})
	tc.kubelet.addNode("n3", nil)
	tc.create(newDaemonSet("agent", "agent:1", edge, 0, 1))

	t.Run("placement", func(t *testing.T) {
		tc := tc.sub(t)
		for _, p := range tc.waitDaemons("agent", "agent:1", "n1", "n2") {
			if got := targetNode(&corev1.Pod{Spec: corev1.PodSpec{Affinity: p.Spec.Affinity}}); got != p.Spec.NodeName {
				t.Errorf("pod %s on %s is pinned to %q", p.Name, p.Spec.NodeName, got)
			}
			for _, want := range daemonTolerations {
				found := false
				for _, tol := range p.Spec.Tolerations {
					found = found || (tol.Key == want.Key && tol.Effect == want.Effect && tol.Operator == want.Operator && tol.TolerationSeconds == nil)
				}
				if !found {
					t.Errorf("pod %s lacks the toleration %+v: %+v", p.Name, want, p.Spec.Tolerations)
				}
			}
		}
	})
	t.Run("new node", func(t *testing.T) {
		tc := tc.sub(t)
		tc.kubelet.addNode("n4", map[string]string{"role": "edge"})
		tc.waitDaemons("agent", "agent:1", "n1", "n2", "n4")
	})
	t.Run("node labels change", func(t *testing.T) {
		tc := tc.sub(t)
		tc.update(api.Node, "", "n1", relabelNode("n1", func(l map[string]string) { delete(l, "role") }))
		tc.update(api.Node, "", "n3", relabelNode("n3", func(l map[string]string) { l["role"] = "edge" }))
		tc.waitDaemons("agent", "agent:1", "n2", "n3", "n4")
	})
	t.Run("rolling update", func(t *testing.T) {
		testDaemonRollout(tc.sub(t), "agent", "agent:2", 0, 1, "n2", "n3", "n4")
	})
	t.Run("rolling update with surge", func(t *testing.T) {
		tc := tc.sub(t)
		tc.create(newDaemonSet("surge", "surge:1", nil, 1, 0))
		tc.waitDaemons("surge", "surge:1", "n1", "n2", "n3", "n4")
		testDaemonRollout(tc, "surge", "surge:2", 1, 0, "n1", "n2", "n3", "n4")
	})
}

// testDaemonRollout updates DaemonSet name to image and checks, in every
// state, that at most unavailable nodes lacked an available pod and at
// most surge nodes ran two, and that each node got exactly one new pod.
func testDaemonRollout(tc *testCluster, name, image string, surge, unavailable int, nodes ...string) {
	t := tc.t
	tc.kubelet.setReadiness(50*time.Millisecond, nil)
	defer tc.kubelet.setReadiness(0, nil)
	worstDown, worstDouble := 0, 0
	tr := tc.track("app="+name, func(_ uint64, pods map[string]*corev1.Pod) error {
		active, avail := map[string]int{}, map[string]int{}
		for _, p := range pods {
			node := targetNode(p)
			if podActive(p) {
				active[node]++
			}
			if podAvailableNow(p) {
				avail[node]++
			}
		}
		down, double := 0, 0
		for _, n := range nodes {
			if avail[n] == 0 {
				down++
			}
			if active[n] > 1 {
				double++
			}
		}
		worstDown, worstDouble = max(worstDown, down), max(worstDouble, double)
		if down > unavailable || double > surge {
			return fmt.Errorf("%d nodes without an available pod (max %d), %d with two pods (max %d)", down, unavailable, double, surge)
		}
		return nil
	})
	tc.update(api.DaemonSet, "default", name, func(o api.Object) {
		o.(*appsv1.DaemonSet).Spec.Template.Spec.Containers[0].Image = image
	})
	tc.waitDaemons(name, image, nodes...)
	tr.finish(tc)
	perNode := map[string]int{}
	for _, p := range tr.created {
		perNode[targetNode(p)]++
	}
	for _, n := range nodes {
		if perNode[n] != 1 {
			t.Errorf("node %s got %d new pods", n, perNode[n])
		}
	}
	// The update went as fast as its bounds allow, not one node at a time
	// by luck: the bound was reached.
	if worstDown != unavailable || worstDouble != surge {
		t.Errorf("at worst %d nodes were down and %d doubled; bounds %d and %d", worstDown, worstDouble, unavailable, surge)
	}
}
