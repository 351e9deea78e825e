package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/ctrl"
	"orch.dev/orch/internal/containerdtest"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/orchd"
	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/worker"
)

// The offline acceptance against real containerd, runc and CNI:
// worker w1 reaches its only API server through a cutProxy the test cuts
// (the servers are unreachable) and restores.
//
// Heartbeats stop while the proxy is cut. The controllers run with a long
// NodeMonitorGracePeriod, so the node lifecycle controller neither marks
// w1 unreachable nor evicts its pods: what is tested is the worker, not
// eviction (tested in ctrl).
func TestWorkerOffline(t *testing.T) {
	ctrd.Require(t)
	c := inproc.Start(t, inproc.Options{Setup: func(a *agent.Agent) {
		orchd.RegisterLeaderComponents(a, orchd.LeaderOptions{Controllers: ctrl.Options{NodeMonitorGracePeriod: 10 * time.Minute}})
	}})
	cl := c.Client()
	px := newCutProxy(t, c.Agents[0].HTTPAddr())
	n := startProxiedNode(t, c, px)
	for _, app := range []string{"web", "doomed"} {
		noErr(t, errOf(cl.Create(ctxT(t), offlineApp(app))))
	}
	pods := []*onNode{{app: "web"}, {app: "doomed"}}
	web, doomed := pods[0], pods[1]
	var nw *corev1.Pod // the pod of Deployment new, made while w1 is cut off
	rt, err := runtime.New(ctxT(t), n.rtCfg)
	noErr(t, err)
	defer func() { rt.Close() }()
	waitFor(t, 30*time.Second, "web and doomed Running and Ready, at the IPs of their sandboxes", func() bool {
		for _, p := range pods {
			if p.pod = appPod(t, cl, p.app); !podReady(p.pod) || p.find(rt) != nil || p.ip != p.pod.Status.PodIP {
				return false
			}
		}
		return true
	})
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("servers unreachable: the pods keep running", func(t *testing.T) {
		px.cut()
		waitFor(t, 15*time.Second, "the kubelet to see the API unreachable", func() bool { return !n.w.Kubelet().Online() })
		holdsFor(t, 3*time.Second, "the pods running and answering", func() error { return serving(rt, pods...) })
	})

	step("worker restart while cut off adopts the containers", func(t *testing.T) {
		n.stop()
		n.start()
		if n.w.Kubelet().Online() {
			t.Fatal("the restarted kubelet says it reached the API")
		}
		for _, p := range pods {
			if id, err := n.w.Kubelet().Container("default", p.pod.Name, "web", false); err != nil || id != p.ctr.ID {
				t.Fatalf("pod %s: the kubelet runs container %q (%v), want the adopted %s", p.pod.Name, id, err, p.ctr.ID)
			}
		}
		// The first sync of each pod runs at once: a restart, or a removal
		// as an orphan, would show within this window.
		holdsFor(t, 2*time.Second, "the adopted pods running and answering", func() error { return serving(rt, pods...) })
	})

	step("reboot while cut off: the pods come back from the local store", func(t *testing.T) {
		n.stop()
		rt.Close()
		reboot(t, n)
		rt, err = runtime.New(ctxT(t), n.rtCfg)
		noErr(t, err)
		n.start()
		for _, p := range pods {
			old := p.ctr
			waitFor(t, 30*time.Second, "pod "+p.pod.Name+" answering again", func() bool { return p.find(rt) == nil && answers(p.ip, p.pod.Name) == nil })
			if p.ctr.ID == old.ID || p.ctr.Attempt != old.Attempt+1 {
				t.Fatalf("pod %s: container %s attempt %d after the reboot, was %s attempt %d", p.pod.Name, p.ctr.ID, p.ctr.Attempt, old.ID, old.Attempt)
			}
		}
		holdsFor(t, time.Second, "the pods running and answering", func() error { return serving(rt, pods...) })
	})

	step("servers return: the worker reconciles", func(t *testing.T) {
		// While w1 is cut off, doomed's Deployment is deleted (its pod
		// terminates, waiting for w1 to confirm) and a new one is bound to w1.
		noErr(t, cl.Delete(ctxT(t), api.Deployment, "default", "doomed", client.DeleteOptions{}))
		noErr(t, errOf(cl.Create(ctxT(t), offlineApp("new"))))
		waitFor(t, 20*time.Second, "doomed's pod terminating and new's pod bound to w1", func() bool {
			d, np := appPod(t, cl, "doomed"), appPod(t, cl, "new")
			return d != nil && d.DeletionTimestamp != nil && np != nil && np.Spec.NodeName == "w1"
		})
		noErr(t, serving(rt, pods...)) // still running: w1 cannot know yet
		px.restore(t)
		waitFor(t, 30*time.Second, "doomed cleared, new Ready, web's status from after the reboot", func() bool {
			nw = appPod(t, cl, "new")
			p := appPod(t, cl, "web")
			return podReady(nw) && podReady(p) && p.Status.PodIP == web.ip && len(p.Status.ContainerStatuses) == 1 &&
				p.Status.ContainerStatuses[0].ContainerID == "containerd://"+web.ctr.ID && p.Status.ContainerStatuses[0].RestartCount == 1 &&
				cleared(t, cl, rt, n, doomed.pod)
		})
		noErr(t, serving(rt, web))
		noErr(t, answers(nw.Status.PodIP, nw.Name))
		if !n.w.Kubelet().Online() {
			t.Fatal("the kubelet does not say it follows the API")
		}
	})

	step("cut again without a restart: the watch resumes", func(t *testing.T) {
		px.cut()
		waitFor(t, 15*time.Second, "the kubelet to see the API unreachable", func() bool { return !n.w.Kubelet().Online() })
		noErr(t, cl.Delete(ctxT(t), api.Deployment, "default", "new", client.DeleteOptions{}))
		waitFor(t, 20*time.Second, "new's pod terminating", func() bool { p := appPod(t, cl, "new"); return p != nil && p.DeletionTimestamp != nil })
		noErr(t, answers(nw.Status.PodIP, nw.Name))
		px.restore(t)
		waitFor(t, 30*time.Second, "new cleared", func() bool { return cleared(t, cl, rt, n, nw) })
		noErr(t, serving(rt, web))
	})
}

// cleared says pod is gone from the API and nothing of it is left on n.
func cleared(t *testing.T, cl *client.Client, rt runtime.Runtime, n *node, pod *corev1.Pod) bool {
	_, err := cl.Get(ctxT(t), api.Pod, "default", pod.Name, true)
	_, ips, all, rerr := ofPod(rt, pod.UID)
	_, serr := os.Stat(filepath.Join(n.cfg.DataDir, "kubelet", "pods", string(pod.UID)))
	return apierrors.IsNotFound(err) && rerr == nil && len(ips) == 0 && all == 0 && os.IsNotExist(serr)
}

// noErr fails t on err.
func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// errOf is the error of a call that also returns a value.
func errOf(_ any, err error) error { return err }

// offlineApp is webDeployment without its sidecar, named and labelled name.
func offlineApp(name string) *appsv1.Deployment {
	d := webDeployment()
	labels := map[string]string{"app": name}
	d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels = name, labels, labels
	d.Spec.Template.Spec.Containers = d.Spec.Template.Spec.Containers[:1]
	return d
}

// appPod is the one pod labelled app=name, or nil.
func appPod(t *testing.T, cl *client.Client, app string) *corev1.Pod {
	list, err := cl.List(ctxT(t), api.Pod, "default", client.ListOptions{LabelSelector: "app=" + app})
	if err != nil || len(list.Items) != 1 {
		return nil
	}
	return list.Items[0].(*corev1.Pod)
}

// onNode is a pod as the node runs it: its running container and pod IP.
type onNode struct {
	app string
	pod *corev1.Pod
	ctr runtime.ContainerStatus
	ip  string
}

// ofPod lists what the runtime has for a pod: its running containers
// and its sandboxes' IPs, and how many containers it has in all.
func ofPod(rt runtime.Runtime, uid types.UID) (running []runtime.ContainerStatus, ips []string, all int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := rt.ListContainers(ctx)
	sbs, err2 := rt.ListSandboxes(ctx)
	for _, c := range cs {
		if c.PodUID != string(uid) {
			continue
		}
		all++
		// StartedAt is recorded just after the process starts.
		if c.State == runtime.StateRunning && !c.StartedAt.IsZero() {
			running = append(running, c)
		}
	}
	for _, sb := range sbs {
		if sb.Config.UID == string(uid) {
			ips = append(ips, sb.IP)
		}
	}
	return running, ips, all, errors.Join(err, err2)
}

// find reads from the runtime the pod's one running container and its
// one sandbox.
func (p *onNode) find(rt runtime.Runtime) error {
	running, ips, _, err := ofPod(rt, p.pod.UID)
	if err != nil || len(running) != 1 || len(ips) != 1 {
		return fmt.Errorf("pod %s: running containers %+v, sandbox IPs %v, %v", p.pod.Name, running, ips, err)
	}
	p.ctr, p.ip = running[0], ips[0]
	return nil
}

// serving checks that each pod still runs the same process in the same
// container, and nothing else, and answers on its IP.
func serving(rt runtime.Runtime, pods ...*onNode) error {
	for _, p := range pods {
		was := *p
		if err := p.find(rt); err != nil {
			return err
		}
		if p.ctr.ID != was.ctr.ID || p.ctr.PID != was.ctr.PID || !p.ctr.StartedAt.Equal(was.ctr.StartedAt) || p.ip != was.ip {
			return fmt.Errorf("pod %s: container %s pid %d at %s, was %s pid %d at %s", p.pod.Name, p.ctr.ID, p.ctr.PID, p.ip, was.ctr.ID, was.ctr.PID, was.ip)
		}
		if err := answers(p.ip, p.pod.Name); err != nil {
			return err
		}
	}
	return nil
}

// answers checks that the web server of pod answers on ip.
func answers(ip, pod string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + net.JoinHostPort(ip, "8080") + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("hello from %s (hostname %s)\n", pod, pod); err != nil || string(body) != want {
		return fmt.Errorf("pod %s answers %q (%v), want %q", pod, body, err, want)
	}
	return nil
}

// holdsFor checks cond again and again for d; it fails at the first error.
func holdsFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// reboot does to the stopped worker's node what a machine reboot does:
// every container process is gone while containerd keeps its container
// records (its root is on disk), and the network namespaces, the
// runtime's state directory (tmpfs /run in production), the pod bridge
// and tmpfs mounts are gone.
func reboot(t *testing.T, n *node) {
	ctx := ctxT(t)
	cl, err := containerd.New(n.rtCfg.Address, containerd.WithDefaultNamespace(n.rtCfg.Namespace))
	noErr(t, err)
	defer cl.Close()
	ctrs, err := cl.Containers(ctx)
	noErr(t, err)
	for _, c := range ctrs {
		task, err := c.Task(ctx, nil)
		if err == nil {
			_, err = task.Delete(ctx, containerd.WithProcessKill)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	containerdtest.UnmountUnder(n.rtCfg.StateDir)
	noErr(t, os.RemoveAll(n.rtCfg.StateDir))
	if br, err := netlink.LinkByName(n.rtCfg.Network.Bridge); err == nil {
		noErr(t, netlink.LinkDel(br))
	}
	containerdtest.UnmountUnder(n.cfg.DataDir)
}

// startProxiedNode starts worker w1 as startNode does, with the API
// reached only through px (a fixed server list, no gossip).
func startProxiedNode(t *testing.T, c *inproc.Cluster, px *cutProxy) *node {
	rtCfg := ctrd.Runtime(t)
	dir := t.TempDir()
	t.Cleanup(func() { containerdtest.UnmountUnder(dir) })
	// The worker imports the image from its images directory as it starts.
	noErr(t, os.MkdirAll(filepath.Join(dir, "images"), 0o700))
	noErr(t, os.WriteFile(filepath.Join(dir, "images", "web.tar"), ctrd.Archive("web"), 0o600))
	nd := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Spec: corev1.NodeSpec{PodCIDR: rtCfg.Network.PodCIDR}}
	api.Node.SetTypeMeta(nd)
	noErr(t, errOf(c.Client().Create(ctxT(t), nd)))
	n := &node{t: t, rtCfg: rtCfg, cluster: c, logs: &inproc.Buffer{}}
	n.cfg = worker.Config{Name: "w1", DataDir: dir, Bind: "127.0.0.1", APIPort: freePort(t),
		Servers: []string{"https://" + px.addr}, Token: c.Token(), TLS: c.TLS(), Version: "test", HeartbeatInterval: 200 * time.Millisecond,
		RuntimeConfig: rtCfg, Kubelet: kubelet.Config{Tmpfs: true},
		Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("==== worker log\n%s", n.logs.String())
		}
	})
	n.start()
	return n
}

// cutProxy forwards TCP connections to target. cut closes its listener
// (new connections are refused, as by a server that is down) and every
// connection open through it; restore listens again on the same address.
// Only the test's goroutine calls them.
type cutProxy struct {
	target, addr string
	ln           net.Listener  // nil while cut
	down         chan struct{} // closed by cut
	wg           sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{target: target, addr: "127.0.0.1:0"}
	p.restore(t)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	noErr(t, err)
	p.ln, p.addr, p.down = ln, ln.Addr().String(), make(chan struct{})
	down := p.down
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				done, n := make(chan struct{}, 2), 0
				go func() { io.Copy(s, c); done <- struct{}{} }()
				go func() { io.Copy(c, s); done <- struct{}{} }()
				select {
				case <-done:
					n++
				case <-down:
				}
				c.Close()
				s.Close()
				for ; n < 2; n++ {
					<-done
				}
			}()
		}
	}()
}

func (p *cutProxy) cut() {
	if p.ln != nil {
		p.ln.Close()
		close(p.down)
		p.ln = nil
	}
	p.wg.Wait()
}
