package runtime_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// An image imported from an OCI archive built from testdata/images runs in
// a sandbox: the pod answers on its IP with its name and hostname, stops
// cleanly, and sandbox removal leaves no network namespace behind.
func TestImportAndRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	names := e.importImages()
	if len(names) != 4 || !strings.Contains(strings.Join(names, " "), img("web")) {
		t.Fatalf("imported %v", names)
	}
	info, err := e.rt.EnsureImage(ctx, img("web"), runtime.PullNever)
	if err != nil || info.ID == "" || info.Ref != img("web") {
		t.Fatalf("EnsureImage: %+v, %v", info, err)
	}
	sb := e.sandbox("web-1")
	if !strings.HasPrefix(sb.IP, strings.TrimSuffix(e.subnet, "0/24")) {
		t.Fatalf("pod IP %s not in %s", sb.IP, e.subnet)
	}
	id := e.run(sb, runtime.ContainerConfig{Name: "web", Image: img("web"), Env: []string{"POD_NAME=web-1"}})
	body := get(t, "http://"+sb.IP+":8080/", 10*time.Second)
	if body != "hello from web-1 (hostname web-1)\n" {
		t.Fatalf("got %q", body)
	}
	st := e.status(id)
	if st.State != runtime.StateRunning || st.PID == 0 || st.Name != "web" || st.SandboxID != sb.ID || st.StartedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if err := e.rt.StopContainer(ctx, id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st = e.status(id)
	if st.State != runtime.StateExited || st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted || st.FinishedAt.Before(st.StartedAt) {
		t.Fatalf("after stop: %+v", st)
	}
	if l := e.logs(id, runtime.LogOptions{}); !strings.Contains(l, "web listening on :8080") || !strings.Contains(l, "shutting down") {
		t.Fatalf("log %q", l)
	}
	if err := e.rt.RemoveSandbox(ctx, sb.ID); err == nil {
		t.Fatal("RemoveSandbox with a container left succeeded")
	}
	if err := e.rt.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.LogPath); !os.IsNotExist(err) {
		t.Fatalf("log file left: %v", err)
	}
	if err := e.rt.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.NetNS); !os.IsNotExist(err) {
		t.Fatalf("netns left: %v", err)
	}
	if sbs, _ := e.rt.ListSandboxes(ctx); len(sbs) != 0 {
		t.Fatalf("sandboxes left: %+v", sbs)
	}
}
