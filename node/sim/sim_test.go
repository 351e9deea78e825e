package sim

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/inproc"
)

// The simulator registers labelled nodes, heartbeats them to the leader,
// reports a pod bound to one of them Running and Ready, and confirms the
// deletion of a terminating pod.
func TestSimulatedNodesPlayTheKubelet(t *testing.T) {
	c := inproc.Start(t, inproc.Options{})
	cl := c.Client()
	s, err := New(Config{Prefix: "sim-", Nodes: 3, CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi"), Pods: 10,
		GPUs: 1, Labels: map[string]string{"zone": "a"}, Interval: 50 * time.Millisecond}, cl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx); err != nil {
		t.Fatalf("registering again must be harmless: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	l := c.Leader()
	n := l.View().Get(api.Node, "", "sim-2").Obj.(*corev1.Node)
	if n.Labels[SimulatedLabel] != "true" || n.Labels["zone"] != "a" || n.Status.Allocatable.Cpu().String() != "2" ||
		n.Status.Allocatable.Name("nvidia.com/gpu", resource.DecimalSI).Value() != 1 {
		t.Fatalf("registered node: %+v", n)
	}
	c.WaitFor(10*time.Second, "heartbeats from every simulated node", func() bool {
		for _, name := range []string{"sim-0", "sim-1", "sim-2"} {
			if _, ok := l.LastHeartbeat(name); !ok {
				return false
			}
		}
		return true
	})

	// A Ready node to bind to (node lifecycle would set this).
	ready := n.DeepCopy()
	ready.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cl.UpdateStatus(ctx, ready); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
	api.Pod.SetTypeMeta(pod)
	created, err := cl.Create(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Propose(ctx, &fsm.Bind{Time: time.Now().UnixNano(), Bindings: []fsm.Binding{{Namespace: "default", Name: "p", UID: string(created.GetUID()), Node: "sim-2"}}})
	if err != nil || res.Batch[0].Err != nil {
		t.Fatalf("bind: %v %v", err, res)
	}
	c.WaitFor(10*time.Second, "the pod reported Running and Ready", func() bool {
		rec := l.View().Get(api.Pod, "default", "p")
		p := rec.Obj.(*corev1.Pod)
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false
		}
		if p.Status.HostIP != "198.18.0.2" || p.Status.PodIP == p.Status.HostIP {
			t.Fatalf("pod IP %s, host IP %s: want sim-2's address 198.18.0.2 as host IP and a pod IP of its own", p.Status.PodIP, p.Status.HostIP)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if err := cl.Delete(ctx, api.Pod, "default", "p", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "the graceful deletion confirmed by the simulated node", func() bool {
		_, err := cl.Get(ctx, api.Pod, "default", "p", false)
		return apierrors.IsNotFound(err)
	})
	if got := s.Reported(); got != 1 {
		t.Fatalf("reported %d pods, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	s.Deregister(dctx)
	if l.View().Count(api.Node) != 0 {
		t.Fatal("Deregister left nodes behind")
	}
}
