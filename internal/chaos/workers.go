package chaos

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Workers are two simulated workers (`orchd simulate`, one node each, on
// hosts w1 and w2) running a Deployment of four replicas. The fault cuts
// w1 off; the checks follow the pods.
type Workers struct {
	c        *Cluster
	cl       *client.Client
	Cut      *Host  // w1, which partition-worker cuts off
	CutNode  string // its node
	Other    string // w2's node
	replicas int
	// Replaced is how long after the cut the Deployment was whole again
	// on the other node.
	Replaced time.Duration
	cutAt    time.Time
}

const workerApp = "chaos-web"

// WorkerTimeout bounds each worker check: the documented defaults replace
// a dead node's pods 9-10 s after its last heartbeat.
const WorkerTimeout = 60 * time.Second

// StartWorkers starts the two simulators and the Deployment, and waits
// until its pods run.
func StartWorkers(c *Cluster) *Workers {
	c.t.Helper()
	w := &Workers{c: c, cl: c.Client(), CutNode: "w1-0", Other: "w2-0", replicas: 4}
	w.Cut = c.AddSimulator("w1", "w1-", 1)
	c.AddSimulator("w2", "w2-", 1)
	ctx := context.Background()
	c.Eventually(time.Minute, "both simulated nodes Ready", func() bool {
		return w.nodeReady(ctx, w.CutNode) && w.nodeReady(ctx, w.Other)
	})
	replicas := int32(w.replicas)
	labels := map[string]string{"app": workerApp}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: workerApp},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "chaos:v1"}}}}}}
	api.Deployment.SetTypeMeta(d)
	if _, err := w.cl.Create(ctx, d); err != nil {
		c.t.Fatal(err)
	}
	c.Eventually(time.Minute, "the Deployment's pods running", func() bool {
		running, _ := w.pods(ctx)
		return len(running) == w.replicas
	})
	return w
}

func (w *Workers) nodeReady(ctx context.Context, name string) bool {
	obj, err := w.cl.Get(ctx, api.Node, "", name, false)
	if err != nil {
		return false
	}
	for _, cond := range obj.(*corev1.Node).Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// pods returns the app's running, ready pods that are not being deleted
// (by node), and how many pods it has in all.
func (w *Workers) pods(ctx context.Context) (running map[string]string, total int) {
	l, err := w.cl.List(ctx, api.Pod, "default", client.ListOptions{LabelSelector: "app=" + workerApp})
	if err != nil {
		return nil, 0
	}
	running = map[string]string{}
	for _, o := range l.Items {
		p := o.(*corev1.Pod)
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p) {
			running[p.Name] = p.Spec.NodeName
		}
	}
	return running, len(l.Items)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// MarkCut records when the worker was cut off.
func (w *Workers) MarkCut() { w.cutAt = time.Now() }

// DuringPartition checks, while w1 is cut off, that its node stops being
// Ready and that the Deployment is whole again on the other node.
func (w *Workers) DuringPartition(fault string) []string {
	ctx := context.Background()
	err := poll(ctx, WorkerTimeout, func() bool {
		if w.nodeReady(ctx, w.CutNode) {
			return false
		}
		running, _ := w.pods(ctx)
		onOther := 0
		for _, node := range running {
			if node == w.Other {
				onOther++
			}
		}
		return onOther == w.replicas
	})
	if err != nil {
		running, total := w.pods(ctx)
		return []string{fmt.Sprintf("%s: %s after the cut, %s is Ready=%t and the running pods are %v (%d in all), not %d on %s",
			fault, WorkerTimeout, w.CutNode, w.nodeReady(ctx, w.CutNode), running, total, w.replicas, w.Other)}
	}
	w.Replaced = time.Since(w.cutAt)
	return nil
}

// Healed checks that once the worker is back its node is Ready again and
// the replaced copies are gone: the Deployment has exactly its replicas.
func (w *Workers) Healed(fault string) []string {
	ctx := context.Background()
	err := poll(ctx, WorkerTimeout, func() bool {
		running, total := w.pods(ctx)
		return w.nodeReady(ctx, w.CutNode) && len(running) == w.replicas && total == w.replicas
	})
	if err != nil {
		running, total := w.pods(ctx)
		return []string{fmt.Sprintf("%s: %s after healing, %s is Ready=%t and the Deployment has %d pods (%d running: %v), not exactly %d",
			fault, WorkerTimeout, w.CutNode, w.nodeReady(ctx, w.CutNode), total, len(running), running, w.replicas)}
	}
	return nil
}
