package worker_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/containerdtest"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/orchd"
	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
	"orch.dev/orch/node/worker"
	"orch.dev/orch/node/worker/execstream"
)

// These tests run a real worker (real containerd, runc and CNI, started
// privately by internal/containerdtest) against an in-process control
// plane with its scheduler and controllers.

var ctrd = &containerdtest.Env{Skip: "-short: not starting containerd"}

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		root, _ := filepath.Abs("../..")
		e, err := containerdtest.Setup(root)
		defer e.Teardown()
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker tests:", err)
			return 1
		}
		ctrd = e
		return m.Run()
	}()
	os.Exit(code)
}

// node is a worker under test and what it needs to be restarted.
type node struct {
	t       *testing.T
	cfg     worker.Config
	w       *worker.Worker
	cancel  context.CancelFunc
	done    chan struct{}
	logs    *inproc.Buffer
	rtCfg   runtime.Config
	cluster *inproc.Cluster
}

// startNode registers node w1 with the runtime's pod CIDR (the FSM keeps a
// CIDR a node names), imports the test images and starts the worker.
func startNode(t *testing.T, c *inproc.Cluster) *node { return startNodeWith(t, c, nil) }

// startNodeWith is startNode with the worker's configuration changed by
// change before it starts.
func startNodeWith(t *testing.T, c *inproc.Cluster, change func(*worker.Config)) *node {
	rtCfg := ctrd.Runtime(t)
	ctx := context.Background()
	rt, err := runtime.New(ctx, rtCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ImportImages(ctx, bytes.NewReader(ctrd.Archive("web"))); err != nil {
		t.Fatal(err)
	}
	rt.Close()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Spec: corev1.NodeSpec{PodCIDR: rtCfg.Network.PodCIDR}}
	api.Node.SetTypeMeta(n)
	if _, err := c.Client().Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { containerdtest.UnmountUnder(dir) })
	serverHost, _, _ := net.SplitHostPort(c.Agents[0].HTTPAddr())
	nd := &node{t: t, rtCfg: rtCfg, cluster: c, logs: &inproc.Buffer{}}
	nd.cfg = worker.Config{Name: "w1", DataDir: dir, Bind: "127.0.0.1", APIPort: freePort(t),
		// The worker finds the API through gossip, from the server's address.
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
	if change != nil {
		change(&nd.cfg)
	}
	nd.start()
	return nd
}

func (n *node) start() {
	n.t.Helper()
	w, err := worker.New(n.cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.w, n.cancel, n.done = w, cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		if err := w.Run(ctx); err != nil {
			n.t.Errorf("worker: %v", err)
		}
	}()
	select {
	case <-w.Started():
	case <-n.done:
		n.t.Fatal("the worker stopped while starting")
	case <-time.After(30 * time.Second):
		n.t.Fatal("the worker did not start")
	}
}

func (n *node) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// webDeployment: the web test server, and a sidecar that fetches the web
// server's page over localhost into an emptyDir both mount.
func webDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	one := int32(1)
	grace := int64(2)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				Volumes:                       []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				Containers: []corev1.Container{
					{Name: "web", Image: imagebuild.TestImageRef("web"),
						Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1},
						VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/data"}}},
					{Name: "sidecar", Image: imagebuild.TestImageRef("web"),
						Command:      []string{"/bin/sh", "-c", "until wget -q -O /shared/page http://127.0.0.1:8080/; do sleep 1; done; exec sleep 3600"},
						VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}},
				}}}}}
	api.Deployment.SetTypeMeta(d)
	return d
}

func webPod(t *testing.T, cl *client.Client) *corev1.Pod {
	list, err := cl.List(ctxT(t), api.Pod, "default", client.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(list.Items) != 1 {
		return nil
	}
	return list.Items[0].(*corev1.Pod)
}

func podReady(p *corev1.Pod) bool {
	if p == nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// exec runs a command in a pod's container through the API server.
func exec(t *testing.T, cl *client.Client, pod, container string, cmd ...string) (int, string, error) {
	q := url.Values{"container": {container}, "command": cmd}
	resp, err := cl.Do(ctxT(t), client.Request{Method: http.MethodPost, Path: "/api/v1/namespaces/default/pods/" + pod + "/exec", Query: q, Stream: true})
	if err != nil {
		return 0, "", err
	}
	defer resp.Stream.Close()
	var out bytes.Buffer
	code, err := execstream.Read(resp.Stream, &out, &out)
	return code, out.String(), err
}

// logs reads a pod container's log through the API server.
func logs(t *testing.T, cl *client.Client, pod string, q url.Values) (string, error) {
	resp, err := cl.Do(ctxT(t), client.Request{Method: http.MethodGet, Path: "/api/v1/namespaces/default/pods/" + pod + "/log", Query: q, Stream: true})
	if err != nil {
		return "", err
	}
	defer resp.Stream.Close()
	b, err := io.ReadAll(resp.Stream)
	return string(b), err
}

// A worker that knows only a gossip address finds the API and registers;
// a Deployment's pod lands on it and reports Running and Ready;
// its two containers share localhost and an emptyDir; logs and exec work
// through the API server; a worker restart adopts the running containers
// (same IDs, no restart); deleting the Deployment stops the pod within
// its grace period and leaves nothing on the node.
func TestWorkerRunsDeployment(t *testing.T) {
	ctrd.Require(t)
	c := inproc.Start(t, inproc.Options{Setup: func(a *agent.Agent) { orchd.RegisterLeaderComponents(a, orchd.LeaderOptions{}) }})
	cl := c.Client()
	n := startNode(t, c)
	waitFor(t, 20*time.Second, "node w1 Ready", func() bool {
		o, err := cl.Get(ctxT(t), api.Node, "", "w1", true)
		if err != nil {
			return false
		}
		node := o.(*corev1.Node)
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue && node.Status.Capacity.Pods().Value() == 110
			}
		}
		return false
	})
	if _, err := cl.Create(ctxT(t), webDeployment()); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	waitFor(t, 30*time.Second, "the web pod Running and Ready", func() bool { pod = webPod(t, cl); return podReady(pod) })
	if pod.Status.HostIP != "127.0.0.1" || pod.Status.StartTime == nil || len(pod.Status.ContainerStatuses) != 2 {
		t.Fatalf("status %+v", pod.Status)
	}
	_, subnet, _ := net.ParseCIDR(n.rtCfg.Network.PodCIDR)
	if !subnet.Contains(net.ParseIP(pod.Status.PodIP)) {
		t.Fatalf("pod IP %s not in the node's pod CIDR %s", pod.Status.PodIP, subnet)
	}
	want := fmt.Sprintf("hello from %s (hostname %s)\n", pod.Name, pod.Name)
	resp, err := http.Get("http://" + net.JoinHostPort(pod.Status.PodIP, "8080") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != want {
		t.Fatalf("the pod answers %q, want %q", body, want)
	}

	t.Run("localhost and emptyDir shared", func(t *testing.T) {
		var out string
		waitFor(t, 20*time.Second, "the sidecar's fetch in the emptyDir", func() bool {
			code, o, err := exec(t, cl, pod.Name, "web", "cat", "/data/page")
			out = o
			return err == nil && code == 0
		})
		if out != want {
			t.Fatalf("the page the sidecar fetched over localhost: %q", out)
		}
	})

	t.Run("exec", func(t *testing.T) {
		code, out, err := exec(t, cl, pod.Name, "web", "cat", "/etc/hostname")
		if err != nil || code != 0 || out != pod.Name+"\n" {
			t.Fatalf("exec cat /etc/hostname: %d %q %v", code, out, err)
		}
		code, out, err = exec(t, cl, pod.Name, "sidecar", "sh", "-c", "echo to-stderr >&2; exit 3")
		if err != nil || code != 3 || out != "to-stderr\n" {
			t.Fatalf("exec exit 3: %d %q %v", code, out, err)
		}
		if _, _, err := exec(t, cl, pod.Name, "nope", "true"); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("exec in a container that does not exist: %v", err)
		}
	})

	t.Run("logs", func(t *testing.T) {
		out, err := logs(t, cl, pod.Name, url.Values{"container": {"web"}})
		if err != nil || !strings.Contains(out, "web listening on :8080") {
			t.Fatalf("log: %q %v", out, err)
		}
		if out, err := logs(t, cl, pod.Name, url.Values{"container": {"web"}, "tailLines": {"1"}}); err != nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("log --tail 1: %q %v", out, err)
		}
		if _, err := logs(t, cl, pod.Name, nil); err == nil || !strings.Contains(err.Error(), "container name must be given") {
			t.Fatalf("log of a two-container pod without -c: %v", err)
		}
		if _, err := logs(t, cl, pod.Name, url.Values{"container": {"web"}, "previous": {"true"}}); err == nil {
			t.Fatal("log --previous of a container that never restarted succeeded")
		}
	})

	t.Run("restart adopts", func(t *testing.T) {
		before := map[string]string{}
		for _, cs := range pod.Status.ContainerStatuses {
			before[cs.Name] = cs.ContainerID
		}
		n.stop()
		n.start()
		<-n.w.Kubelet().Synced()
		waitFor(t, 20*time.Second, "exec in the adopted container", func() bool {
			code, out, err := exec(t, cl, pod.Name, "web", "cat", "/data/page")
			return err == nil && code == 0 && out == want
		})
		pod = webPod(t, cl)
		if !podReady(pod) {
			t.Fatalf("not Ready after the restart: %+v", pod.Status)
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.ContainerID != before[cs.Name] || cs.RestartCount != 0 {
				t.Fatalf("%s: container %s (restarts %d) after the restart, was %s", cs.Name, cs.ContainerID, cs.RestartCount, before[cs.Name])
			}
		}
		rt, err := runtime.New(ctxT(t), n.rtCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		if cs, _ := rt.ListContainers(ctxT(t)); len(cs) != 2 {
			t.Fatalf("%d containers after the restart, want the same 2", len(cs))
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := cl.Delete(ctxT(t), api.Deployment, "default", "web", client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 20*time.Second, "the pod gone", func() bool {
			_, err := cl.Get(ctxT(t), api.Pod, "default", pod.Name, true)
			return err != nil
		})
		// The sidecar ignores SIGTERM (a shell as PID 1): the 2 s grace runs out.
		if d := time.Since(start); d < 2*time.Second {
			t.Fatalf("pod gone %v after the delete, before its 2s grace ran out", d)
		}
		rt, err := runtime.New(ctxT(t), n.rtCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		waitFor(t, 5*time.Second, "nothing left on the node", func() bool {
			cs, _ := rt.ListContainers(ctxT(t))
			sbs, _ := rt.ListSandboxes(ctxT(t))
			_, err := os.Stat(filepath.Join(n.cfg.DataDir, "kubelet", "pods", string(pod.UID)))
			return len(cs) == 0 && len(sbs) == 0 && os.IsNotExist(err)
		})
	})
}
