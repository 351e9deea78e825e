package runtime_test

import (
	"syscall"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// A new Runtime on the same containerd namespace and state directory (an
// agent restart) finds the same sandboxes and containers with the same IDs,
// leaves running containers running (same PID, same start time, the pod
// still answers), records an exit that happened while no runtime watched,
// and controls the adopted containers like its own.
func TestAdoptAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.importImages("web", "crasher")
	sb := e.sandbox("adopt")
	ev := e.events()
	web := e.run(sb, runtime.ContainerConfig{Name: "web", Image: img("web"), Env: []string{"POD_NAME=adopt"},
		Labels: map[string]string{"app": "web"}})
	sleeper := e.run(sb, runtime.ContainerConfig{Name: "sleeper", Attempt: 2, Image: img("web"), Command: []string{"sleep", "3600"}})
	done := e.run(sb, runtime.ContainerConfig{Name: "done", Image: img("crasher"), Env: []string{"EXIT_CODE=5"}})
	e.waitExit(ev, done, 20*time.Second)
	e.waitLog(web, "listening", 10*time.Second)
	before := map[string]runtime.ContainerStatus{}
	for _, id := range []string{web, sleeper, done} {
		before[id] = e.status(id)
	}

	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	// While no runtime watches, the sleeper dies.
	if err := syscall.Kill(int(before[sleeper].PID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.rt = e.connect()
	ev = e.events()

	sbs, err := e.rt.ListSandboxes(ctxT(t))
	if err != nil || len(sbs) != 1 {
		t.Fatalf("sandboxes %+v, %v", sbs, err)
	}
	if got := sbs[0]; got.ID != sb.ID || got.IP != sb.IP || got.NetNS != sb.NetNS || got.Config.Name != "adopt" || got.Config.UID != sb.Config.UID {
		t.Fatalf("sandbox %+v, was %+v", got, sb)
	}
	cs, err := e.rt.ListContainers(ctxT(t))
	if err != nil || len(cs) != 3 {
		t.Fatalf("containers %+v, %v", cs, err)
	}
	for _, c := range cs {
		b, ok := before[c.ID]
		if !ok {
			t.Fatalf("unknown container %+v", c)
		}
		if c.Name != b.Name || c.Attempt != b.Attempt || c.SandboxID != sb.ID || c.PodUID != sb.Config.UID || !c.StartedAt.Equal(b.StartedAt) {
			t.Errorf("container %s: %+v, was %+v", c.ID, c, b)
		}
	}
	if st := e.status(web); st.State != runtime.StateRunning || st.PID != before[web].PID || st.Labels["app"] != "web" {
		t.Fatalf("web after restart: %+v", st)
	}
	if body := get(t, "http://"+sb.IP+":8080/", 5*time.Second); body != "hello from adopt (hostname adopt)\n" {
		t.Fatalf("pod answers %q", body)
	}
	if st := e.status(done); st.State != runtime.StateExited || st.ExitCode != 5 || !st.FinishedAt.Equal(before[done].FinishedAt) {
		t.Fatalf("exited before the restart: %+v", st)
	}
	// The exit nobody watched is found by the new runtime (at once, or
	// from its event if the shim reports it later); nothing signals the
	// test which, so it polls.
	var st runtime.ContainerStatus
	waitFor(t, 10*time.Second, "the sleeper's exit to be recorded", func() bool {
		st = e.status(sleeper)
		return st.State == runtime.StateExited
	})
	if st.ExitCode != runtime.ExitCodeStopped || st.Reason != runtime.ReasonError {
		t.Fatalf("sleeper %+v", st)
	}

	// The new runtime stops the adopted container gracefully and reports it.
	e.stop(web, 10*time.Second)
	if x := ev.wait(runtime.EventExit, web, 10*time.Second); x.ExitCode != 0 {
		t.Fatalf("exit event %+v", x)
	}
	if st := e.status(web); st.State != runtime.StateExited || st.ExitCode != 0 {
		t.Fatalf("web stopped: %+v", st)
	}
}
