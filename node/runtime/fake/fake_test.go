package fake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
	"orch.dev/orch/node/runtime/imagebuild"
)

const web = "orch.test/web:v1"

// pod makes a sandbox and creates (not starts) a container of web in it.
func pod(t *testing.T, f *fake.Runtime, name string) (runtime.Sandbox, string) {
	t.Helper()
	ctx := context.Background()
	sb, err := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: name, Namespace: "default", UID: "uid-" + name})
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: name, Image: web, Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	return sb, id
}

func status(t *testing.T, f *fake.Runtime, id string) runtime.ContainerStatus {
	t.Helper()
	st, err := f.ContainerStatus(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestImages(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	if info, err := f.EnsureImage(ctx, web, runtime.PullNever); err != nil || info.Ref != web || info.ID == "" {
		t.Fatalf("present image: %+v %v", info, err)
	}
	if _, err := f.EnsureImage(ctx, "app", runtime.PullNever); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("PullNever, absent: %v", err)
	}
	if _, err := f.EnsureImage(ctx, "app", runtime.PullIfNotPresent); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("not in the registry: %v", err)
	}
	f.AddRegistryImage("app")
	v1, err := f.EnsureImage(ctx, "app", runtime.PullIfNotPresent)
	if err != nil || v1.Ref != "docker.io/library/app:latest" {
		t.Fatalf("pull: %+v %v", v1, err)
	}
	f.AddRegistryImage("app") // a new push under the same tag
	if again, _ := f.EnsureImage(ctx, "app", runtime.PullIfNotPresent); again != v1 {
		t.Fatalf("IfNotPresent pulled again: %+v", again)
	}
	v2, err := f.EnsureImage(ctx, "app", runtime.PullAlways)
	if err != nil || v2.Digest == v1.Digest {
		t.Fatalf("PullAlways: %+v %v", v2, err)
	}
	if n := f.Pulls("app"); n != 2 {
		t.Fatalf("%d pulls", n)
	}
	f.SetPullError("app", errors.New("connection refused"))
	if _, err := f.EnsureImage(ctx, "app", runtime.PullAlways); !errors.Is(err, runtime.ErrImagePull) || errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("pull error: %v", err)
	}
	if imgs, _ := f.ListImages(ctx); len(imgs) != 2 || imgs[0].Ref != "docker.io/library/app:latest" {
		t.Fatalf("ListImages %+v", imgs)
	}
	f.RemoveImage(web)
	sb, _ := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: "p"})
	if _, err := f.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "c", Image: web}); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("create without the image: %v", err)
	}
}

// ImportImages reads the names from the archives imagebuild writes.
func TestImportImages(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{})
	img := imagebuild.Image{Name: "orch.test/a:v1", Layers: [][]imagebuild.File{{{Path: "/hello", Data: []byte("hi")}}}}
	img2 := img
	img2.Name = "b"
	var oci, docker bytes.Buffer
	if err := imagebuild.WriteArchive(&oci, img); err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteDockerArchive(&docker, img2); err != nil {
		t.Fatal(err)
	}
	if names, err := f.ImportImages(ctx, &oci); err != nil || len(names) != 1 || names[0] != "orch.test/a:v1" {
		t.Fatalf("OCI: %v %v", names, err)
	}
	if names, err := f.ImportImages(ctx, &docker); err != nil || len(names) != 1 || names[0] != "docker.io/library/b:latest" {
		t.Fatalf("docker: %v %v", names, err)
	}
	if _, err := f.EnsureImage(ctx, "b", runtime.PullNever); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ImportImages(ctx, strings.NewReader("junk")); err == nil {
		t.Fatal("imported junk")
	}
}

func TestSandboxes(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{PodCIDR: "10.9.0.0/30", Images: []string{web}}) // room for one pod
	sb, id := pod(t, f, "a")
	if sb.IP != "10.9.0.2" || sb.Config.Hostname != "a" {
		t.Fatalf("sandbox %+v", sb)
	}
	if _, err := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: "b"}); err == nil {
		t.Fatal("a second pod fit in a /30")
	}
	if err := f.RemoveSandbox(ctx, sb.ID); !errors.Is(err, runtime.ErrSandboxInUse) {
		t.Fatalf("remove in use: %v", err)
	}
	if err := f.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
	if sb2, err := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: "b"}); err != nil || sb2.IP != "10.9.0.2" {
		t.Fatalf("IP not reused: %+v %v", sb2, err)
	}
}

// A program that exits by itself does so after RunFor (fake time), with
// its code, status and exit event; the zero program runs until stopped.
func TestProgramsExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		f := fake.New(fake.Options{Images: []string{web}})
		ev := f.Events(ctx)
		f.SetProgram("crash", fake.Program{Exit: true, RunFor: 3 * time.Second, ExitCode: 2, Output: "boom\n"})
		f.SetImageProgram(web, fake.Program{Exit: true, ExitCode: 0})
		_, crash := pod(t, f, "crash")
		_, done := pod(t, f, "done")
		start := time.Now()
		for _, id := range []string{crash, done} {
			if err := f.StartContainer(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if e := <-ev; e.Type != runtime.EventExit || e.ContainerID != done || e.ExitCode != 0 {
			t.Fatalf("event %+v", e)
		}
		if st := status(t, f, done); st.State != runtime.StateExited || st.Reason != runtime.ReasonCompleted {
			t.Fatalf("done: %+v", st)
		}
		if st := status(t, f, crash); st.State != runtime.StateRunning || st.PID == 0 || st.Labels["k"] != "v" || st.Labels[runtime.LabelContainer] != "crash" {
			t.Fatalf("crash before its time: %+v", st)
		}
		e := <-ev
		if e.Type != runtime.EventExit || e.ContainerID != crash || e.ExitCode != 2 || time.Since(start) != 3*time.Second {
			t.Fatalf("event %+v after %v", e, time.Since(start))
		}
		st := status(t, f, crash)
		if st.State != runtime.StateExited || st.ExitCode != 2 || st.Reason != runtime.ReasonError || st.FinishedAt.Sub(st.StartedAt) != 3*time.Second {
			t.Fatalf("crash: %+v", st)
		}
		if err := f.StartContainer(ctx, crash); err == nil {
			t.Fatal("started twice")
		}
		var b strings.Builder
		if err := f.Logs(ctx, crash, runtime.LogOptions{}, &b); err != nil || b.String() != "boom\n" {
			t.Fatalf("log %q %v", b.String(), err)
		}
	})
}

// A program function chooses behaviour from the container's config, here
// its environment, as the real test images do.
func TestProgramFunc(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	f.SetProgramFunc(func(pod runtime.SandboxConfig, c runtime.ContainerConfig) fake.Program {
		for _, kv := range c.Env {
			if code, ok := strings.CutPrefix(kv, "EXIT_CODE="); ok {
				n, _ := strconv.Atoi(code)
				return fake.Program{Exit: true, ExitCode: n, Output: pod.Name + "\n"}
			}
		}
		return fake.Program{}
	})
	sb, _ := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: "p"})
	id, _ := f.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "c", Image: web, Env: []string{"EXIT_CODE=4"}})
	if err := f.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := status(t, f, id); st.State != runtime.StateExited || st.ExitCode != 4 {
		t.Fatalf("status %+v", st)
	}
	id2, _ := f.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "d", Image: web})
	f.StartContainer(ctx, id2)
	if st := status(t, f, id2); st.State != runtime.StateRunning {
		t.Fatalf("status %+v", st)
	}
}

func TestCannotRunAndOOM(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	ev := f.Events(t.Context())
	f.SetProgram("bad", fake.Program{CannotRun: `exec: "/nope": stat /nope: no such file or directory`})
	_, bad := pod(t, f, "bad")
	if err := f.StartContainer(ctx, bad); !errors.Is(err, runtime.ErrCannotRun) {
		t.Fatalf("start: %v", err)
	}
	if st := status(t, f, bad); st.State != runtime.StateExited || st.Reason != runtime.ReasonCannotRun || st.ExitCode != runtime.ExitCodeCannotRun || !strings.Contains(st.Message, "/nope") {
		t.Fatalf("status %+v", st)
	}
	_, hog := pod(t, f, "hog")
	if err := f.StartContainer(ctx, hog); err != nil {
		t.Fatal(err)
	}
	if err := f.OOMKill(hog); err != nil {
		t.Fatal(err)
	}
	if e := <-ev; e.Type != runtime.EventOOM || e.ContainerID != hog {
		t.Fatalf("event %+v", e)
	}
	if e := <-ev; e.Type != runtime.EventExit || e.ExitCode != runtime.ExitCodeStopped {
		t.Fatalf("event %+v", e)
	}
	if st := status(t, f, hog); st.Reason != runtime.ReasonOOMKilled || st.ExitCode != 137 {
		t.Fatalf("status %+v", st)
	}
	if err := f.Exit(hog, 1); err == nil {
		t.Fatal("an exited container exited again")
	}
}

// StopContainer takes as long as the program needs after SIGTERM, at most
// the grace period, then kills (137).
func TestStopGrace(t *testing.T) {
	for _, c := range []struct {
		name string
		prog fake.Program
		took time.Duration
		code int
	}{
		{"clean", fake.Program{}, 0, 0},
		{"slow", fake.Program{TermDelay: 2 * time.Second, TermExitCode: 3}, 2 * time.Second, 3},
		{"too-slow", fake.Program{TermDelay: time.Minute}, 10 * time.Second, 137},
		{"deaf", fake.Program{IgnoreSIGTERM: true}, 10 * time.Second, 137},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := fake.New(fake.Options{Images: []string{web}})
				f.SetProgram(c.name, c.prog)
				_, id := pod(t, f, c.name)
				if err := f.StartContainer(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := f.StopContainer(t.Context(), id, 10*time.Second); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took != c.took {
					t.Fatalf("stop took %v, want %v", took, c.took)
				}
				if st := status(t, f, id); st.State != runtime.StateExited || st.ExitCode != c.code {
					t.Fatalf("status %+v", st)
				}
				calls := f.Calls(fake.OpStopContainer)
				if len(calls) != 1 || calls[0].Grace != 10*time.Second || calls[0].Name != c.name {
					t.Fatalf("calls %+v", calls)
				}
			})
		})
	}
}

func TestLogsFollowAndExec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		f := fake.New(fake.Options{Images: []string{web}})
		f.SetProgram("app", fake.Program{Output: "one\ntwo\nthree\n"})
		_, id := pod(t, f, "app")
		if err := f.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			opts runtime.LogOptions
			want string
		}{
			{runtime.LogOptions{TailLines: 2}, "two\nthree\n"},
			{runtime.LogOptions{LimitBytes: 5}, "one\nt"},
			{runtime.LogOptions{TailLines: 1, LimitBytes: 3}, "thr"},
		} {
			var b strings.Builder
			if err := f.Logs(ctx, id, c.opts, &b); err != nil || b.String() != c.want {
				t.Errorf("%+v: %q %v", c.opts, b.String(), err)
			}
		}
		var mu sync.Mutex
		var followed strings.Builder
		done := make(chan error)
		go func() {
			done <- f.Logs(ctx, id, runtime.LogOptions{Follow: true, TailLines: 1}, writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return followed.Write(p)
			}))
		}()
		synctest.Wait()
		f.WriteLog(id, "four\n")
		synctest.Wait()
		mu.Lock()
		if followed.String() != "three\nfour\n" {
			t.Fatalf("followed %q", followed.String())
		}
		mu.Unlock()
		f.SetExec(func(ctx context.Context, c runtime.ContainerStatus, cmd []string, stdout, stderr io.Writer) (int, error) {
			if cmd[0] == "/nope" {
				return 0, fmt.Errorf("exec: %w", runtime.ErrCannotRun)
			}
			fmt.Fprintf(stdout, "%s in %s", strings.Join(cmd, " "), c.Name)
			return 7, nil
		})
		var out bytes.Buffer
		if code, err := f.Exec(ctx, id, []string{"cat", "x"}, &out, nil); code != 7 || err != nil || out.String() != "cat x in app" {
			t.Fatalf("exec: %d %v %q", code, err, out.String())
		}
		if _, err := f.Exec(ctx, id, []string{"/nope"}, nil, nil); !errors.Is(err, runtime.ErrCannotRun) {
			t.Fatalf("exec /nope: %v", err)
		}
		if err := f.Exit(id, 0); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("follow: %v", err)
		}
		if _, err := f.Exec(ctx, id, []string{"true"}, nil, nil); err == nil {
			t.Fatal("exec in an exited container")
		}
	})
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// FailNext fails exactly the next call; calls are recorded with errors.
func TestFailNextAndCalls(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	boom := errors.New("boom")
	f.FailNext(fake.OpCreateSandbox, boom)
	if _, err := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: "a"}); err != boom {
		t.Fatalf("first: %v", err)
	}
	_, id := pod(t, f, "a")
	f.FailNext(fake.OpStartContainer, boom)
	if err := f.StartContainer(ctx, id); err != boom {
		t.Fatalf("start: %v", err)
	}
	if st := status(t, f, id); st.State != runtime.StateCreated {
		t.Fatalf("a failed call changed the state: %+v", st)
	}
	if err := f.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	calls := f.Calls(fake.OpCreateSandbox, fake.OpStartContainer)
	var got []string
	for _, c := range calls {
		got = append(got, fmt.Sprintf("%s %s %v", c.Op, c.Name, c.Err))
	}
	want := []string{"CreateSandbox a boom", "CreateSandbox a <nil>", "StartContainer a boom", "StartContainer a <nil>"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("calls %q", got)
	}
}

// After Close (an agent stopping) the state stays; Reboot loses sandboxes
// and running processes.
func TestRestartAndReboot(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	ev := f.Events(ctx)
	sb, id := pod(t, f, "a")
	if err := f.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, ok := <-ev; ok {
		t.Fatal("events open after Close")
	}
	if cs, _ := f.ListContainers(ctx); len(cs) != 1 || cs[0].ID != id || cs[0].State != runtime.StateRunning {
		t.Fatalf("after Close: %+v", cs)
	}
	f.Reboot()
	if sbs, _ := f.ListSandboxes(ctx); len(sbs) != 0 {
		t.Fatalf("sandboxes survived a reboot: %+v", sbs)
	}
	if st := status(t, f, id); st.State != runtime.StateUnknown || st.Reason != runtime.ReasonTaskLost || st.SandboxID != sb.ID {
		t.Fatalf("after reboot: %+v", st)
	}
}

// The fake is safe for concurrent use (run with -race).
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{Images: []string{web}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			sb, err := f.CreateSandbox(ctx, runtime.SandboxConfig{Name: fmt.Sprint("p", i)})
			if err != nil {
				t.Error(err)
				return
			}
			id, err := f.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "c", Image: web})
			if err != nil {
				t.Error(err)
				return
			}
			f.StartContainer(ctx, id)
			f.ListContainers(ctx)
			f.StopContainer(ctx, id, 0)
			f.RemoveContainer(ctx, id)
			if err := f.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if cs, _ := f.ListContainers(ctx); len(cs) != 0 {
		t.Fatalf("left %d containers", len(cs))
	}
	if sbs, _ := f.ListSandboxes(ctx); len(sbs) != 0 {
		t.Fatalf("left %d sandboxes", len(sbs))
	}
}
