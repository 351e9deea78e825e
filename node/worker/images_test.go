package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/cli"
	"orch.dev/orch/internal/containerdtest"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/orchd"
	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
	"orch.dev/orch/node/worker"
)

// startNodeWithoutImages starts worker w1 as startNode does, with nothing
// in its containerd namespace.
func startNodeWithoutImages(t *testing.T, c *inproc.Cluster) *node {
	rtCfg := ctrd.Runtime(t)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Spec: corev1.NodeSpec{PodCIDR: rtCfg.Network.PodCIDR}}
	api.Node.SetTypeMeta(n)
	if _, err := c.Client().Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { containerdtest.UnmountUnder(dir) })
	serverHost, _, _ := net.SplitHostPort(c.Agents[0].HTTPAddr())
	nd := &node{t: t, rtCfg: rtCfg, cluster: c, logs: &inproc.Buffer{}}
	nd.cfg = worker.Config{Name: "w1", DataDir: dir, Bind: "127.0.0.1", APIPort: freePort(t),
		Join: []string{serverHost + ":7402"}, Token: c.Token(), GossipPort: freePort(t), Version: "test", HeartbeatInterval: 200 * time.Millisecond,
		NewRuntime: func(ctx context.Context, podCIDR string) (runtime.Runtime, error) {
			rc := rtCfg
			rc.Network.PodCIDR = podCIDR
			return runtime.New(ctx, rc)
		},
		Kubelet: kubelet.Config{Tmpfs: true},
		Logger:  slog.New(slog.NewTextHandler(nd.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() {
		nd.stop()
		if t.Failed() {
			t.Logf("==== worker log\n%s", nd.logs.String())
		}
	})
	nd.start()
	return nd
}

// orchctl runs the CLI in-process against the cluster.
func orchctl(t *testing.T, c *inproc.Cluster, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	ca := filepath.Join(t.TempDir(), "ca.crt")
	noErr(t, os.WriteFile(ca, c.Agents[0].CACertPEM(), 0o644))
	code = cli.Run(ctxT(t), append([]string{"orchctl", "--server", c.Agents[0].URL(), "--ca-file", ca, "--token", c.Token()}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func imageNames(t *testing.T, cfg runtime.Config) []string {
	rt, err := runtime.New(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	imgs, err := rt.ListImages(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range imgs {
		names = append(names, i.Ref)
	}
	return names
}

// Image delivery without a registry, end to end on a real worker and
// containerd: an archive uploaded with `orchctl image import` goes through
// the API server into the worker's containerd, where no image was; a pod
// runs from it (pull policy Never); `orchctl logs` and `orchctl exec`
// reach its containers through the API server, with kubectl's container
// defaulting, separate streams and the command's exit code; and a docker
// archive written into the running worker's images directory is imported.
func TestImageImportLogsAndExec(t *testing.T) {
	ctrd.Require(t)
	c := inproc.Start(t, inproc.Options{Setup: func(a *agent.Agent) { orchd.RegisterLeaderComponents(a, orchd.LeaderOptions{}) }})
	cl := c.Client()
	n := startNodeWithoutImages(t, c)
	waitFor(t, 20*time.Second, "node w1 Ready", func() bool {
		o, err := cl.Get(ctxT(t), api.Node, "", "w1", true)
		if err != nil {
			return false
		}
		for _, cond := range o.(*corev1.Node).Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	web := imagebuild.TestImageRef("web")
	if names := imageNames(t, n.rtCfg); slices.Contains(names, web) {
		t.Fatalf("%s is there before the import: %v", web, names)
	}

	file := filepath.Join(t.TempDir(), "web.tar")
	if err := os.WriteFile(file, ctrd.Archive("web"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := orchctl(t, c, "image", "import", file); code != 0 || out != "node/w1: imported "+web+"\n" || errOut != "" {
		t.Fatalf("image import: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if names := imageNames(t, n.rtCfg); !slices.Contains(names, web) {
		t.Fatalf("%s is not in containerd after the import: %v", web, names)
	}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "web", Image: web, ImagePullPolicy: corev1.PullNever},
			{Name: "sidecar", Image: web, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sh", "-c", "echo sidecar up; exec sleep 3600"}},
		}}}
	api.Pod.SetTypeMeta(pod)
	if _, err := cl.Create(ctxT(t), pod); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the pod Running and Ready", func() bool {
		o, err := cl.Get(ctxT(t), api.Pod, "default", "web", true)
		return err == nil && podReady(o.(*corev1.Pod))
	})

	waitFor(t, 10*time.Second, "the web server's first log line", func() bool {
		_, out, _ := orchctl(t, c, "logs", "web", "-c", "web")
		return strings.Contains(out, "web listening on :8080")
	})
	if code, out, errOut := orchctl(t, c, "logs", "web"); code != 0 || !strings.Contains(out, "web listening on :8080") ||
		errOut != "Defaulted container \"web\" out of: web, sidecar\n" {
		t.Fatalf("logs web: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, out, errOut := orchctl(t, c, "logs", "web", "sidecar", "--tail", "1"); code != 0 || out != "sidecar up\n" || errOut != "" {
		t.Fatalf("logs web sidecar: exit %d\nstdout: %q\nstderr: %s", code, out, errOut)
	}
	if code, out, errOut := orchctl(t, c, "exec", "web", "-c", "web", "--", "cat", "/etc/hostname"); code != 0 || out != "web\n" || errOut != "" {
		t.Fatalf("exec cat /etc/hostname: exit %d\nstdout: %q\nstderr: %s", code, out, errOut)
	}
	code, out, errOut := orchctl(t, c, "exec", "-q", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
	if code != 4 || out != "out\n" || errOut != "err\ncommand terminated with exit code 4\n" {
		t.Fatalf("exec exit 4: exit %d\nstdout: %q\nstderr: %q", code, out, errOut)
	}
	if code, _, errOut := orchctl(t, c, "exec", "web", "-c", "web", "--", "/no/such/program"); code != 1 || !strings.Contains(errOut, "/no/such/program") {
		t.Fatalf("exec of a missing program: exit %d, stderr %q", code, errOut)
	}

	// The images directory of the running worker.
	extra := imagebuild.Image{Name: "orch.test/extra:v1", Uncompressed: true,
		Layers: [][]imagebuild.File{{{Path: "/hello", Data: []byte("hello\n")}}}}
	var buf bytes.Buffer
	if err := imagebuild.WriteDockerArchive(&buf, extra); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, "images", "extra.tar"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the archive of the images directory imported", func() bool {
		return slices.Contains(imageNames(t, n.rtCfg), "orch.test/extra:v1")
	})
}
