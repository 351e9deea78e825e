package fsm

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

func readyNode(name, cpu, mem string, pods int64) *corev1.Node {
	n := node(name)
	n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	return n
}

func podWith(name, cpu string) *corev1.Pod {
	p := pod("ns", name, "img")
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	return p
}

func bindOf(pods ...string) *Bind {
	b := &Bind{Time: epoch.UnixNano()}
	for _, p := range pods {
		name, node, _ := strings.Cut(p, "@")
		b.Bindings = append(b.Bindings, Binding{Namespace: "ns", Name: name, Node: node})
	}
	return b
}

// Apply re-checks every binding against the state it applies to: a batch
// that would overcommit a node has its excess refused, one by one.
func TestBindRechecksEveryBinding(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, readyNode("n1", "1", "1Gi", 3)))
	notReady := node("n2")
	f.mustApply(createCmd(t, notReady))
	tainted := readyNode("n3", "8", "8Gi", 10)
	tainted.Spec.Taints = []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	f.mustApply(createCmd(t, tainted))
	cordoned := readyNode("n4", "8", "8Gi", 10)
	cordoned.Spec.Unschedulable = true
	f.mustApply(createCmd(t, cordoned))
	labelled := readyNode("n5", "8", "8Gi", 10)
	labelled.Labels = map[string]string{"zone": "a"}
	f.mustApply(createCmd(t, labelled))

	for _, p := range []*corev1.Pod{podWith("a", "600m"), podWith("b", "600m"), podWith("c", "100m"), podWith("d", "100m"), podWith("e", "100m"),
		podWith("x1", "100m"), podWith("x2", "100m"), podWith("x3", "100m"), podWith("x4", "100m")} {
		f.mustApply(createCmd(t, p))
	}
	sel := podWith("zoned", "100m")
	sel.Spec.NodeSelector = map[string]string{"zone": "b"}
	f.mustApply(createCmd(t, sel))
	port := podWith("port1", "10m")
	port.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP}}
	f.mustApply(createCmd(t, port))
	port2 := port.DeepCopy()
	port2.Name, port2.UID = "port2", "uid-port2"
	f.mustApply(createCmd(t, port2))

	res := f.mustApplyBatchResults(bindOf("a@n1", "b@n1", "c@n1", "d@n1", "e@n1", "x1@n2", "x2@n3", "x3@n4", "zoned@n5", "port1@n5", "port2@n5", "missing@n1", "a@n5", "x4@nope"))
	want := []string{"", "insufficient cpu", "", "", "insufficient pods", "not ready", "untolerated taint", "unschedulable",
		"node selector", "", "host port TCP/8080", "not found", "already bound", "not found"}
	for i, w := range want {
		err := res.Batch[i].Err
		switch {
		case w == "" && err != nil:
			t.Errorf("binding %d: unexpected error %v", i, err)
		case w != "" && (err == nil || !strings.Contains(err.Error(), w)):
			t.Errorf("binding %d: got %v, want an error containing %q", i, err, w)
		}
	}
	if !errors.Is(res.Batch[1].Err, ErrDoesNotFit) {
		t.Errorf("overcommit refused with %v, want ErrDoesNotFit", res.Batch[1].Err)
	}
	a := f.get(api.Pod, "ns", "a").Obj.(*corev1.Pod)
	if a.Spec.NodeName != "n1" || len(a.Status.Conditions) != 1 || a.Status.Conditions[0].Type != corev1.PodScheduled {
		t.Fatalf("bound pod: node %q conditions %+v", a.Spec.NodeName, a.Status.Conditions)
	}
	if f.get(api.Pod, "ns", "b").Obj.(*corev1.Pod).Spec.NodeName != "" {
		t.Fatal("a refused binding changed the pod")
	}
	// A pod that finished no longer holds its node's resources.
	done := a.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	f.mustApply(statusCmd(t, done))
	if r := f.mustApplyBatchResults(bindOf("b@n1")); r.Batch[0].Err != nil {
		t.Fatalf("after a pod finished, the freed cpu was not available: %v", r.Batch[0].Err)
	}
}

func (f *testFSM) mustApplyBatchResults(cmd Command) *Result {
	f.t.Helper()
	res := f.apply(cmd)
	if res.Err != nil || len(res.Batch) == 0 {
		f.t.Fatalf("apply %T: %v (%d results)", cmd, res.Err, len(res.Batch))
	}
	return res
}

// Deleting a bound, running pod marks it and leaves it to its node; a
// zero-grace delete (the node's confirmation) removes it.
func TestPodDeletionIsGraceful(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, readyNode("n1", "4", "4Gi", 10)))
	f.mustApply(createCmd(t, podWith("p", "1")))
	f.mustApply(createCmd(t, podWith("unbound", "1")))
	f.mustApplyBatchResults(bindOf("p@n1"))

	res := f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "unbound", DeletionTime: epoch.UnixNano()})
	if !res.Deleted {
		t.Fatal("an unbound pod was not removed at once")
	}
	res = f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: epoch.UnixNano()})
	p := res.Record.Obj.(*corev1.Pod)
	if res.Deleted || p.DeletionTimestamp == nil || *p.DeletionGracePeriodSeconds != 30 || !p.DeletionTimestamp.Equal(&metav1.Time{Time: epoch.Add(30e9)}) {
		t.Fatalf("graceful delete: deleted=%v %+v", res.Deleted, p.ObjectMeta)
	}
	// A terminating pod no longer counts as able to be bound again, and a
	// second delete with a longer grace changes nothing.
	again := f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: epoch.UnixNano() + 5e9})
	if again.Record.Version != res.Record.Version {
		t.Fatal("a second graceful delete changed the pod")
	}
	zero := int64(0)
	if res := f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "p", Grace: &zero}); !res.Deleted {
		t.Fatal("a zero-grace delete did not remove the pod")
	}
}

// Eviction keeps replicas - maxUnavailable of a Deployment's pods available.
func TestEvictionRespectsMaxUnavailable(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, readyNode("n1", "8", "8Gi", 20)))
	dep := deployment("ns", "web", 3)
	one := intstr.FromInt32(1)
	dep.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &one}}
	f.mustApply(createCmd(t, dep))
	rs := replicaSet("ns", "web-1", dep)
	rs.OwnerReferences[0].Controller = ptr(true)
	f.mustApply(createCmd(t, rs))
	for _, name := range []string{"web-a", "web-b", "web-c"} {
		p := podWith(name, "100m")
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: rs.UID, Controller: ptr(true)}}
		f.mustApply(createCmd(t, p))
		f.mustApplyBatchResults(bindOf(name + "@n1"))
		ready := f.get(api.Pod, "ns", name).Obj.(*corev1.Pod).DeepCopy()
		ready.Status.Phase = corev1.PodRunning
		ready.Status.Conditions = append(ready.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		f.mustApply(statusCmd(t, ready))
	}
	if res := f.apply(&Evict{Namespace: "ns", Name: "web-a", DeletionTime: epoch.UnixNano()}); res.Err != nil || res.Record.Obj.GetDeletionTimestamp() == nil {
		t.Fatalf("first eviction (3 available, 2 needed): %+v", res)
	}
	res := f.apply(&Evict{Namespace: "ns", Name: "web-b", DeletionTime: epoch.UnixNano()})
	if !errors.Is(res.Err, ErrDisruption) || !strings.Contains(res.Err.Error(), "needs 2 of its 3 replicas available") {
		t.Fatalf("second eviction must be refused: %v", res.Err)
	}
	if f.get(api.Pod, "ns", "web-b").Obj.GetDeletionTimestamp() != nil {
		t.Fatal("a refused eviction marked the pod")
	}
}

func ptr[T any](v T) *T { return &v }
