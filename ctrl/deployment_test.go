package ctrl

import (
	"fmt"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// lostStatusDeployment is the Deployment whose status writes that record
// the start of a rollout (Progressing=NewReplicaSetCreated) all fail.
const lostStatusDeployment = "stuck-lost-start"

func loseRolloutStart(obj api.Object, status bool) error {
	d, ok := obj.(*appsv1.Deployment)
	if !ok || !status || d.Name != lostStatusDeployment {
		return nil
	}
	if c := condition(d.Status.Conditions, appsv1.DeploymentProgressing); c != nil && c.Reason == reasonNewRSCreated {
		return fmt.Errorf("%w: injected: status write lost", fsm.ErrConflict)
	}
	return nil
}

// neverReadyImage is an image whose pods the fake kubelet runs but never
// reports Ready: a broken release.
const neverReadyImage = "broken:1"

// startDeploymentCluster is one server with two nodes whose pods become
// Ready a little after they start, so that a rollout has to wait for
// readiness at every step.
func startDeploymentCluster(t *testing.T) *testCluster {
	tc := startCluster(t, clusterOptions{servers: 1, wrap: func(a *agent.Agent) Cluster {
		return &faultyCluster{Agent: a, failUpdate: loseRolloutStart}
	}})
	tc.kubelet.setReadiness(100*time.Millisecond, func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == neverReadyImage })
	tc.kubelet.addNode("n1", nil)
	tc.kubelet.addNode("n2", nil)
	return tc
}

func (tc *testCluster) deployment(name string) *appsv1.Deployment {
	d, _ := tc.get(api.Deployment, "default", name).(*appsv1.Deployment)
	return d
}

// waitRolledOut waits until the Deployment's rollout is complete as
// `rollout status` judges it, and its pods are exactly replicas Ready
// pods of image (terminating ones gone).
func (tc *testCluster) waitRolledOut(name, image string) *appsv1.Deployment {
	tc.t.Helper()
	var d *appsv1.Deployment
	tc.waitUntil(30*time.Second, "deployment "+name+" rolled out to "+image, func() (bool, string) {
		d = tc.deployment(name)
		if d == nil {
			return false, "no deployment"
		}
		st, want := d.Status, replicasOf(d.Spec.Replicas)
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
			return false, fmt.Sprintf("status %+v", st)
		}
		pods := tc.appPods(name)
		for _, p := range pods {
			if !podAvailableNow(p) || p.Spec.Containers[0].Image != image {
				return false, fmt.Sprintf("pod %s: image %s ready %v terminating %v", p.Name, p.Spec.Containers[0].Image, podReady(p), p.DeletionTimestamp != nil)
			}
		}
		if int32(len(pods)) != want {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		return true, ""
	})
	return d
}

// appPods are every pod labelled app=name (terminating ones included).
func (tc *testCluster) appPods(name string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, r := range tc.list(api.Pod, "default") {
		if p := r.(*corev1.Pod); p.Labels["app"] == name {
			out = append(out, p)
		}
	}
	return out
}

// replicaSetsOf are the ReplicaSets the Deployment controls, oldest
// revision first.
func (tc *testCluster) replicaSetsOf(d *appsv1.Deployment) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, r := range tc.list(api.ReplicaSet, d.Namespace) {
		if rs := r.(*appsv1.ReplicaSet); controlledBy(rs, d.UID) {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return revision(out[i]) < revision(out[j]) })
	return out
}

func setImage(image string) func(api.Object) {
	return func(o api.Object) { o.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Image = image }
}

func withStrategy(d *appsv1.Deployment, surge, unavailable intstr.IntOrString) *appsv1.Deployment {
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}}
	return d
}

// TestDeployments runs the Deployment scenarios in parallel on one
// cluster; each has its own Deployment and pods (app=<name>).
func TestDeployments(t *testing.T) {
	tc := startDeploymentCluster(t)
	t.Run("RollingUpdate", func(t *testing.T) { testRollingUpdate(t, tc) })
	t.Run("Recreate", func(t *testing.T) { t.Parallel(); testRecreate(tc.sub(t)) })
	t.Run("Rollback", func(t *testing.T) { t.Parallel(); testRollback(tc.sub(t)) })
	t.Run("Restart", func(t *testing.T) { t.Parallel(); testRestart(tc.sub(t)) })
	t.Run("ProgressDeadline", func(t *testing.T) { testProgressDeadline(t, tc) })
	t.Run("RevisionHistoryLimit", func(t *testing.T) { testRevisionHistoryLimit(t, tc) })
}

// testRollingUpdate replaces every pod of a Deployment and checks, in
// every state the log went through, that at most replicas + maxSurge pods
// were active and at least replicas - maxUnavailable available; and that
// each new pod was created once (no duplicate to clean up afterwards).
func testRollingUpdate(t *testing.T, parent *testCluster) {
	cases := []struct {
		name                string
		replicas            int32
		surge, unavailable  intstr.IntOrString
		maxActive, minAvail int // what the fenceposts resolve to
	}{
		{"surge-only", 4, intstr.FromInt32(1), intstr.FromInt32(0), 5, 4},
		{"unavailable-only", 4, intstr.FromInt32(0), intstr.FromInt32(1), 4, 3},
		{"both", 6, intstr.FromInt32(2), intstr.FromInt32(2), 8, 4},
		// 25% of 6: surge rounds up to 2, unavailable down to 1.
		{"percentages", 6, intstr.FromString("25%"), intstr.FromString("25%"), 8, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tc := parent.sub(t)
			name := "ru-" + c.name
			tc.create(withStrategy(newDeployment(name, c.replicas, "app:1"), c.surge, c.unavailable))
			tc.waitRolledOut(name, "app:1")

			var maxActive, minAvail = 0, int(c.replicas)
			tr := tc.track("app="+name, func(_ uint64, pods map[string]*corev1.Pod) error {
				active, avail := countPods(pods, podActive), countPods(pods, podAvailableNow)
				maxActive, minAvail = max(maxActive, active), min(minAvail, avail)
				if active > c.maxActive {
					return fmt.Errorf("%d active pods, maxSurge allows %d", active, c.maxActive)
				}
				if avail < c.minAvail {
					return fmt.Errorf("%d available pods, maxUnavailable allows no fewer than %d", avail, c.minAvail)
				}
				return nil
			})
			tc.update(api.Deployment, "default", name, setImage("app:2"))
			d := tc.waitRolledOut(name, "app:2")
			tr.finish(tc)

			newPods := 0
			for _, p := range tr.created {
				if p.Spec.Containers[0].Image == "app:2" {
					newPods++
				}
			}
			if newPods != int(c.replicas) {
				t.Errorf("%d pods of the new template were created for %d replicas", newPods, c.replicas)
			}
			// The budgets were used, not just respected: the rollout went
			// above replicas when it could surge and below when it could
			// be short. (Reaching the exact bounds depends on the order in
			// which the two ReplicaSets' controllers act.)
			if c.maxActive > int(c.replicas) && maxActive <= int(c.replicas) || c.minAvail < int(c.replicas) && minAvail >= int(c.replicas) {
				t.Errorf("active pods peaked at %d (bound %d), available fell to %d (bound %d)", maxActive, c.maxActive, minAvail, c.minAvail)
			}
			checkCompleteStatus(t, tc, d, 2)
		})
	}
}

// checkCompleteStatus checks what kubectl shows of a finished rollout.
func checkCompleteStatus(t *testing.T, tc *testCluster, d *appsv1.Deployment, rev int64) {
	t.Helper()
	want := replicasOf(d.Spec.Replicas)
	st := d.Status
	if st.ReadyReplicas != want || st.UnavailableReplicas != 0 || st.TerminatingReplicas == nil {
		t.Errorf("status of a complete rollout: %+v", st)
	}
	if c := condition(st.Conditions, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("Available condition: %+v", c)
	}
	// The Progressing condition may lag the counts by one status write.
	tc.waitUntil(10*time.Second, "Progressing=True NewReplicaSetAvailable", func() (bool, string) {
		c := condition(tc.deployment(d.Name).Status.Conditions, appsv1.DeploymentProgressing)
		return c != nil && c.Status == corev1.ConditionTrue && c.Reason == reasonNewRSAvailable, fmt.Sprintf("%+v", c)
	})
	if got := revision(d); got != rev {
		t.Errorf("deployment revision %d, want %d", got, rev)
	}
	rses := tc.replicaSetsOf(d)
	if len(rses) == 0 || revision(rses[len(rses)-1]) != rev || replicasOf(rses[len(rses)-1].Spec.Replicas) != want {
		t.Fatalf("newest replica set: %+v", rses)
	}
	for _, rs := range rses[:len(rses)-1] {
		if replicasOf(rs.Spec.Replicas) != 0 {
			t.Errorf("old replica set %s (revision %d) still has %d replicas", rs.Name, revision(rs), replicasOf(rs.Spec.Replicas))
		}
	}
}

// testRecreate: with the Recreate strategy no pod of the new template
// exists while any pod of the old one does, terminating ones included.
func testRecreate(tc *testCluster) {
	t := tc.t
	d := newDeployment("recreate", 3, "app:1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	tc.create(d)
	tc.waitRolledOut("recreate", "app:1")
	tr := tc.track("app=recreate", func(_ uint64, pods map[string]*corev1.Pod) error {
		images := map[string]int{}
		for _, p := range pods {
			images[p.Spec.Containers[0].Image]++
		}
		if images["app:1"] > 0 && images["app:2"] > 0 {
			return fmt.Errorf("old and new pods side by side: %v", images)
		}
		return nil
	})
	tc.update(api.Deployment, "default", "recreate", setImage("app:2"))
	d = tc.waitRolledOut("recreate", "app:2")
	tr.finish(tc)
	if len(tr.created) != 3 {
		t.Errorf("%d pods created for 3 replicas", len(tr.created))
	}
	checkCompleteStatus(t, tc, d, 2)
}

// rollbackTo does what `orchctl rollout undo` does: the Deployment takes
// the ReplicaSet's template (without its pod-template-hash label) and its
// annotations.
func rollbackTo(rs *appsv1.ReplicaSet) func(api.Object) {
	return func(o api.Object) {
		d := o.(*appsv1.Deployment)
		d.Spec.Template = *rs.Spec.Template.DeepCopy()
		delete(d.Spec.Template.Labels, podTemplateHashLabel)
		for k, v := range rs.Annotations {
			if !annotationsNotCopied[k] {
				d.Annotations[k] = v
			}
		}
	}
}

const changeCause = "kubernetes.io/change-cause"

// testRollback: rolling back makes the old ReplicaSet the new one again,
// under the next revision; no third ReplicaSet appears, and the change
// cause of each revision stays with its ReplicaSet.
func testRollback(tc *testCluster) {
	t := tc.t
	d := newDeployment("undo", 3, "app:1")
	d.Annotations = map[string]string{changeCause: "first release"}
	tc.create(d)
	d = tc.waitRolledOut("undo", "app:1")
	first := tc.replicaSetsOf(d)[0]
	tc.update(api.Deployment, "default", "undo", func(o api.Object) {
		setImage("app:2")(o)
		o.SetAnnotations(map[string]string{changeCause: "upgrade to app:2"})
	})
	d = tc.waitRolledOut("undo", "app:2")
	rses := tc.replicaSetsOf(d)
	if len(rses) != 2 || rses[0].UID != first.UID {
		t.Fatalf("after the upgrade: replica sets %v", rsNames(rses))
	}
	if first.Annotations[changeCause] != "first release" || rses[1].Annotations[changeCause] != "upgrade to app:2" {
		t.Errorf("change causes: revision 1 %q, revision 2 %q", first.Annotations[changeCause], rses[1].Annotations[changeCause])
	}
	// `kubectl annotate` of the change cause after the fact reaches the
	// current revision's ReplicaSet.
	tc.update(api.Deployment, "default", "undo", func(o api.Object) { o.GetAnnotations()[changeCause] = "app:2, annotated" })
	var second *appsv1.ReplicaSet
	tc.waitUntil(10*time.Second, "the change cause on revision 2", func() (bool, string) {
		second = tc.replicaSetsOf(d)[1]
		return second.Annotations[changeCause] == "app:2, annotated", fmt.Sprint(second.Annotations)
	})

	tc.update(api.Deployment, "default", "undo", rollbackTo(first))
	d = tc.waitRolledOut("undo", "app:1")
	checkCompleteStatus(t, tc, d, 3)
	rses = tc.replicaSetsOf(d)
	if len(rses) != 2 || rses[0].UID != second.UID || rses[1].UID != first.UID {
		t.Fatalf("after the rollback: replica sets %v, want %s reused as revision 3", rsNames(rses), first.Name)
	}
	if h := rses[1].Annotations[revisionHistoryAnnotation]; h != "1" {
		t.Errorf("revision history of the reused replica set: %q, want \"1\"", h)
	}
	if d.Annotations[changeCause] != "first release" {
		t.Errorf("change cause after the rollback: %q", d.Annotations[changeCause])
	}
	for _, p := range tc.appPods("undo") {
		if p.Labels[podTemplateHashLabel] != first.Labels[podTemplateHashLabel] || !controlledBy(p, first.UID) {
			t.Errorf("pod %s: hash %s, owners %v; want the first replica set's", p.Name, p.Labels[podTemplateHashLabel], p.OwnerReferences)
		}
	}
}

func rsNames(rses []*appsv1.ReplicaSet) []string {
	var out []string
	for _, rs := range rses {
		out = append(out, fmt.Sprintf("%s(rev %d, %d replicas)", rs.Name, revision(rs), replicasOf(rs.Spec.Replicas)))
	}
	return out
}

// testRestart: `rollout restart` (the restartedAt template annotation)
// replaces every pod through a new revision.
func testRestart(tc *testCluster) {
	t := tc.t
	tc.create(rollingUpdate(newDeployment("restart", 3, "app:1"), 1, 0))
	d := tc.waitRolledOut("restart", "app:1")
	before := map[string]bool{}
	for _, p := range tc.appPods("restart") {
		before[string(p.UID)] = true
	}
	at := time.Now().UTC().Format(time.RFC3339)
	tc.update(api.Deployment, "default", "restart", func(o api.Object) {
		tmpl := &o.(*appsv1.Deployment).Spec.Template
		tmpl.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": at}
	})
	tc.waitUntil(30*time.Second, "every pod replaced", func() (bool, string) {
		for _, p := range tc.appPods("restart") {
			if before[string(p.UID)] {
				return false, "old pod " + p.Name + " remains"
			}
		}
		return true, ""
	})
	d = tc.waitRolledOut("restart", "app:1")
	checkCompleteStatus(t, tc, d, 2)
	for _, p := range tc.appPods("restart") {
		if p.Annotations["kubectl.kubernetes.io/restartedAt"] != at {
			t.Errorf("pod %s lacks the restartedAt annotation: %v", p.Name, p.Annotations)
		}
	}
}

// testProgressDeadline: a rollout whose new pods never become Ready is
// marked failed (Progressing=False, ProgressDeadlineExceeded) once the
// deadline has passed without progress, not before, while the old pods
// stay available; a fixed release makes it progress again. In the second
// case the status write that records the start of the rollout is lost,
// as when the leader changes just after creating the new ReplicaSet.
func testProgressDeadline(t *testing.T, parent *testCluster) {
	for _, name := range []string{"stuck", lostStatusDeployment} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc := parent.sub(t)
			d := rollingUpdate(newDeployment(name, 3, "app:1"), 1, 0)
			d.Spec.ProgressDeadlineSeconds = ptr(int32(3))
			tc.create(d)
			tc.waitRolledOut(name, "app:1")
			broke := time.Now()
			tc.update(api.Deployment, "default", name, setImage(neverReadyImage))
			var failed time.Time
			tc.waitUntil(30*time.Second, "ProgressDeadlineExceeded", func() (bool, string) {
				d = tc.deployment(name)
				c := condition(d.Status.Conditions, appsv1.DeploymentProgressing)
				if c == nil || c.Status != corev1.ConditionFalse || c.Reason != reasonTimedOut {
					return false, fmt.Sprintf("Progressing %+v", c)
				}
				failed = time.Now()
				return true, ""
			})
			// The deadline counts from the last progress, the update at the
			// earliest, in whole seconds (condition times have no fraction).
			if early := broke.Add(2 * time.Second); failed.Before(early) {
				t.Errorf("failed %s after the broken release; the deadline is 3s", failed.Sub(broke))
			}
			if c := condition(d.Status.Conditions, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue || d.Status.AvailableReplicas != 3 {
				t.Errorf("old pods should stay available (maxUnavailable 0): available %d, condition %+v", d.Status.AvailableReplicas, c)
			}
			tc.update(api.Deployment, "default", name, setImage("app:3"))
			d = tc.waitRolledOut(name, "app:3")
			checkCompleteStatus(t, tc, d, 3)
		})
	}
}

// testRevisionHistoryLimit: old ReplicaSets beyond the limit are deleted,
// oldest revision first.
func testRevisionHistoryLimit(t *testing.T, parent *testCluster) {
	for _, limit := range []int32{0, 2} {
		t.Run(fmt.Sprint("limit-", limit), func(t *testing.T) {
			t.Parallel()
			tc := parent.sub(t)
			name := fmt.Sprint("history-", limit)
			d := newDeployment(name, 1, "app:1")
			d.Spec.RevisionHistoryLimit = &limit
			tc.create(d)
			tc.waitRolledOut(name, "app:1")
			for i := 2; i <= 5; i++ {
				tc.update(api.Deployment, "default", name, setImage(fmt.Sprint("app:", i)))
				d = tc.waitRolledOut(name, fmt.Sprint("app:", i))
			}
			var want []int64
			for r := 5 - int64(limit); r <= 5; r++ {
				want = append(want, r)
			}
			tc.waitUntil(10*time.Second, fmt.Sprint("revisions ", want), func() (bool, string) {
				var got []int64
				for _, rs := range tc.replicaSetsOf(d) {
					got = append(got, revision(rs))
				}
				return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint("revisions ", got)
			})
		})
	}
}
