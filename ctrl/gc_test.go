package ctrl

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// waitGone waits until nothing in namespace is labelled app=name (or
// owned by one of uids), of any kind.
func (tc *testCluster) waitGone(namespace, app string, uids ...types.UID) {
	tc.t.Helper()
	tc.waitUntil(30*time.Second, "everything of "+app+" deleted", func() (bool, string) {
		for _, k := range api.Kinds {
			if !k.Namespaced {
				continue
			}
			for _, o := range tc.list(k, namespace) {
				if o.GetLabels()["app"] == app {
					return false, fmt.Sprintf("%s %s remains", k.Kind, o.GetName())
				}
				for _, ref := range o.GetOwnerReferences() {
					for _, uid := range uids {
						if ref.UID == uid {
							return false, fmt.Sprintf("%s %s of %s remains", k.Kind, o.GetName(), ref.Name)
						}
					}
				}
			}
		}
		return true, ""
	})
}

// TestGarbageCollection: deleting an owner deletes what it owns, down the
// generations, whatever the propagation policy short of Orphan; Orphan
// keeps the dependents and cuts their references; dependents of owners
// that never existed go, dangling references beside live ones are cut;
// and deleting a namespace deletes everything in it for good.
func TestGarbageCollection(t *testing.T) {
	tc := startCluster(t, clusterOptions{servers: 1})
	tc.kubelet.addNode("n1", nil)

	for _, policy := range []string{"", "Background", "Foreground"} {
		name := "cascade-" + map[string]string{"": "default", "Background": "background", "Foreground": "foreground"}[policy]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc := tc.sub(t)
			tc.create(newDeployment(name, 3, "app:1"))
			d := tc.waitRolledOut(name, "app:1")
			uids := []types.UID{d.UID}
			for _, rs := range tc.replicaSetsOf(d) {
				uids = append(uids, rs.UID)
			}
			if err := tc.cl.Delete(tc.ctx, api.Deployment, "default", name, client.DeleteOptions{Propagation: policy}); err != nil {
				t.Fatal(err)
			}
			tc.waitGone("default", name, uids...)
		})
	}

	t.Run("orphan", func(t *testing.T) {
		t.Parallel()
		tc := tc.sub(t)
		tc.create(newReplicaSet("orphaner", 2))
		before := tc.waitReplicas("orphaner", 2)
		if err := tc.cl.Delete(tc.ctx, api.ReplicaSet, "default", "orphaner", client.DeleteOptions{Propagation: "Orphan"}); err != nil {
			t.Fatal(err)
		}
		// The references go in the same Raft entry as the owner, so the
		// garbage collector never sees a dependent of a missing owner.
		for _, p := range before {
			got, _ := tc.get(api.Pod, "default", p.Name).(*corev1.Pod)
			if got == nil || got.UID != p.UID || got.DeletionTimestamp != nil || len(got.OwnerReferences) != 0 {
				t.Fatalf("orphaned pod %s: %+v", p.Name, got)
			}
		}
		// A new owner with the same selector adopts them instead of
		// creating pods.
		tc.create(newReplicaSet("orphaner", 2))
		after := tc.waitReplicas("orphaner", 2)
		for i := range after {
			if after[i].UID != before[0].UID && after[i].UID != before[1].UID {
				t.Errorf("pod %s is new; the orphans should have been adopted", after[i].Name)
			}
		}
	})

	t.Run("dangling owners", func(t *testing.T) {
		t.Parallel()
		tc := tc.sub(t)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: "default"}}
		api.ConfigMap.SetTypeMeta(cm)
		live := tc.create(cm)
		ghost := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "ghost", UID: "0f0f0f0f-dead-4bad-8bad-000000000001"}
		liveRef := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: live.GetUID()}
		mk := func(name string, refs ...metav1.OwnerReference) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labelsOf("dangling"), OwnerReferences: refs},
				Spec: template("dangling", "img:1").Spec}
			api.Pod.SetTypeMeta(p)
			tc.create(p)
		}
		// A cluster-scoped object cannot have a namespaced owner: the
		// reference is unresolvable, not dangling, and never a reason to
		// delete. Made first, it is looked at with the ghost's pods.
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "owned-by-namespaced", OwnerReferences: []metav1.OwnerReference{ghost}}, Value: 5}
		api.PriorityClass.SetTypeMeta(pc)
		tc.create(pc)
		mk("only-ghost", ghost)
		mk("ghost-and-live", ghost, liveRef)
		tc.waitUntil(30*time.Second, "the ghost's pod deleted and the other's reference cut", func() (bool, string) {
			if p := tc.get(api.Pod, "default", "only-ghost"); p != nil {
				return false, "only-ghost remains"
			}
			p, _ := tc.get(api.Pod, "default", "ghost-and-live").(*corev1.Pod)
			if p == nil || p.DeletionTimestamp != nil {
				return false, "ghost-and-live was deleted"
			}
			return len(p.OwnerReferences) == 1 && p.OwnerReferences[0].UID == live.GetUID(), fmt.Sprint(p.OwnerReferences)
		})
		if tc.get(api.PriorityClass, "", pc.Name) == nil {
			t.Error("a cluster-scoped object with a namespaced owner was deleted")
		}
	})

	t.Run("namespace", func(t *testing.T) {
		t.Parallel()
		tc := tc.sub(t)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
		api.Namespace.SetTypeMeta(ns)
		tc.create(ns)
		d := newDeployment("doomed", 2, "app:1")
		d.Namespace = "doomed"
		tc.create(d)
		tc.waitUntil(30*time.Second, "pods in doomed", func() (bool, string) {
			n := 0
			for _, p := range tc.list(api.Pod, "doomed") {
				if podAvailableNow(p.(*corev1.Pod)) {
					n++
				}
			}
			return n == 2, fmt.Sprintf("%d ready pods", n)
		})
		if err := tc.cl.Delete(tc.ctx, api.Namespace, "", "doomed", client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		tc.waitUntil(30*time.Second, "namespace doomed emptied and gone", func() (bool, string) {
			if tc.get(api.Namespace, "", "doomed") != nil {
				return false, "namespace remains"
			}
			for _, k := range api.Kinds {
				if objs := tc.list(k, "doomed"); k.Namespaced && len(objs) > 0 {
					return false, fmt.Sprintf("%d %s remain", len(objs), k.Resource)
				}
			}
			return true, ""
		})
		// Recreated, it is empty: no controller brought anything back.
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
		api.Namespace.SetTypeMeta(ns)
		tc.create(ns)
		for _, k := range []*api.Kind{api.Deployment, api.ReplicaSet, api.Pod} {
			if objs := tc.list(k, "doomed"); len(objs) > 0 {
				t.Errorf("%d %s in the recreated namespace", len(objs), k.Resource)
			}
		}
	})
}
