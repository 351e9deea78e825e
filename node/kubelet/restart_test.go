package kubelet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
)

// Each restart policy restarts exactly the containers it should, and the
// pod ends in the phase Kubernetes gives it.
func TestRestartPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy   corev1.RestartPolicy
		code     string
		restarts bool
		phase    corev1.PodPhase
	}{
		{corev1.RestartPolicyAlways, "0", true, corev1.PodRunning},
		{corev1.RestartPolicyAlways, "1", true, corev1.PodRunning},
		{corev1.RestartPolicyOnFailure, "0", false, corev1.PodSucceeded},
		{corev1.RestartPolicyOnFailure, "1", true, corev1.PodRunning},
		{corev1.RestartPolicyNever, "0", false, corev1.PodSucceeded},
		{corev1.RestartPolicyNever, "1", false, corev1.PodFailed},
	} {
		t.Run(fmt.Sprintf("%s-exit%s", tc.policy, tc.code), func(t *testing.T) {
			run(t, func(t *testing.T, h *harness) {
				p := pod("job", "main")
				p.Spec.RestartPolicy = tc.policy
				p.Spec.Containers[0].Env = env("RUN_FOR", "2s", "EXIT_CODE", tc.code)
				h.cl.create(p)
				h.start()
				time.Sleep(time.Minute)
				settle()
				starts := len(h.rt.Calls("start main"))
				if tc.restarts && starts < 3 || !tc.restarts && starts != 1 {
					t.Fatalf("%d starts in a minute", starts)
				}
				st := h.status("job")
				if st.Phase != tc.phase {
					t.Fatalf("phase %s, want %s", st.Phase, tc.phase)
				}
				cs := h.ctrStatus("job", "main")
				if !tc.restarts {
					if cs.State.Terminated == nil || fmt.Sprint(cs.State.Terminated.ExitCode) != tc.code || cs.RestartCount != 0 {
						t.Fatalf("container status %+v", cs)
					}
					if condition(st, corev1.PodReady) != corev1.ConditionFalse {
						t.Fatalf("a finished pod is Ready")
					}
				} else if cs.RestartCount < 2 || cs.LastTerminationState.Terminated == nil {
					t.Fatalf("container status %+v", cs)
				}
			})
		})
	}
}

// A crashing container restarts at once the first time, then after 10 s,
// 20 s, 40 s... up to 5 minutes, each delay counted from the crash, with
// CrashLoopBackOff and the last exit reported meanwhile; a container that
// ran 10 minutes before failing starts over at once. Delays are
// configurable.
func TestCrashLoopBackoff(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		p := pod("crash", "main")
		p.Spec.Containers[0].Env = env("RUN_FOR", "1s", "EXIT_CODE", "3")
		h.cl.create(p)
		t0 := time.Now()
		h.start()
		// Each attempt runs 1 s: starts at 0, 1 (immediate), then each
		// previous start + 1 s of running + the delay.
		want := []time.Duration{0, 1 * time.Second}
		delay, at := 10*time.Second, time.Second
		for len(want) < 10 {
			at += time.Second + delay
			want = append(want, at)
			delay = min(2*delay, 5*time.Minute)
		}
		h.waitFor(30*time.Minute, "ten starts", func() bool { return len(h.rt.startTimes("main", t0)) >= 10 })
		if got := h.rt.startTimes("main", t0)[:10]; !slices.Equal(got, want) {
			t.Fatalf("starts at\n got %v\nwant %v", got, want)
		}
		// Between two attempts: CrashLoopBackOff, the last exit, the count.
		h.waitFor(time.Minute, "a crash", func() bool { return waitingReason(h.ctrStatus("crash", "main")) == ReasonCrashLoopBackOff })
		cs := h.ctrStatus("crash", "main")
		if cs.RestartCount != 9 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 ||
			cs.LastTerminationState.Terminated.Reason != "Error" || !strings.Contains(cs.State.Waiting.Message, "back-off 5m0s restarting failed container=main pod=crash") {
			t.Fatalf("status during backoff %+v", cs)
		}
		if st := h.status("crash"); st.Phase != corev1.PodRunning || condition(st, corev1.PodReady) != corev1.ConditionFalse {
			t.Fatalf("pod phase %s ready %s", st.Phase, condition(st, corev1.PodReady))
		}
	})

	t.Run("reset after a long run", func(t *testing.T) {
		run(t, func(t *testing.T, h *harness) {
			p := pod("crash", "main")
			p.Spec.Containers[0].Env = env("RUN_FOR", "1s", "EXIT_CODE", "3")
			h.cl.create(p)
			// The fourth attempt runs for 11 minutes before it fails.
			h.rt.override = func(cfg runtime.ContainerConfig) *fake.Program {
				if cfg.Attempt == 3 {
					return &fake.Program{Exit: true, RunFor: 11 * time.Minute, ExitCode: 3}
				}
				return nil
			}
			t0 := time.Now()
			h.start()
			h.waitFor(time.Hour, "six starts", func() bool { return len(h.rt.startTimes("main", t0)) >= 6 })
			got := h.rt.startTimes("main", t0)
			if d := got[4] - got[3]; d != 11*time.Minute {
				t.Fatalf("restart after an 11-minute run came %v after its start, want 11m (at once)", d)
			}
			if d := got[5] - got[4]; d != 11*time.Second {
				t.Fatalf("next restart after %v, want 1s run + 10s", d)
			}
		})
	})

	t.Run("configured", func(t *testing.T) {
		run(t, func(t *testing.T, h *harness) {
			p := pod("crash", "main")
			p.Spec.Containers[0].Env = env("RUN_FOR", "1s", "EXIT_CODE", "3")
			h.cl.create(p)
			t0 := time.Now()
			h.start(func(c *Config) {
				c.CrashLoopBackoff = Backoff{Initial: time.Second, Max: 4 * time.Second, Reset: time.Minute}
			})
			h.waitFor(time.Minute, "six starts", func() bool { return len(h.rt.startTimes("main", t0)) >= 6 })
			want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 6 * time.Second, 11 * time.Second, 16 * time.Second}
			if got := h.rt.startTimes("main", t0)[:6]; !slices.Equal(got, want) {
				t.Fatalf("starts at %v, want %v", got, want)
			}
		})
	})
}

// Init containers run one at a time, in order, before any app container;
// meanwhile the pod is Pending and not Initialized, its app containers
// PodInitializing. A failing init container is retried with backoff
// (restartPolicy Always) or fails the pod (Never).
func TestInitContainers(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		p := pod("init", "app")
		p.Spec.InitContainers = []corev1.Container{
			{Name: "first", Image: img, Env: env("RUN_FOR", "3s")},
			{Name: "second", Image: img, Env: env("RUN_FOR", "2s")},
		}
		h.cl.create(p)
		t0 := time.Now()
		h.start()
		settle()
		st := h.status("init")
		if st.Phase != corev1.PodPending || condition(st, corev1.PodInitialized) != corev1.ConditionFalse ||
			waitingReason(h.ctrStatus("init", "app")) != ReasonPodInitializing || h.ctrStatus("init", "first").State.Running == nil {
			t.Fatalf("while initializing: %+v", st)
		}
		h.waitFor(time.Minute, "pod Ready", func() bool { return h.ready("init") })
		if got := h.rt.Calls("start"); !slices.Equal(got, []string{"start first 0", "start second 0", "start app 0"}) {
			t.Fatalf("start order %v", got)
		}
		if a, b, c := h.rt.startTimes("first", t0), h.rt.startTimes("second", t0), h.rt.startTimes("app", t0); a[0] != 0 || b[0] != 3*time.Second || c[0] != 5*time.Second {
			t.Fatalf("starts at %v %v %v, want 0s 3s 5s", a, b, c)
		}
		if condition(h.status("init"), corev1.PodInitialized) != corev1.ConditionTrue || h.ctrStatus("init", "second").State.Terminated == nil {
			t.Fatalf("after init: %+v", h.status("init"))
		}
	})

	t.Run("failing", func(t *testing.T) {
		run(t, func(t *testing.T, h *harness) {
			always, never := pod("always", "app"), pod("never", "app")
			never.Spec.RestartPolicy = corev1.RestartPolicyNever
			for _, p := range []*corev1.Pod{always, never} {
				p.Spec.InitContainers = []corev1.Container{{Name: "init-" + p.Name, Image: img, Env: env("RUN_FOR", "1s", "EXIT_CODE", "1")}}
				h.cl.create(p)
			}
			h.start()
			time.Sleep(time.Minute)
			settle()
			if n := len(h.rt.Calls("start init-always")); n != 4 { // 0, 1+0, 2+10, 13+20
				t.Fatalf("failing init container (Always) started %d times in a minute, want 4", n)
			}
			if n := len(h.rt.Calls("start init-never")); n != 1 {
				t.Fatalf("failing init container (Never) started %d times", n)
			}
			if n := len(h.rt.Calls("start app")); n != 0 {
				t.Fatalf("an app container started after a failed init container")
			}
			if st := h.status("never"); st.Phase != corev1.PodFailed {
				t.Fatalf("pod with a failed init container and restartPolicy Never: phase %s", st.Phase)
			}
			if st := h.status("always"); st.Phase != corev1.PodPending || waitingReason(h.ctrStatus("always", "init-always")) != ReasonCrashLoopBackOff {
				t.Fatalf("pod retrying its init container: %+v", st)
			}
		})
	})
}
