package runtime_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func img(name string) string { return imagebuild.TestImageRef(name) }

// importImages imports the named test images (all without names) into the
// env's namespace and returns the names they were stored under.
func (e *testEnv) importImages(names ...string) []string {
	e.t.Helper()
	if len(names) == 0 {
		names = imagebuild.TestImages
	}
	var stored []string
	for _, n := range names {
		got, err := e.rt.ImportImages(ctxT(e.t), bytes.NewReader(env.archives[n]))
		if err != nil {
			e.t.Fatal(err)
		}
		stored = append(stored, got...)
	}
	return stored
}

func (e *testEnv) sandbox(name string) runtime.Sandbox {
	e.t.Helper()
	sb, err := e.rt.CreateSandbox(ctxT(e.t), runtime.SandboxConfig{Name: name, Namespace: "default", UID: "uid-" + name})
	if err != nil {
		e.t.Fatal(err)
	}
	return sb
}

// create creates a container.
func (e *testEnv) create(sb runtime.Sandbox, cfg runtime.ContainerConfig) string {
	e.t.Helper()
	id, err := e.rt.CreateContainer(ctxT(e.t), sb.ID, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// run creates and starts a container.
func (e *testEnv) run(sb runtime.Sandbox, cfg runtime.ContainerConfig) string {
	e.t.Helper()
	id := e.create(sb, cfg)
	if err := e.rt.StartContainer(ctxT(e.t), id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *testEnv) status(id string) runtime.ContainerStatus {
	e.t.Helper()
	st, err := e.rt.ContainerStatus(ctxT(e.t), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds or the deadline passes. It is for
// conditions nothing signals (a server that starts listening); exits and
// log lines have their own waits.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// events collects the runtime's events from the moment it is called.
type events struct {
	t    testing.TB
	mu   sync.Mutex
	all  []runtime.Event
	more chan struct{} // closed and replaced on every event
}

func (e *testEnv) events() *events {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	ev := &events{t: e.t, more: make(chan struct{})}
	ch := e.rt.Events(ctx)
	go func() {
		for x := range ch {
			ev.mu.Lock()
			ev.all = append(ev.all, x)
			close(ev.more)
			ev.more = make(chan struct{})
			ev.mu.Unlock()
		}
	}()
	return ev
}

// wait returns the first event of type typ for container id, waiting up to
// timeout for it.
func (ev *events) wait(typ runtime.EventType, id string, timeout time.Duration) runtime.Event {
	ev.t.Helper()
	deadline := time.After(timeout)
	for {
		ev.mu.Lock()
		for _, x := range ev.all {
			if x.Type == typ && x.ContainerID == id {
				ev.mu.Unlock()
				return x
			}
		}
		more := ev.more
		ev.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			ev.t.Fatalf("no %s event for %s within %v", typ, id, timeout)
		}
	}
}

// waitExit waits for the container's exit event and returns its status.
func (e *testEnv) waitExit(ev *events, id string, timeout time.Duration) runtime.ContainerStatus {
	e.t.Helper()
	ev.wait(runtime.EventExit, id, timeout)
	st := e.status(id)
	if st.State != runtime.StateExited {
		e.t.Fatalf("after its exit event container %s is %s", id, st.State)
	}
	return st
}

// waitLog follows a container's log until it contains s.
func (e *testEnv) waitLog(id, s string, timeout time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w := &watchWriter{want: s, found: cancel}
	err := e.rt.Logs(ctx, id, runtime.LogOptions{Follow: true}, w)
	if !w.seen() {
		e.t.Fatalf("log of %s has no %q after %v (err %v): %q", id, s, timeout, err, w.String())
	}
}

// watchWriter calls found once what was written contains want.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found func()
	hit   bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.hit && strings.Contains(w.buf.String(), w.want) {
		w.hit = true
		w.found()
	}
	return len(p), nil
}

func (w *watchWriter) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hit
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

var httpClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// get fetches url until it answers 200 within timeout and returns the body.
func get(t testing.TB, url string, timeout time.Duration) string {
	t.Helper()
	var body string
	waitFor(t, timeout, url+" to answer", func() bool {
		resp, err := httpClient.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	return body
}

// logs returns a container's log as opts select.
func (e *testEnv) logs(id string, opts runtime.LogOptions) string {
	e.t.Helper()
	var b strings.Builder
	if err := e.rt.Logs(ctxT(e.t), id, opts, &b); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

// exec runs cmd in the container and returns exit code, stdout and stderr.
func (e *testEnv) exec(id string, cmd ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code, err := e.rt.Exec(ctxT(e.t), id, cmd, &out, &errb)
	if err != nil {
		e.t.Fatalf("exec %q: %v", cmd, err)
	}
	return code, out.String(), errb.String()
}

// stop stops a container and fails the test on error.
func (e *testEnv) stop(id string, grace time.Duration) {
	e.t.Helper()
	if err := e.rt.StopContainer(ctxT(e.t), id, grace); err != nil {
		e.t.Fatal(err)
	}
}
