package runtime_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// StopContainer sends SIGTERM, gives the process its grace period, and only
// then SIGKILL: a process that exits on SIGTERM ends with its own code well
// within the grace; one that ignores it is killed (137) after the grace.
func TestStopGrace(t *testing.T) {
	e := newEnv(t)
	e.importImages("sigterm")
	sb := e.sandbox("stop")
	cases := []struct {
		name     string
		args     []string
		grace    time.Duration
		code     int
		reason   string
		log      string
		min, max time.Duration // how long StopContainer took
	}{
		{"exits", []string{"-delay", "300ms", "-code", "3"}, 20 * time.Second, 3, runtime.ReasonError,
			"got SIGTERM, exiting with 3 in 300ms", 300 * time.Millisecond, 10 * time.Second},
		{"clean", nil, 20 * time.Second, 0, runtime.ReasonCompleted,
			"got SIGTERM, exiting with 0", 0, 10 * time.Second},
		{"ignores", []string{"-ignore"}, 1500 * time.Millisecond, runtime.ExitCodeStopped, runtime.ReasonError,
			"got SIGTERM, ignoring it", 1500 * time.Millisecond, 12 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := e.run(sb, runtime.ContainerConfig{Name: c.name, Image: img("sigterm"), Args: c.args})
			e.waitLog(id, "ready", 10*time.Second)
			start := time.Now()
			e.stop(id, c.grace)
			took := time.Since(start)
			st := e.status(id)
			if st.State != runtime.StateExited || st.ExitCode != c.code || st.Reason != c.reason {
				t.Fatalf("status %+v", st)
			}
			if took < c.min || took > c.max {
				t.Fatalf("stop took %v, want %v..%v", took, c.min, c.max)
			}
			if l := e.logs(id, runtime.LogOptions{}); !strings.Contains(l, c.log) {
				t.Fatalf("log %q lacks %q: SIGTERM not delivered first", l, c.log)
			}
			// Stopping again is a no-op.
			if err := e.rt.StopContainer(ctxT(t), id, 0); err != nil {
				t.Fatal(err)
			}
			if st2 := e.status(id); st2.ExitCode != st.ExitCode || !st2.FinishedAt.Equal(st.FinishedAt) {
				t.Fatalf("second stop changed the status: %+v", st2)
			}
		})
	}
}

// Containers that exit by themselves report their exit code, reason and
// times, and an exit event is delivered for each.
func TestExitCodesAndEvents(t *testing.T) {
	e := newEnv(t)
	e.importImages("crasher")
	sb := e.sandbox("crash")
	ev := e.events()
	for _, c := range []struct {
		code   int
		reason string
	}{{3, runtime.ReasonError}, {0, runtime.ReasonCompleted}, {42, runtime.ReasonError}} {
		name := "exit-" + strconv.Itoa(c.code)
		id := e.run(sb, runtime.ContainerConfig{Name: name, Image: img("crasher"), Env: []string{"EXIT_CODE=" + strconv.Itoa(c.code)}})
		x := ev.wait(runtime.EventExit, id, 20*time.Second)
		if x.ExitCode != c.code {
			t.Errorf("event %+v, want code %d", x, c.code)
		}
		st := e.status(id)
		if st.State != runtime.StateExited || st.ExitCode != c.code || st.Reason != c.reason || st.PID != 0 ||
			st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
			t.Errorf("status %+v", st)
		}
		if l := e.logs(id, runtime.LogOptions{}); l != "crasher: exiting with code "+strconv.Itoa(c.code)+" after 0s\n" {
			t.Errorf("log %q", l)
		}
		// An exited container cannot be started again: a restart is a new
		// container.
		if err := e.rt.StartContainer(ctxT(t), id); err == nil {
			t.Error("restarted an exited container")
		}
	}
}

// A command that does not exist fails to start with ErrCannotRun; the
// container's status says ContainerCannotRun with the reason, and it can be
// removed like any other.
func TestCommandNotFound(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	sb := e.sandbox("badcmd")
	for _, c := range []struct {
		name string
		cfg  runtime.ContainerConfig
		msg  string
	}{
		{"missing", runtime.ContainerConfig{Command: []string{"/bin/no-such-program"}}, "/bin/no-such-program"},
		{"not-on-path", runtime.ContainerConfig{Command: []string{"no-such-program"}}, "no-such-program"},
		{"not-executable", runtime.ContainerConfig{Command: []string{"/etc/passwd"}}, "permission denied"},
	} {
		cfg := c.cfg
		cfg.Name, cfg.Image = c.name, img("web")
		id := e.create(sb, cfg)
		err := e.rt.StartContainer(ctxT(t), id)
		if !errors.Is(err, runtime.ErrCannotRun) || !strings.Contains(err.Error(), c.msg) {
			t.Fatalf("%s: start: %v", c.name, err)
		}
		st := e.status(id)
		if st.State != runtime.StateExited || st.Reason != runtime.ReasonCannotRun || st.ExitCode != runtime.ExitCodeCannotRun ||
			!strings.Contains(st.Message, c.msg) || st.FinishedAt.IsZero() {
			t.Fatalf("%s: status %+v", c.name, st)
		}
		if err := e.rt.RemoveContainer(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	// The sandbox is unharmed: a good container starts in it.
	id := e.run(sb, runtime.ContainerConfig{Name: "good", Image: img("web")})
	e.waitLog(id, "listening", 10*time.Second)
}

// A container of an image that is not present cannot be created
// (ErrImageNotFound), and EnsureImage with PullNever says the same.
// Unknown IDs get ErrNotFound, or nothing for removals.
func TestMissingImage(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("noimage")
	_, err := e.rt.CreateContainer(ctxT(t), sb.ID, runtime.ContainerConfig{Name: "x", Image: "orch.test/absent:v1"})
	if !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("create: %v", err)
	}
	if _, err := e.rt.EnsureImage(ctxT(t), "orch.test/absent:v1", runtime.PullNever); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("EnsureImage: %v", err)
	}
	if _, err := e.rt.EnsureImage(ctxT(t), "Not A Reference", runtime.PullNever); !errors.Is(err, runtime.ErrImagePull) {
		t.Fatalf("EnsureImage of a bad reference: %v", err)
	}
	if cs, _ := e.rt.ListContainers(ctxT(t)); len(cs) != 0 {
		t.Fatalf("left containers: %+v", cs)
	}

	// Unknown IDs: status and stop say ErrNotFound, removal is a no-op.
	ctx := ctxT(t)
	if _, err := e.rt.ContainerStatus(ctx, "0123abcd"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("status: %v", err)
	}
	if err := e.rt.StopContainer(ctx, "0123abcd", 0); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("stop: %v", err)
	}
	if _, err := e.rt.CreateContainer(ctx, "0123abcd", runtime.ContainerConfig{Name: "x", Image: "orch.test/absent:v1"}); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("create in an unknown sandbox: %v", err)
	}
	if err := e.rt.RemoveContainer(ctx, "0123abcd"); err != nil {
		t.Fatalf("remove container: %v", err)
	}
	if err := e.rt.RemoveSandbox(ctx, "0123abcd"); err != nil {
		t.Fatalf("remove sandbox: %v", err)
	}
	if err := e.rt.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatalf("removing a sandbox twice: %v", err)
	}
}
