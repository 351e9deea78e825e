package kubelet

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The unit tests run in synctest bubbles: the kubelet, the fake runtime
// and the fake API all live in the bubble, so time is virtual. A backoff
// of 5 minutes passes instantly, and timings are exact: the tests assert
// them to the second.

// harness runs a kubelet against a fake runtime and a fake API.
type harness struct {
	t      *testing.T
	rt     *testRuntime
	cl     *fakeCluster
	dir    string
	k      *Kubelet
	cancel context.CancelFunc
	done   chan struct{}
}

const img = "orch.test/app:v1"

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, rt: newTestRuntime(img), cl: newFakeCluster(), dir: t.TempDir()}
	t.Cleanup(h.stop)
	return h
}

// start runs a new kubelet (a new agent process) on the harness's runtime,
// API and data directory.
func (h *harness) start(mods ...func(*Config)) {
	h.t.Helper()
	cfg := Config{NodeName: "n1", NodeIP: "192.0.2.1", DataDir: h.dir, Runtime: h.rt, Cluster: h.cl, Logger: testLogger(h.t)}
	for _, m := range mods {
		m(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.k, h.cancel, h.done = k, cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := k.Run(ctx); err != nil {
			h.t.Errorf("kubelet: %v", err)
		}
	}()
	<-k.Ready()
}

// stop stops the kubelet as an agent shutdown does: its pods keep running.
func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("KUBELET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor lets virtual time pass until cond holds, failing after limit.
func (h *harness) waitFor(limit time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		synctest.Wait()
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %v: still waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle lets the kubelet finish what it is doing at this instant.
func settle() { synctest.Wait() }

// status is the pod's status as the API holds it.
func (h *harness) status(name string) corev1.PodStatus {
	p := h.cl.get("default", name)
	if p == nil {
		h.t.Fatalf("pod %s is gone", name)
	}
	return p.Status
}

func (h *harness) ctrStatus(pod, ctr string) corev1.ContainerStatus {
	st := h.status(pod)
	for _, cs := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		if cs.Name == ctr {
			return cs
		}
	}
	h.t.Fatalf("pod %s has no status for container %s: %+v", pod, ctr, st)
	return corev1.ContainerStatus{}
}

func (h *harness) ready(name string) bool {
	p := h.cl.get("default", name)
	return p != nil && condition(p.Status, corev1.PodReady) == corev1.ConditionTrue
}

func condition(st corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func waitingReason(cs corev1.ContainerStatus) string {
	if cs.State.Waiting != nil {
		return cs.State.Waiting.Reason
	}
	return ""
}

// pod builds a pod with one container per name.
func pod(name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: img})
	}
	return p
}

func env(kv ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// run runs f in a synctest bubble with a fresh harness.
func run(t *testing.T, f func(t *testing.T, h *harness)) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		f(t, h)
		h.stop()
	})
}
