package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// orchctl runs the orchctl binary against c and returns its combined
// output; it fails the test when orchctl exits non-zero.
func orchctl(t *testing.T, c *testcluster.Cluster, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testcluster.Binaries(t), "orchctl"), args...)
	cmd.Env = append(os.Environ(), "ORCH_ADDR="+strings.Join(c.URLs(), ","), "ORCH_TOKEN="+c.Token(), "ORCH_CA_FILE="+c.CAFile())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("orchctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

const webManifest = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "web:v1", resources: {requests: {cpu: 100m, memory: 64Mi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: "agent:v1"}
`

// readyTracker follows the web pods and remembers the fewest Ready ones
// seen once it is armed.
type readyTracker struct {
	mu       sync.Mutex
	pods     map[string]*corev1.Pod
	armed    bool
	minReady int
}

func trackReady(t *testing.T, ctx context.Context, cl *client.Client) *readyTracker {
	w, err := cl.Watch(ctx, api.Pod, "default", client.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	rt := &readyTracker{pods: map[string]*corev1.Pod{}, minReady: 1 << 30}
	go func() {
		for ev := range w.Events() {
			p := ev.Object.(*corev1.Pod)
			rt.mu.Lock()
			if ev.Type == client.Deleted {
				delete(rt.pods, p.Name)
			} else {
				rt.pods[p.Name] = p
			}
			if rt.armed {
				rt.minReady = min(rt.minReady, rt.readyLocked())
			}
			rt.mu.Unlock()
		}
	}()
	return rt
}

func (rt *readyTracker) readyLocked() int {
	n := 0
	for _, p := range rt.pods {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && podReady(p) {
			n++
		}
	}
	return n
}

func (rt *readyTracker) arm() {
	rt.mu.Lock()
	rt.armed, rt.minReady = true, rt.readyLocked()
	rt.mu.Unlock()
}

func (rt *readyTracker) fewest() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.minReady
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podsOn(t *testing.T, cl *client.Client, node, selector string) []*corev1.Pod {
	l, err := cl.List(context.Background(), api.Pod, "default", client.ListOptions{LabelSelector: selector, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, o := range l.Items {
		if p := o.(*corev1.Pod); p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// The user story on real servers with the real scheduler and
// controllers, and simulated nodes: a Deployment spreads over the nodes, a
// rollout and its undo complete under orchctl rollout status, and a drain
// moves every web pod off its node, never below 5 of 6 Ready
// (maxUnavailable 1), leaving the DaemonSet's pod alone.
func TestRolloutAndDrainOnALiveCluster(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	c.Simulate(3)
	cl := c.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	orchctl(t, c, webManifest, "apply", "-f", "-")
	orchctl(t, c, "", "rollout", "status", "deployment/web", "--timeout", "60s")
	for i := range 3 {
		node := "sim-" + string(rune('0'+i))
		if n := len(podsOn(t, cl, node, "app=web")); n != 2 {
			t.Errorf("%s runs %d web pods, want 2 (6 replicas spread over 3 nodes)", node, n)
		}
	}
	c.Eventually(30*time.Second, "one agent pod per node", func() bool {
		ds, err := cl.Get(ctx, api.DaemonSet, "default", "agent", false)
		return err == nil && ds.(*appsv1.DaemonSet).Status.NumberReady == 3
	})

	orchctl(t, c, "", "set", "image", "deployment/web", "web=web:v2")
	orchctl(t, c, "", "rollout", "status", "deployment/web", "--timeout", "60s")
	orchctl(t, c, "", "rollout", "undo", "deployment/web")
	orchctl(t, c, "", "rollout", "status", "deployment/web", "--timeout", "60s")
	d, err := cl.Get(ctx, api.Deployment, "default", "web", false)
	if err != nil {
		t.Fatal(err)
	}
	if img := d.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Image; img != "web:v1" {
		t.Fatalf("after undo the template's image is %q, want web:v1", img)
	}
	rsl, err := cl.List(ctx, api.ReplicaSet, "default", client.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rsl.Items) != 2 {
		t.Fatalf("%d ReplicaSets after a rollout and its undo, want 2 (the first one reused)", len(rsl.Items))
	}

	rt := trackReady(t, ctx, cl)
	c.Eventually(30*time.Second, "the tracker to see 6 Ready web pods", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return rt.readyLocked() == 6
	})
	rt.arm()
	orchctl(t, c, "", "cordon", "sim-1")
	out := orchctl(t, c, "", "drain", "sim-1", "--timeout", "60s")
	if !strings.Contains(out, "drained") {
		t.Fatalf("drain output:\n%s", out)
	}
	if n := len(podsOn(t, cl, "sim-1", "app=web")); n != 0 {
		t.Fatalf("%d web pods left on the drained node", n)
	}
	if n := len(podsOn(t, cl, "sim-1", "app=agent")); n != 1 {
		t.Fatalf("%d agent pods on the drained node, want its DaemonSet pod left alone", n)
	}
	orchctl(t, c, "", "rollout", "status", "deployment/web", "--timeout", "60s")
	if f := rt.fewest(); f < 5 {
		t.Fatalf("only %d web pods were Ready at one point during the drain; maxUnavailable 1 allows no fewer than 5", f)
	}
	for _, node := range []string{"sim-0", "sim-2"} {
		if n := len(podsOn(t, cl, node, "app=web")); n != 3 {
			t.Errorf("%s runs %d web pods after the drain, want 3", node, n)
		}
	}
}
