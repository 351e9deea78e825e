package ctrl

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// rsPods are the pods of ReplicaSet name, split into the active ones it
// controls and every other pod labelled app=name.
func (tc *testCluster) rsPods(name string) (controlled, other []*corev1.Pod) {
	rs, _ := tc.get(api.ReplicaSet, "default", name).(*appsv1.ReplicaSet)
	for _, p := range tc.appPods(name) {
		if rs != nil && podActive(p) && controlledBy(p, rs.UID) {
			controlled = append(controlled, p)
		} else {
			other = append(other, p)
		}
	}
	return controlled, other
}

// waitReplicas waits until ReplicaSet name controls exactly n active
// pods, all Ready, and its status says so.
func (tc *testCluster) waitReplicas(name string, n int) []*corev1.Pod {
	tc.t.Helper()
	var pods []*corev1.Pod
	tc.waitUntil(30*time.Second, fmt.Sprintf("replica set %s at %d ready replicas", name, n), func() (bool, string) {
		rs, _ := tc.get(api.ReplicaSet, "default", name).(*appsv1.ReplicaSet)
		if rs == nil {
			return false, "no replica set"
		}
		pods, _ = tc.rsPods(name)
		ready := countPods(podMap(pods), podAvailableNow)
		st := rs.Status
		if len(pods) != n || ready != n || st.Replicas != int32(n) || st.ReadyReplicas != int32(n) || st.ObservedGeneration != rs.Generation {
			return false, fmt.Sprintf("%d active pods, %d ready; status %+v", len(pods), ready, st)
		}
		return true, ""
	})
	return pods
}

func podMap(pods []*corev1.Pod) map[string]*corev1.Pod {
	m := map[string]*corev1.Pod{}
	for _, p := range pods {
		m[p.Name] = p
	}
	return m
}

func scaleRS(n int32) func(api.Object) {
	return func(o api.Object) { o.(*appsv1.ReplicaSet).Spec.Replicas = &n }
}

// TestReplicaSet walks one ReplicaSet through scaling, lost pods, an
// orphan to adopt and a pod to release; after each step it controls
// exactly the wanted number of Ready pods, and in every state of the log
// it never had more active pods than the largest number asked for.
func TestReplicaSet(t *testing.T) {
	tc := startCluster(t, clusterOptions{servers: 1})
	tc.kubelet.addNode("n1", nil)
	tc.create(newReplicaSet("rs", 3))
	tc.waitReplicas("rs", 3)
	strayAdopted := false
	tr := tc.track("app=rs", func(_ uint64, pods map[string]*corev1.Pod) error {
		if p := pods["default/stray"]; p != nil && metav1.GetControllerOf(p) != nil {
			strayAdopted = true
		}
		if n := countPods(pods, podActive); n > 7 {
			return fmt.Errorf("%d active pods; never more than 7 were asked for", n)
		}
		return nil
	})
	var victim *corev1.Pod
	steps := []struct {
		name string
		do   func(t *testing.T)
		want int
		// check runs after the ReplicaSet has settled.
		check func(t *testing.T, controlled, other []*corev1.Pod)
	}{
		{"scale up", func(*testing.T) { tc.update(api.ReplicaSet, "default", "rs", scaleRS(7)) }, 7, nil},
		{"scale down", func(*testing.T) { tc.update(api.ReplicaSet, "default", "rs", scaleRS(2)) }, 2, nil},
		{"deleted pod is replaced", func(t *testing.T) {
			pods, _ := tc.rsPods("rs")
			victim = pods[0]
			if err := tc.cl.Delete(tc.ctx, api.Pod, "default", victim.Name, client.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, 2, func(t *testing.T, controlled, _ []*corev1.Pod) {
			for _, p := range controlled {
				if p.UID == victim.UID {
					t.Errorf("deleted pod %s still counted", p.Name)
				}
			}
		}},
		{"orphan is adopted", func(t *testing.T) {
			// A matching pod without a controller: the ReplicaSet adopts
			// it, then has one pod too many and deletes one.
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: "default", Labels: labelsOf("rs")},
				Spec: template("rs", "img:1").Spec}
			api.Pod.SetTypeMeta(p)
			tc.create(p)
		}, 2, func(t *testing.T, _, _ []*corev1.Pod) {
			// Adopted and kept, or adopted and deleted as the extra pod
			// (it is the youngest): either way it does not stay an orphan.
			tc.sub(t).waitUntil(10*time.Second, "the orphan adopted or deleted", func() (bool, string) {
				p, _ := tc.get(api.Pod, "default", "stray").(*corev1.Pod)
				return p == nil || metav1.GetControllerOf(p) != nil, fmt.Sprintf("%+v", p)
			})
		}},
		{"relabelled pod is released", func(t *testing.T) {
			pods, _ := tc.rsPods("rs")
			victim = pods[0]
			tc.update(api.Pod, "default", victim.Name, func(o api.Object) { o.GetLabels()["app"] = "rs-debug" })
		}, 2, func(t *testing.T, _, _ []*corev1.Pod) {
			tc.waitUntil(10*time.Second, "the relabelled pod released", func() (bool, string) {
				p, _ := tc.get(api.Pod, "default", victim.Name).(*corev1.Pod)
				return p != nil && len(p.OwnerReferences) == 0 && p.DeletionTimestamp == nil, fmt.Sprintf("%+v", p)
			})
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			tc := tc.sub(t)
			s.do(t)
			tc.waitReplicas("rs", s.want)
			if s.check != nil {
				controlled, other := tc.rsPods("rs")
				s.check(t, controlled, other)
				tc.waitReplicas("rs", s.want)
			}
		})
	}
	tr.finish(tc)
	// 3 to start with (before tracking), then 4 for the scale-up, 1 for
	// the deleted pod and 1 for the released one; the adopted orphan is
	// the 7th pod created: nothing was created twice.
	if n := len(tr.created); n != 7 {
		t.Errorf("%d pods created while tracking, want 7", n)
	}
	if !strayAdopted {
		t.Error("the orphan never had the replica set as its controller")
	}
}

// TestPodsToDeleteOrder checks the scale-down order: pods that cost the
// least availability go first.
func TestPodsToDeleteOrder(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d).Truncate(time.Second)) }
	pod := func(name, node string, phase corev1.PodPhase, readySince *metav1.Time, restarts int32, created metav1.Time) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{RestartCount: restarts}}}}
		if readySince != nil {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: *readySince}}
		}
		return p
	}
	old, young := at(time.Hour), at(time.Minute)
	cases := []struct {
		name string
		pods []*corev1.Pod
		want string // first to go, then the rest
	}{
		{"unscheduled first", []*corev1.Pod{pod("bound", "n1", corev1.PodPending, nil, 0, old), pod("unbound", "", corev1.PodPending, nil, 0, old)}, "[unbound bound]"},
		{"pending before running", []*corev1.Pod{pod("running", "n1", corev1.PodRunning, nil, 0, old), pod("pending", "n1", corev1.PodPending, nil, 0, old)}, "[pending running]"},
		{"not ready before ready", []*corev1.Pod{pod("ready", "n1", corev1.PodRunning, &old, 0, old), pod("unready", "n1", corev1.PodRunning, nil, 0, old)}, "[unready ready]"},
		{"ready for less time first", []*corev1.Pod{pod("long", "n1", corev1.PodRunning, &old, 0, old), pod("short", "n1", corev1.PodRunning, &young, 0, old)}, "[short long]"},
		{"more restarts first", []*corev1.Pod{pod("calm", "n1", corev1.PodRunning, &old, 0, old), pod("crashy", "n1", corev1.PodRunning, &old, 5, old)}, "[crashy calm]"},
		{"younger first", []*corev1.Pod{pod("elder", "n1", corev1.PodRunning, &old, 0, old), pod("junior", "n1", corev1.PodRunning, &old, 0, young)}, "[junior elder]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			podsToDelete(c.pods)
			var got []string
			for _, p := range c.pods {
				got = append(got, p.Name)
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("order %v, want %s", got, c.want)
			}
		})
	}
}
