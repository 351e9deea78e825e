package suite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// PodsNamespace holds the pod-start benchmark's pods.
const PodsNamespace = "bench-pods"

// PodsConfig tunes the pod-start suite.
type PodsConfig struct {
	Runs   int
	Single int // pods started one after another per run
	Burst  int // pods created at once per run
	// Archive is the web test image (testdata/images/out/web.tar).
	Archive string
	// ProfileDir, when set, receives the worker's /proc/PID/smaps with
	// the burst's pods running (worker-smaps-runN.txt), to tell which
	// mappings its RSS is in.
	ProfileDir string
}

// PodsResult is one run of the pod-start suite: latency from the start of
// the create request to a watcher seeing the pod Running and Ready, with
// its image present on the worker.
type PodsResult struct {
	Run         int     `json:"run"`
	Mode        string  `json:"mode"` // "one at a time" or "N at once"
	Pods        int     `json:"pods"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	WorkerRSSMB float64 `json:"worker_rss_mib,omitempty"` // with the burst's pods running
	// WorkerAnonMB and WorkerFileMB split WorkerRSSMB: anonymous pages
	// (heap, stacks, the runtime's own) and file-backed ones (the binary).
	WorkerAnonMB float64 `json:"worker_rss_anon_mib,omitempty"`
	WorkerFileMB float64 `json:"worker_rss_file_mib,omitempty"`
	LoadAvg      float64 `json:"loadavg_1m"`
	// CPUMsPerPod is the CPU time of the pod starts, in milliseconds per
	// pod, by process (podCPUClasses), from the first create to the last
	// pod Ready.
	CPUMsPerPod map[string]float64 `json:"cpu_ms_per_pod,omitempty"`
	// Seconds is the time from the first create to the last pod Ready.
	Seconds float64  `json:"seconds"`
	names   []string // the pods created (left running after a burst)
}

// Pods runs the pod-start suite: per run a fresh 3-server cluster, a
// private containerd and one worker process, in a network namespace of
// its own with its proxy, cluster DNS and pod routes, as on a site;
// after orch's burst, the same burst straight through containerd
// (rawBurst), the floor any orchestrator on this machine starts from.
func Pods(env *Env, cfg PodsConfig, progress func(string)) []PodsResult {
	var out []PodsResult
	for run := 1; run <= cfg.Runs; run++ {
		mark := env.Mark()
		pc := startPodsCluster(env, cfg.Archive)
		single := podStarts(env, pc, fmt.Sprintf("one-%d", run), cfg.Single, false)
		single.Run, single.Mode = run, "one at a time"
		out = append(out, single)
		progress(fmt.Sprintf("pods run %d: one at a time: p50 %.0f ms p99 %.0f ms; CPU ms per pod: %s", run, single.P50Ms, single.P99Ms, formatPodCPU(single.CPUMsPerPod)))
		burst := podStarts(env, pc, fmt.Sprintf("burst-%d", run), cfg.Burst, true)
		burst.Run, burst.Mode = run, fmt.Sprintf("%d at once", cfg.Burst)
		burst.WorkerRSSMB, burst.WorkerAnonMB, burst.WorkerFileMB = workerRSS(env, pc.worker.PID(), cfg.ProfileDir, run)
		deletePods(env, pc, burst.names)
		out = append(out, burst)
		progress(fmt.Sprintf("pods run %d: %d at once: p50 %.0f ms p99 %.0f ms in %.1f s, worker RSS %.1f MiB (anonymous %.1f, file %.1f); CPU ms per pod: %s",
			run, cfg.Burst, burst.P50Ms, burst.P99Ms, burst.Seconds, burst.WorkerRSSMB, burst.WorkerAnonMB, burst.WorkerFileMB, formatPodCPU(burst.CPUMsPerPod)))
		raw := rawBurst(env, pc, run, cfg.Burst)
		out = append(out, raw)
		progress(fmt.Sprintf("pods run %d: %s: p50 %.0f ms p99 %.0f ms in %.1f s; CPU ms per pod: %s",
			run, raw.Mode, raw.P50Ms, raw.P99Ms, raw.Seconds, formatPodCPU(raw.CPUMsPerPod)))
		env.PopCleanups(mark)
	}
	return out
}

// workerRSS reads the worker's VmRSS and its anonymous and file-backed
// parts, in MiB, and saves its smaps into dir when dir is set.
func workerRSS(env *Env, pid int, dir string, run int) (rss, anon, file float64) {
	mib := func(field string) float64 {
		kb, err := statusKiB(pid, field)
		if err != nil {
			return 0
		}
		return float64(kb) / 1024
	}
	if dir != "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("worker-smaps-run%d.txt", run)), b, 0o644)
		}
		if err != nil {
			env.Fatal(err)
		}
	}
	return mib("VmRSS:"), mib("RssAnon:"), mib("RssFile:")
}

// podsCluster is what the pods suite runs against.
type podsCluster struct {
	c          *testcluster.Cluster
	cl         *client.Client
	worker     *testcluster.Server
	containerd int    // its PID
	sock       string // its socket
	ipam       string // the worker's host-local IPAM directory: one file per address in use
}

// cpu reads the CPU time of every process a pod start involves.
func (pc *podsCluster) cpu() podCPUSnapshot {
	var servers []int
	for _, s := range pc.c.Servers {
		servers = append(servers, s.PID())
	}
	return takePodCPU(pc.worker.PID(), pc.containerd, servers, pc.sock)
}

func startPodsCluster(env *Env, archive string) *podsCluster {
	if _, err := os.Stat(archive); err != nil {
		env.Fatalf("the web test image %s is missing (make images): %v", archive, err)
	}
	root, err := moduleRootDir()
	if err != nil {
		env.Fatal(err)
	}
	dir := filepath.Join("/run", fmt.Sprintf("orch-bench-%d", os.Getpid()))
	script := filepath.Join(root, "scripts", "containerd.sh")
	if out, err := exec.Command(script, "start", dir).CombinedOutput(); err != nil {
		env.Fatalf("starting containerd: %v\n%s", err, out)
	}
	env.Cleanup(func() {
		exec.Command(script, "stop", dir).Run()
		os.RemoveAll(dir)
	})
	sock := filepath.Join(dir, "containerd.sock")
	b, err := os.ReadFile(filepath.Join(dir, "containerd.pid"))
	if err != nil {
		env.Fatal(err)
	}
	ctrdPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		env.Fatal(err)
	}
	if out, err := exec.Command("ctr", "--address", sock, "-n", "bench", "images", "import", archive).CombinedOutput(); err != nil {
		env.Fatalf("importing %s: %v\n%s", archive, err, out)
	}
	// The worker runs as on a site: a host of its own (network namespace)
	// with its pod bridge, masquerade rule, service proxy (nftables
	// here), cluster DNS and pod routes; its namespace and everything in
	// it go with the run (testcluster.Net).
	net := testcluster.NewNet(env, "10.203.")
	net.AddAddrs(env, 11, 12, 13)
	tok := make([]byte, 16)
	rand.Read(tok)
	c := started(testcluster.Start(env, testcluster.Options{Servers: 3, Prefix: net.Prefix, Token: hex.EncodeToString(tok), LogLevel: "info"}))
	cl := OrchClient(env, c)
	state := filepath.Join(net.Dir, "wb")
	w := c.WorkerIn(net.AddHost(env, "wb", 21), "wb", "--containerd-socket", sock, "--containerd-namespace", "bench",
		"--runtime-state-dir", state)
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := cl.Get(ctx, api.Node, "", "wb", false)
		if err == nil && testcluster.NodeReady(n.(*corev1.Node)) {
			break
		}
		if time.Now().After(deadline) {
			env.Fatalf("worker wb not Ready after a minute (log %s)", w.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := CreateNamespace(ctx, cl, PodsNamespace); err != nil {
		env.Fatal(err)
	}
	return &podsCluster{c: c, cl: cl, worker: w, containerd: ctrdPID, sock: sock, ipam: filepath.Join(state, "cni", "ipam", "orch")}
}

func moduleRootDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module orch.dev/orch\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the orch repository")
		}
		dir = parent
	}
}

func benchWebPod(name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: PodsNamespace, Name: name, Labels: map[string]string{"bench": "pods"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "orch.test/web:v1", ImagePullPolicy: corev1.PullNever}},
			TerminationGracePeriodSeconds: new(int64)}}
	api.Pod.SetTypeMeta(p)
	return p
}

func podIsReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podStarts creates n pods (one after another, or all at once) and
// measures each from its create request to a watcher seeing it Ready, and
// the CPU time all of them took. The burst's pods stay (the worker's RSS is
// read with them); the one-at-a-time pods go, and are gone from the API and
// containerd before it returns, so that the burst starts on an idle node.
func podStarts(env *Env, pc *podsCluster, prefix string, n int, burst bool) PodsResult {
	cl := pc.cl
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := cl.Watch(ctx, api.Pod, PodsNamespace, client.ListOptions{})
	if err != nil {
		env.Fatal(err)
	}
	var mu sync.Mutex
	ready := map[string]time.Time{}
	wake := make(chan struct{}, 1)
	go func() {
		for ev := range w.Events() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == client.Deleted || !strings.HasPrefix(p.Name, prefix) || !podIsReady(p) {
				continue
			}
			mu.Lock()
			if _, seen := ready[p.Name]; !seen {
				ready[p.Name] = time.Now()
			}
			mu.Unlock()
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	started := make(map[string]time.Time, n)
	waitReady := func(count int) {
		deadline := time.After(2 * time.Minute)
		for {
			mu.Lock()
			have := len(ready)
			mu.Unlock()
			if have >= count {
				return
			}
			select {
			case <-wake:
			case <-deadline:
				env.Fatalf("%d of %d pods Ready after 2 minutes", have, count)
			}
		}
	}
	var wg sync.WaitGroup
	cpu0, t0 := pc.cpu(), time.Now()
	for i := range n {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		started[name] = time.Now()
		create := func() {
			if _, err := cl.Create(ctx, benchWebPod(name)); err != nil {
				env.Fatal(err)
			}
		}
		if burst {
			wg.Add(1)
			go func() { defer wg.Done(); create() }()
			continue
		}
		create()
		waitReady(i + 1)
	}
	wg.Wait()
	waitReady(n)
	cpu1, elapsed := pc.cpu(), time.Since(t0)
	perPod := podCPUDelta(cpu0, cpu1)
	for k, v := range perPod {
		perPod[k] = v * 1000 / float64(n)
	}
	var lat Latencies
	mu.Lock()
	for name, t0 := range started {
		lat = append(lat, ready[name].Sub(t0))
	}
	mu.Unlock()
	if !burst {
		deletePods(env, pc, slices.Collect(maps.Keys(started)))
	}
	return PodsResult{Pods: n, P50Ms: Ms(lat.Percentile(50)), P99Ms: Ms(lat.Percentile(99)), MaxMs: Ms(lat.Percentile(100)),
		LoadAvg: LoadAvg(), CPUMsPerPod: perPod, Seconds: elapsed.Seconds(), names: slices.Collect(maps.Keys(started))}
}

// deletePods deletes the named pods of the suite and waits until they are
// gone. The deletion is graceful (the pod's own period, 30 s), so a pod
// leaves the API only when
// the worker confirms it, after it has removed the pod's containers and
// released its network (CNI DEL): nothing of it (iptables masquerade
// chains, IPAM addresses) outlives the run on this machine. (With grace 0
// the object goes at once, and the worker, stopped by the next cleanup,
// may not have released the network yet; and a grace period shorter than
// the worker takes to stop a burst lets the servers delete the object
// without it.)
func deletePods(env *Env, pc *podsCluster, names []string) {
	for _, name := range names {
		if err := pc.cl.Delete(context.Background(), api.Pod, PodsNamespace, name, client.DeleteOptions{}); err != nil {
			env.Fatal(err)
		}
	}
	waitPodsGone(env, pc)
}

// waitPodsGone waits until the API holds no pod of the suite and
// containerd runs no container of it.
func waitPodsGone(env *Env, pc *podsCluster) {
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := pc.cl.List(context.Background(), api.Pod, PodsNamespace, client.ListOptions{})
		shims := 0
		for _, e := range pc.cpu() {
			if e.selfCls == "shims" {
				shims++
			}
		}
		addrs := pc.addressesInUse()
		if err == nil && len(list.Items) == 0 && shims == 0 && len(addrs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			env.Fatalf("pods of the suite still there after a minute (err %v, %d pods, %d shims, pod addresses still allocated: %v)", err, len(list.Items), shims, addrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addressesInUse lists the pod addresses the worker's IPAM still holds:
// one goes only when the worker has released the pod's network (CNI DEL).
func (pc *podsCluster) addressesInUse() []string {
	ents, _ := os.ReadDir(pc.ipam)
	var out []string
	for _, e := range ents {
		if strings.Count(e.Name(), ".") == 3 { // an address; not the lock or last_reserved_ip files
			out = append(out, e.Name())
		}
	}
	return out
}

// podsTable reports the pod-start suite.
func (r *Results) podsTable(p func(string, ...any)) {
	p("")
	p("### Pod start: create -> Running and Ready, image present, one worker (goal p50 <= 300 ms, p99 <= 1 s; worker RSS <= 40 MB)")
	p("")
	p("| pods | p50 ms | p99 ms | max ms | worker VmRSS MiB | anonymous | file-backed |")
	p("|---|---:|---:|---:|---:|---:|---:|")
	var modes []string
	for _, x := range r.Pods {
		if !slices.Contains(modes, x.Mode) {
			modes = append(modes, x.Mode)
		}
	}
	for _, m := range modes {
		var p50, p99, mx, rss, anon, file []float64
		for _, x := range r.Pods {
			if x.Mode == m {
				p50, p99, mx = append(p50, x.P50Ms), append(p99, x.P99Ms), append(mx, x.MaxMs)
				if x.WorkerRSSMB > 0 {
					rss, anon, file = append(rss, x.WorkerRSSMB), append(anon, x.WorkerAnonMB), append(file, x.WorkerFileMB)
				}
			}
		}
		rssCells := "- | - | -"
		if len(rss) > 0 {
			rssCells = SpreadOf(rss).Format(1) + " | " + SpreadOf(anon).Format(1) + " | " + SpreadOf(file).Format(1)
		}
		p("| %s | %s | %s | %s | %s |", m, SpreadOf(p50).Format(0), SpreadOf(p99).Format(0), SpreadOf(mx).Format(0), rssCells)
	}
	p("")
	p("CPU milliseconds per pod start, by process (median of runs), and the time from the first create to the last pod Ready:")
	p("")
	p("| pods | %s | total | seconds |", strings.Join(podCPUClasses, " | "))
	p("|---|%s---:|---:|", strings.Repeat("---:|", len(podCPUClasses)))
	for _, m := range modes {
		cells := make([]string, 0, len(podCPUClasses)+2)
		var secs, totals []float64
		for _, c := range append(slices.Clone(podCPUClasses), "total") {
			var v []float64
			for _, x := range r.Pods {
				if x.Mode != m {
					continue
				}
				if c != "total" {
					v = append(v, x.CPUMsPerPod[c])
					continue
				}
				var t float64
				for _, ms := range x.CPUMsPerPod {
					t += ms
				}
				totals = append(totals, t)
				secs = append(secs, x.Seconds)
			}
			if c == "total" {
				v = totals
			}
			cells = append(cells, SpreadOf(v).Format(0))
		}
		cells = append(cells, SpreadOf(secs).Format(1))
		p("| %s | %s |", m, strings.Join(cells, " | "))
	}
}
