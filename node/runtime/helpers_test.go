package runtime_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func img(name string) string { return imagebuild.TestImageRef(name) }

// importImages imports every test image into the env's namespace.
func (e *testEnv) importImages() []string {
	e.t.Helper()
	names, err := e.rt.ImportImages(ctxT(e.t), bytes.NewReader(env.archive))
	if err != nil {
		e.t.Fatal(err)
	}
	return names
}

func (e *testEnv) sandbox(name string) runtime.Sandbox {
	e.t.Helper()
	sb, err := e.rt.CreateSandbox(ctxT(e.t), runtime.SandboxConfig{Name: name, Namespace: "default", UID: "uid-" + name})
	if err != nil {
		e.t.Fatal(err)
	}
	return sb
}

// run creates and starts a container.
func (e *testEnv) run(sb runtime.Sandbox, cfg runtime.ContainerConfig) string {
	e.t.Helper()
	ctx := ctxT(e.t)
	id, err := e.rt.CreateContainer(ctx, sb.ID, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.rt.StartContainer(ctx, id); err != nil {
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExited waits until the container has exited and returns its status.
func (e *testEnv) waitExited(id string, timeout time.Duration) runtime.ContainerStatus {
	e.t.Helper()
	var st runtime.ContainerStatus
	waitFor(e.t, timeout, "container "+id+" to exit", func() bool {
		st = e.status(id)
		return st.State == runtime.StateExited
	})
	return st
}

var httpClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches url until it answers 200 within timeout and returns the body.
func get(t *testing.T, url string, timeout time.Duration) string {
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

// logs returns a container's whole log.
func (e *testEnv) logs(id string) string {
	e.t.Helper()
	var b strings.Builder
	if err := e.rt.Logs(ctxT(e.t), id, runtime.LogOptions{}, &b); err != nil {
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
