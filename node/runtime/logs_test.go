package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// Logs hold stdout and stderr; TailLines, LimitBytes and Follow select
// what is written; Follow streams what is appended and returns once the
// container has exited.
func TestLogs(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	sb := e.sandbox("logs")
	ev := e.events()
	id := e.run(sb, runtime.ContainerConfig{Name: "talk", Image: img("web"), Command: []string{"/bin/sh", "-c",
		`for i in 1 2 3 4 5; do echo line $i; done
		 while [ ! -e /tmp/go ]; do sleep 0.02; done
		 echo to-stderr >&2; echo last; exit 4`}})
	e.waitLog(id, "line 5\n", 10*time.Second)
	const five = "line 1\nline 2\nline 3\nline 4\nline 5\n"
	for _, c := range []struct {
		opts runtime.LogOptions
		want string
	}{
		{runtime.LogOptions{}, five},
		{runtime.LogOptions{TailLines: 2}, "line 4\nline 5\n"},
		{runtime.LogOptions{TailLines: 99}, five},
		{runtime.LogOptions{LimitBytes: 10}, "line 1\nlin"},
		{runtime.LogOptions{TailLines: 1, LimitBytes: 4}, "line"},
	} {
		if got := e.logs(id, c.opts); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.opts, got, c.want)
		}
	}

	// Follow from the last line: it waits for more, gets what the
	// container writes next, and ends when the container exits.
	ctx := ctxT(t)
	started := make(chan struct{})
	w := &watchWriter{want: "line 5\n", found: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- e.rt.Logs(ctx, id, runtime.LogOptions{Follow: true, TailLines: 1}, w) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Logs returned before the container exited: %v, %q", err, w.String())
	case <-time.After(10 * time.Second):
		t.Fatal("follow wrote nothing")
	}
	if code, _, errOut := e.exec(id, "touch", "/tmp/go"); code != 0 {
		t.Fatal(errOut)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("follow did not end after the container exited; got %q", w.String())
	}
	got := w.String()
	if !strings.HasPrefix(got, "line 5\n") || !strings.Contains(got, "to-stderr\n") || !strings.Contains(got, "last\n") || len(got) != len("line 5\nto-stderr\nlast\n") {
		t.Fatalf("followed %q; whole log now %q", got, e.logs(id, runtime.LogOptions{}))
	}
	if st := e.waitExit(ev, id, 10*time.Second); st.ExitCode != 4 {
		t.Fatalf("status %+v", st)
	}
	// Following an exited container writes what is there and returns.
	if got := e.logs(id, runtime.LogOptions{Follow: true, TailLines: 2}); got != "to-stderr\nlast\n" && got != "last\nto-stderr\n" {
		t.Fatalf("follow after exit: %q", got)
	}
}

// Each attempt of a container has its own log, so the previous attempt's
// log stays readable (logs --previous) after the next one started, and
// removing one attempt leaves the other's log.
func TestLogsPerAttempt(t *testing.T) {
	e := newEnv(t)
	e.importImages("crasher")
	sb := e.sandbox("attempts")
	ev := e.events()
	var ids []string
	for attempt := 0; attempt < 2; attempt++ {
		id := e.run(sb, runtime.ContainerConfig{Name: "crash", Attempt: attempt, Image: img("crasher"),
			Env: []string{"EXIT_CODE=" + string(rune('1'+attempt))}})
		e.waitExit(ev, id, 20*time.Second)
		ids = append(ids, id)
	}
	prev, cur := e.status(ids[0]), e.status(ids[1])
	if prev.Attempt != 0 || cur.Attempt != 1 || prev.LogPath == cur.LogPath || !strings.HasSuffix(cur.LogPath, "/crash/1.log") {
		t.Fatalf("statuses %+v / %+v", prev, cur)
	}
	if got := e.logs(ids[0], runtime.LogOptions{}); got != "crasher: exiting with code 1 after 0s\n" {
		t.Fatalf("previous attempt's log %q", got)
	}
	if got := e.logs(ids[1], runtime.LogOptions{}); got != "crasher: exiting with code 2 after 0s\n" {
		t.Fatalf("current attempt's log %q", got)
	}
	if err := e.rt.RemoveContainer(ctxT(t), ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(prev.LogPath); !os.IsNotExist(err) {
		t.Fatalf("removed attempt's log: %v", err)
	}
	if got := e.logs(ids[1], runtime.LogOptions{}); got != "crasher: exiting with code 2 after 0s\n" {
		t.Fatalf("after removing the previous attempt: %q", got)
	}
	if err := e.rt.Logs(ctxT(t), ids[0], runtime.LogOptions{}, &bytes.Buffer{}); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("logs of a removed container: %v", err)
	}
}

// Exec runs a command in a running container: its exit code and separate
// output streams come back; a missing command is ErrCannotRun; cancelling
// the context kills the command; a stopped container cannot exec.
func TestExec(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	sb := e.sandbox("exec")
	id := e.run(sb, runtime.ContainerConfig{Name: "web", Image: img("web")})
	e.waitLog(id, "listening", 10*time.Second)

	code, out, errOut := e.exec(id, "sh", "-c", "echo out; echo err >&2; exit 7")
	if code != 7 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("exec: %d %q %q", code, out, errOut)
	}
	if code, out, _ := e.exec(id, "cat", "/etc/hostname"); code != 0 || out != "exec\n" {
		t.Fatalf("cat /etc/hostname: %d %q", code, out)
	}
	// One writer for both streams.
	var both bytes.Buffer
	if code, err := e.rt.Exec(ctxT(t), id, []string{"sh", "-c", "echo a; echo b >&2"}, &both, &both); err != nil || code != 0 ||
		!strings.Contains(both.String(), "a\n") || !strings.Contains(both.String(), "b\n") {
		t.Fatalf("shared writer: %d %v %q", code, err, both.String())
	}
	if _, err := e.rt.Exec(ctxT(t), id, []string{"/no/such/tool"}, nil, nil); !errors.Is(err, runtime.ErrCannotRun) {
		t.Fatalf("missing command: %v", err)
	}

	// Cancelled once it runs: returns promptly and the process is gone.
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var cancelled time.Time
	w := &watchWriter{want: "started\n", found: func() { cancelled = time.Now(); cancel() }}
	if _, err := e.rt.Exec(ctx, id, []string{"sh", "-c", "echo started; exec sleep 31"}, w, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exec: %v (output %q)", err, w.String())
	}
	if took := time.Since(cancelled); took > 10*time.Second {
		t.Fatalf("cancelled exec returned after %v", took)
	}
	if _, ps, _ := e.exec(id, "ps"); strings.Contains(ps, "sleep 31") {
		t.Fatalf("the cancelled command still runs:\n%s", ps)
	}

	if _, err := e.rt.Exec(ctxT(t), "no-such-container", []string{"true"}, nil, nil); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("unknown container: %v", err)
	}
	e.stop(id, 10*time.Second)
	if _, err := e.rt.Exec(ctxT(t), id, []string{"true"}, nil, nil); err == nil || errors.Is(err, runtime.ErrCannotRun) {
		t.Fatalf("exec in a stopped container: %v", err)
	}
}
