package kubelet

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/node/runtime"
)

// A deleted pod's containers get SIGTERM and the deletion's grace period
// (all at once), then SIGKILL; only after that are its containers,
// sandbox and directory removed and the deletion confirmed, so the
// object disappears exactly when the grace ran out.
func TestGracefulTermination(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		p := pod("web", "stubborn", "polite")
		p.Spec.Containers[0].Env = env("IGNORE_TERM", "1")
		created := h.cl.create(p)
		h.start()
		h.waitFor(time.Second, "Ready", func() bool { return h.ready("web") })
		deletedAt := time.Now()
		h.cl.delete("default", "web", ptr[int64](7))
		settle()
		if got := h.rt.Calls("stop"); len(got) != 2 || !slices.Contains(got, "stop stubborn 0 7s") || !slices.Contains(got, "stop polite 0 7s") {
			t.Fatalf("stops %v, want both containers with the 7s grace", got)
		}
		if h.cl.get("default", "web") == nil || len(h.rt.Calls("remove")) != 0 {
			t.Fatal("the pod went away before its grace period ran out")
		}
		h.waitFor(time.Minute, "the pod to be gone", func() bool { return h.cl.get("default", "web") == nil })
		if d := time.Since(deletedAt); d != 7*time.Second {
			t.Fatalf("deletion confirmed after %v, want 7s", d)
		}
		if len(h.rt.Calls("remove")) != 2 || len(h.rt.Calls("rmsandbox")) != 1 {
			t.Fatalf("calls %v", h.rt.Calls(""))
		}
		if _, err := os.Stat(filepath.Join(h.dir, "pods", string(created.UID))); !os.IsNotExist(err) {
			t.Fatalf("pod directory left: %v", err)
		}
		if len(h.k.Pods()) != 0 {
			t.Fatalf("kubelet still has %d pods", len(h.k.Pods()))
		}
	})
}

// After an agent restart the kubelet adopts what runs (same container
// IDs, restart counts kept, nothing created), and a pod deleted while it
// was down is stopped when it comes back.
func TestAdoptionAfterRestart(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		crash := pod("crash", "main")
		crash.Spec.Containers[0].Env = env("RUN_FOR", "1s", "EXIT_CODE", "1")
		web := pod("web", "app", "sidecar")
		web.Spec.Containers[0].ReadinessProbe = execProbe("ready", 10, 3)
		web.Spec.Containers[0].ReadinessProbe.InitialDelaySeconds = 5
		webUID := h.cl.create(web).UID
		h.rt.setExec(func([]string) int {
			time.Sleep(500 * time.Millisecond) // a probe takes a while
			return 0
		})
		h.cl.create(pod("doomed", "app"))
		h.cl.create(crash)
		h.start()
		h.waitFor(time.Minute, "pods up and crash restarted twice", func() bool {
			return h.ready("web") && h.ready("doomed") && h.ctrStatus("crash", "main").RestartCount == 2
		})
		before := h.rt.running()
		creates := len(h.rt.Calls("create"))
		written := len(h.cl.statusWrites(webUID))
		h.stop()
		h.cl.delete("default", "doomed", ptr[int64](0))
		h.start()
		h.waitFor(time.Second, "doomed stopped", func() bool { _, ok := h.rt.running()["doomed/app"]; return !ok })
		after := h.rt.running()
		for _, k := range []string{"web/app", "web/sidecar"} {
			if before[k].ID != after[k].ID {
				t.Fatalf("%s: container %s replaced by %s", k, before[k].ID, after[k].ID)
			}
		}
		if got := h.rt.Calls("create")[creates:]; len(got) != 0 {
			t.Fatalf("created after restart: %v", got)
		}
		h.waitFor(time.Minute, "crash restarted again", func() bool { return h.ctrStatus("crash", "main").RestartCount == 3 })
		if !h.ready("web") {
			t.Fatal("web not Ready after the restart")
		}
		// Readiness of adopted containers does not flap while their probes
		// start again.
		for _, st := range h.cl.statusWrites(webUID)[written:] {
			if condition(st, corev1.PodReady) != corev1.ConditionTrue {
				t.Fatalf("web reported not Ready after the agent restart: %+v", st.Conditions)
			}
		}
	})
}

// Without the API the kubelet keeps its pods running, restarts them after
// its own restart and even after a reboot (from its data directory, with
// the ConfigMaps they use), and when the API returns it catches up: pods
// deleted meanwhile stop, pods bound meanwhile start, statuses are written.
func TestOffline(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		h.cl.cms["default/cfg"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"k": "v1"}}
		web := pod("web", "app")
		web.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}}}
		h.cl.create(web)
		h.cl.create(pod("doomed", "app"))
		h.start()
		h.waitFor(time.Minute, "pods Ready", func() bool { return h.ready("web") && h.ready("doomed") })

		h.cl.setDown(true)
		time.Sleep(time.Minute)
		settle()
		if len(h.rt.running()) != 2 || h.k.Online() {
			t.Fatalf("running %v online %v after a minute without the API", h.rt.running(), h.k.Online())
		}
		h.stop()
		h.rt.Reboot()
		h.start()
		h.waitFor(time.Minute, "pods running again", func() bool { return len(h.rt.running()) == 2 })
		run := h.rt.running()
		if cfg := h.rt.config(run["web/app"].ID); !slices.Equal(cfg.Env, []string{"K=v1"}) {
			t.Fatalf("env after an offline reboot %q", cfg.Env)
		}
		if run["web/app"].Attempt != 1 {
			t.Fatalf("attempt %d after a reboot, want 1 (a restart)", run["web/app"].Attempt)
		}

		// While the node is away: one pod deleted, one bound; the history
		// of changes is gone by the time it is back.
		h.cl.mu.Lock()
		h.cl.down = false
		h.cl.mu.Unlock()
		h.cl.delete("default", "doomed", ptr[int64](0))
		h.cl.create(pod("new", "app"))
		h.cl.compact()
		h.waitFor(time.Minute, "caught up", func() bool {
			r := h.rt.running()
			_, doomed := r["doomed/app"]
			_, added := r["new/app"]
			return !doomed && added && h.ready("new") && h.ready("web") && h.k.Online() && h.ctrStatus("web", "app").RestartCount == 1
		})
	})
}

// A watch that loses its history (410 Gone) lists again: a pod deleted in
// the gap is stopped, not forgotten.
func TestWatchRelistAfterGone(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		h.cl.create(pod("a", "app"))
		h.cl.create(pod("b", "app"))
		h.start()
		h.waitFor(time.Second, "pods Ready", func() bool { return h.ready("a") && h.ready("b") })
		h.cl.setDown(true)
		settle()
		h.cl.mu.Lock()
		h.cl.down = false
		h.cl.mu.Unlock()
		h.cl.delete("default", "b", ptr[int64](0))
		h.cl.compact()
		h.waitFor(time.Minute, "b stopped", func() bool { _, ok := h.rt.running()["b/app"]; return !ok })
		if _, ok := h.rt.running()["a/app"]; !ok {
			t.Fatal("a stopped too")
		}
	})
}

// Bad input gives a clear reason on the pod concerned, and the node's
// other pods run on: a missing image (ErrImagePull, then ImagePullBackOff
// retried at 10 s, 20 s...), a command that does not exist
// (RunContainerError, then CrashLoopBackOff), a missing ConfigMap (for a
// volume or a variable: CreateContainerConfigError naming it), a host port
// another pod holds (the pod fails with HostPortConflict).
func TestBadInput(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		good := pod("good", "app")
		good.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP}}
		h.cl.create(good)
		noImage := pod("noimage", "app")
		noImage.Spec.Containers[0].Image = "orch.test/missing:v1"
		noCmd := pod("nocmd", "app")
		noCmd.Spec.Containers[0].Command = []string{"/nope/not-here"}
		noVol := pod("novol", "app")
		noVol.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}}}}}
		noEnv := pod("noenv", "app")
		noEnv.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nosecret"}, Key: "k"}}}}
		clash := pod("clash", "app")
		clash.Spec.Containers[0].Ports = good.Spec.Containers[0].Ports
		h.start()
		h.waitFor(time.Second, "good Ready", func() bool { return h.ready("good") })
		for _, p := range []*corev1.Pod{noImage, noCmd, noVol, noEnv, clash} {
			h.cl.create(p)
		}
		settle()
		if reasons := writtenReasons(h, "noimage"); len(reasons) < 2 || reasons[0] != ReasonErrImagePull || reasons[1] != ReasonImagePullBackOff {
			t.Errorf("missing image: reasons written %v, want ErrImagePull then ImagePullBackOff", reasons)
		}
		if cs := h.ctrStatus("noimage", "app"); !strings.Contains(cs.State.Waiting.Message, `Back-off pulling image "orch.test/missing:v1"`) ||
			!strings.Contains(cs.State.Waiting.Message, "not found") {
			t.Errorf("missing image: %+v", cs.State)
		}
		if cs := h.ctrStatus("nocmd", "app"); cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.Reason != runtime.ReasonCannotRun ||
			!strings.Contains(cs.LastTerminationState.Terminated.Message, "/nope/not-here") {
			t.Errorf("missing command: %+v", cs)
		}
		h.waitFor(time.Second, "CrashLoopBackOff", func() bool { return waitingReason(h.ctrStatus("nocmd", "app")) == ReasonCrashLoopBackOff })
		for pod, want := range map[string]string{"novol": `configmap "missing" not found`, "noenv": `secret "nosecret" not found`} {
			cs := h.ctrStatus(pod, "app")
			if waitingReason(cs) != ReasonCreateConfigError || !strings.Contains(cs.State.Waiting.Message, want) {
				t.Errorf("%s: %+v, want %s with %q", pod, cs.State, ReasonCreateConfigError, want)
			}
		}
		if st := h.status("clash"); st.Phase != corev1.PodFailed || st.Reason != "HostPortConflict" || !strings.Contains(st.Message, "default/good") {
			t.Errorf("host port clash: phase %s reason %q message %q", st.Phase, st.Reason, st.Message)
		}
		time.Sleep(time.Minute)
		settle()
		if n := len(h.rt.Calls("pull orch.test/missing")); n != 3 { // at 0, 10 and 30 s (the next at 70 s)
			t.Errorf("%d pulls of a missing image in a minute, want 3", n)
		}
		if !h.ready("good") || h.ctrStatus("good", "app").RestartCount != 0 {
			t.Fatal("the good pod suffered")
		}
		if len(h.rt.Calls("create clash")) != 0 || len(h.rt.Calls("create novol")) != 0 {
			t.Fatalf("containers created for pods that cannot run: %v", h.rt.Calls("create"))
		}
		// The ConfigMap appears: the pod starts within the retry period.
		h.cl.mu.Lock()
		h.cl.cms["default/missing"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: "default"}}
		h.cl.mu.Unlock()
		h.waitFor(6*time.Second, "novol Ready", func() bool { return h.ready("novol") })
	})
}

// writtenReasons lists the waiting reasons of a pod's first container in
// the order its statuses were written.
func writtenReasons(h *harness, name string) []string {
	var out []string
	for _, st := range h.cl.statusWrites(h.cl.get("default", name).UID) {
		if len(st.ContainerStatuses) > 0 {
			if r := waitingReason(st.ContainerStatuses[0]); r != "" && (len(out) == 0 || out[len(out)-1] != r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// The store keeps exactly the desired pods, and writes a pod's record only
// when the pod (not its status) changed.
func TestStoreRecordsDesiredPods(t *testing.T) {
	dir := t.TempDir()
	s, err := newStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := pod("web", "app")
	p.UID, p.ResourceVersion = "u1", "5"
	if err := s.savePod(p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pods", "u1", "pod.json")
	st1, _ := os.Stat(path)
	q := p.DeepCopy()
	q.ResourceVersion, q.Status.Phase = "9", corev1.PodRunning
	time.Sleep(10 * time.Millisecond)
	s.savePod(q)
	if st2, _ := os.Stat(path); !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("a status-only change rewrote the record")
	}
	s2, _ := newStore(dir)
	pods, errs := s2.loadPods()
	if len(errs) != 0 || len(pods) != 1 || pods[0].Name != "web" || pods[0].ResourceVersion != "5" {
		t.Fatalf("loaded %v %v", pods, errs)
	}
	os.WriteFile(filepath.Join(dir, "pods", "bad"), nil, 0o600)
	os.MkdirAll(filepath.Join(dir, "pods", "u2"), 0o700)
	os.WriteFile(filepath.Join(dir, "pods", "u2", "pod.json"), []byte("{garbage"), 0o600)
	pods, errs = s2.loadPods()
	if len(pods) != 1 || len(errs) != 1 {
		t.Fatalf("with a damaged record: %d pods, errors %v", len(pods), errs)
	}
	if err := s2.deletePod("u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("pod directory left")
	}
	names := []string{}
	ents, _ := os.ReadDir(filepath.Join(dir, "pods"))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"bad", "u2"}) {
		t.Fatalf("left %v", names)
	}
}
