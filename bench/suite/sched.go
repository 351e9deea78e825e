package suite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// SchedNamespace holds the scheduling benchmark's pods.
const SchedNamespace = "bench-sched"

// SchedScale is one cluster size of the throughput benchmark.
type SchedScale struct {
	Nodes int `json:"nodes"`
	Pods  int `json:"pods"`
}

// SchedConfig tunes the scheduling suite.
type SchedConfig struct {
	Runs   int
	Scales []SchedScale
	// Steady-rate latency: Rate pods per second, one create each, for
	// LatencyPods pods, on a cluster of the first scale's node count.
	Rate        float64
	LatencyPods int
	// ProfileDir, when set, receives the leader's CPU profiles of the
	// first ProfileSeconds of each scale's first throughput run and, once
	// every pod is bound and that profile is done, of the next
	// ProfileSeconds (the simulator reporting the pods Running), and its
	// heap profile at that point.
	ProfileDir     string
	ProfileSeconds int
}

// SchedResult is one throughput run: a ReplicaSet of Pods replicas on
// Nodes simulated nodes, from its creation to the last pod bound.
type SchedResult struct {
	Run   int `json:"run"`
	Nodes int `json:"nodes"`
	Pods  int `json:"pods"`
	// From the ReplicaSet's creation to every pod bound, as a watcher sees
	// it: the controller creating the pods and the scheduler binding them.
	TotalSeconds float64 `json:"total_seconds"`
	TotalPerSec  float64 `json:"total_per_sec"`
	// From the first pod seen to the last pod bound.
	BindSeconds float64 `json:"bind_seconds"`
	BindPerSec  float64 `json:"bind_per_sec"`
	// From the ReplicaSet's creation to the last pod seen (created): when
	// it is close to TotalSeconds, creating the pods is what limits.
	CreatedSeconds float64 `json:"created_seconds"`
	// From the ReplicaSet's creation to the last pod seen Running (its
	// simulated node reported it): the end of the run's work, after which
	// the latency run starts.
	RunningSeconds float64 `json:"running_seconds"`
	// From the ReplicaSet's creation until its status counts every replica
	// ready: the controllers have caught up with the run (the latency run
	// starts then).
	SettledSeconds float64 `json:"settled_seconds"`
	// The leader's peak VmRSS (VmHWM) at the end of the run.
	LeaderPeakMiB float64 `json:"leader_peak_rss_mib"`
	LoadAvg       float64 `json:"loadavg_1m"`
}

// SchedLatencyResult is one steady-rate run: each pod's latency from the
// start of its create request to a watcher seeing it bound.
type SchedLatencyResult struct {
	Run     int     `json:"run"`
	Nodes   int     `json:"nodes"`
	Rate    float64 `json:"rate_per_sec"`
	Pods    int     `json:"pods"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	LoadAvg float64 `json:"loadavg_1m"`
	// Where the time goes: from the start of the create request to its
	// response (API, Raft commit), and to the watcher seeing the pod.
	AckP99Ms  float64 `json:"ack_p99_ms"`
	SeenP99Ms float64 `json:"seen_p99_ms"`
	// The slowest pods, to find what stalled them (at_s counts from
	// Started, to compare with the servers' logs).
	Started time.Time            `json:"started"`
	Slowest []SchedLatencySample `json:"slowest"`
}

// SchedLatencySample is one pod of a steady-rate run: when its create
// started (seconds from the run's start) and its latencies.
type SchedLatencySample struct {
	At      float64 `json:"at_s"`
	AckMs   float64 `json:"ack_ms"`
	SeenMs  float64 `json:"seen_ms"`
	BoundMs float64 `json:"bound_ms"`
}

// SchedResults are the scheduling suite's figures.
type SchedResults struct {
	Throughput []SchedResult        `json:"throughput"`
	Latency    []SchedLatencyResult `json:"latency"`
}

// Sched runs the scheduling suite: for each run and scale a fresh 3-server
// cluster with a simulator (`orchd simulate`) registering the nodes.
func Sched(env *Env, cfg SchedConfig, progress func(string)) SchedResults {
	var out SchedResults
	for run := 1; run <= cfg.Runs; run++ {
		for i, sc := range cfg.Scales {
			mark := env.Mark()
			c, cl := startSchedCluster(env, sc.Nodes)
			prof := ""
			if run == 1 {
				prof = cfg.ProfileDir
			}
			r := schedThroughput(env, c, cl, sc, prof, cfg.ProfileSeconds)
			r.Run = run
			out.Throughput = append(out.Throughput, r)
			progress(fmt.Sprintf("sched run %d: %d nodes, %d pods: %.0f pods/s created+bound (%.0f pods/s bound; all created after %.1f s, bound after %.1f s, Running after %.1f s, ReplicaSet ready after %.1f s), leader peak RSS %.0f MiB",
				run, sc.Nodes, sc.Pods, r.TotalPerSec, r.BindPerSec, r.CreatedSeconds, r.TotalSeconds, r.RunningSeconds, r.SettledSeconds, r.LeaderPeakMiB))
			if i == 0 && cfg.LatencyPods > 0 {
				l := schedLatency(env, cl, cfg.Rate, cfg.LatencyPods)
				l.Run, l.Nodes = run, sc.Nodes
				out.Latency = append(out.Latency, l)
				progress(fmt.Sprintf("sched run %d: %.0f pods/s steady: create->bound p50 %.1f ms p99 %.1f ms max %.1f ms",
					run, l.Rate, l.P50Ms, l.P99Ms, l.MaxMs))
			}
			env.PopCleanups(mark)
		}
	}
	return out
}

// startSchedCluster starts three servers and a simulator of n nodes, and
// waits until the nodes are registered.
func startSchedCluster(env *Env, nodes int) (*testcluster.Cluster, *client.Client) {
	c := StartOrch(env)
	cl := OrchClient(env, c)
	ip := c.Servers[0].IP
	simIP := ip[:strings.LastIndex(ip, ".")] + ".20"
	logPath := filepath.Join(env.TempDir(), "simulate.log")
	logf, err := os.Create(logPath)
	if err != nil {
		env.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(testcluster.Binaries(env), "orchd"), "simulate", "--join", ip, "--token", c.Token(),
		"--bind", simIP, "--nodes", fmt.Sprint(nodes), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		env.Fatal(err)
	}
	env.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err := cl.List(ctx, api.Node, "", client.ListOptions{LabelSelector: "orch.dev/simulated=true"})
		ready := 0
		if err == nil {
			for _, o := range l.Items {
				if nodeReady(o.(*corev1.Node)) {
					ready++
				}
			}
		}
		if ready == nodes {
			break
		}
		if time.Now().After(deadline) {
			env.Fatalf("simulator registered %d Ready nodes of %d in 2m (err %v; log %s)", ready, nodes, err, logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := CreateNamespace(ctx, cl, SchedNamespace); err != nil {
		env.Fatal(err)
	}
	return c, cl
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// benchPodSpec is small enough that every scale fits with room to spare
// (10-30 pods per node of 4 cpu, 8 GiB, 110 pods).
func benchPodSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: "bench:v1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
		}},
	}}}
}

// bindWatch follows the pods of SchedNamespace and records when each was
// first seen, first seen bound and first seen Running.
//
// It reads the watch stream itself and picks the few fields it needs out
// of each line (podEventFields): the benchmark's client shares the machine
// with the servers it measures, and decoding every pod event in full (what
// client.Watch does) cost it a third of a core at 1,000 pods/s.
type bindWatch struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	bound   map[string]time.Time
	running map[string]time.Time
	wake    chan struct{}
}

// podEvent is what bindWatch reads of a watch event.
type podEvent struct {
	Type, Name, ResourceVersion, NodeName, Phase string
}

// podEventFields picks a pod watch event's type, name, resourceVersion,
// node and phase out of its JSON line without decoding it. The server
// writes {"type":...,"object":...} lines and encodes the object with
// encoding/json: keys in struct order, metadata first with its name
// first, and quotes inside strings escaped. So the first "name" key is
// metadata.name, the first "resourceVersion" metadata's, and "nodeName"
// and "phase" occur only as spec.nodeName and status.phase.
// (TestPodEventFields checks this against encoding/json.)
func podEventFields(line []byte) podEvent {
	typ, _, _ := bytes.Cut(bytes.TrimPrefix(line, []byte(`{"type":"`)), []byte(`"`))
	str := func(key string) string {
		i := bytes.Index(line, []byte(`"`+key+`":"`))
		if i < 0 {
			return ""
		}
		rest := line[i+len(key)+4:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return ""
		}
		return string(rest[:j])
	}
	return podEvent{Type: string(typ), Name: str("name"), ResourceVersion: str("resourceVersion"), NodeName: str("nodeName"), Phase: str("phase")}
}

// watchBindings starts following the pods from resourceVersion rv, or
// with "" from a listing of those that exist (ADDED events).
func watchBindings(ctx context.Context, env *Env, cl *client.Client, rv string) *bindWatch {
	bw := &bindWatch{seen: map[string]time.Time{}, bound: map[string]time.Time{}, running: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	started := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			q := url.Values{"watch": {"true"}}
			if rv != "" {
				q.Set("resourceVersion", rv)
			}
			resp, err := cl.Do(ctx, client.Request{Method: http.MethodGet, Path: api.Pod.Path(SchedNamespace), Query: q, Stream: true})
			if started != nil {
				started <- err
				started = nil
			}
			if err != nil {
				return
			}
			sc := bufio.NewScanner(resp.Stream)
			sc.Buffer(make([]byte, 64<<10), 8<<20)
			for sc.Scan() {
				ev := podEventFields(sc.Bytes())
				if ev.Type == "ERROR" || ev.Name == "" {
					break
				}
				if ev.Type == "BOOKMARK" || ev.Type == "DELETED" {
					continue
				}
				rv = ev.ResourceVersion
				bw.record(ev.Name, ev.NodeName != "", ev.Phase == string(corev1.PodRunning))
			}
			resp.Stream.Close()
		}
	}()
	if err := <-started; err != nil {
		env.Fatal(err)
	}
	return bw
}

func (bw *bindWatch) record(name string, bound, running bool) {
	now := time.Now()
	bw.mu.Lock()
	if _, ok := bw.seen[name]; !ok {
		bw.seen[name] = now
	}
	if _, ok := bw.bound[name]; !ok && bound {
		bw.bound[name] = now
	}
	if _, ok := bw.running[name]; !ok && running {
		bw.running[name] = now
	}
	bw.mu.Unlock()
	select {
	case bw.wake <- struct{}{}:
	default:
	}
}

// waitRunning waits until n pods are Running and returns when the last
// one was seen Running.
func (bw *bindWatch) waitRunning(env *Env, n int, timeout time.Duration) time.Time {
	deadline := time.After(timeout)
	for {
		bw.mu.Lock()
		have := len(bw.running)
		var last time.Time
		if have >= n {
			for _, t := range bw.running {
				if t.After(last) {
					last = t
				}
			}
		}
		bw.mu.Unlock()
		if have >= n {
			return last
		}
		select {
		case <-bw.wake:
		case <-deadline:
			env.Fatalf("only %d of %d pods Running after %v", have, n, timeout)
		}
	}
}

// waitBound waits until n pods are bound and returns when the first pod
// was seen and the last one bound.
func (bw *bindWatch) waitBound(env *Env, n int, timeout time.Duration) (first, last time.Time) {
	first, _, last = bw.waitBoundSeen(env, n, timeout)
	return first, last
}

// waitBoundSeen is waitBound that also returns when the last pod was
// first seen.
func (bw *bindWatch) waitBoundSeen(env *Env, n int, timeout time.Duration) (first, lastSeen, last time.Time) {
	deadline := time.After(timeout)
	for {
		bw.mu.Lock()
		done := len(bw.bound) >= n
		if done {
			for _, t := range bw.seen {
				if first.IsZero() || t.Before(first) {
					first = t
				}
				if t.After(lastSeen) {
					lastSeen = t
				}
			}
			for _, t := range bw.bound {
				if t.After(last) {
					last = t
				}
			}
		}
		have := len(bw.bound)
		bw.mu.Unlock()
		if done {
			return first, lastSeen, last
		}
		select {
		case <-bw.wake:
		case <-deadline:
			env.Fatalf("only %d of %d pods bound after %v", have, n, timeout)
		}
	}
}

func schedThroughput(env *Env, c *testcluster.Cluster, cl *client.Client, sc SchedScale, profileDir string, profileSecs int) SchedResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bw := watchBindings(ctx, env, cl, "")
	replicas := int32(sc.Pods)
	labels := map[string]string{"app": "bench"}
	rs := &appsv1.ReplicaSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: SchedNamespace, Name: "bench"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: benchPodSpec()}},
	}
	name := fmt.Sprintf("orch-leader-sched-%dx%d", sc.Nodes, sc.Pods)
	saved := func() {}
	if profileDir != "" {
		saved = profile(c.Leader(), profileDir, name+"-cpu.pprof", 0, time.Duration(max(profileSecs, 1))*time.Second)
	}
	start := time.Now()
	if _, err := cl.Create(ctx, rs); err != nil {
		env.Fatal(err)
	}
	first, lastSeen, last := bw.waitBoundSeen(env, sc.Pods, 10*time.Minute)
	if profileDir != "" {
		saved()
		saved = profile(c.Leader(), profileDir, name+"-running-cpu.pprof", 0, time.Duration(max(profileSecs, 1))*time.Second)
		if l := c.Leader(); l != nil {
			saveURL(l.URL()+"/debug/pprof/heap", filepath.Join(profileDir, name+"-heap.pprof"), time.Minute)
		}
	}
	r := SchedResult{Nodes: sc.Nodes, Pods: sc.Pods, LoadAvg: LoadAvg()}
	r.TotalSeconds = last.Sub(start).Seconds()
	r.TotalPerSec = float64(sc.Pods) / r.TotalSeconds
	r.BindSeconds = last.Sub(first).Seconds()
	r.BindPerSec = float64(sc.Pods) / r.BindSeconds
	r.CreatedSeconds = lastSeen.Sub(start).Seconds()
	r.RunningSeconds = bw.waitRunning(env, sc.Pods, 10*time.Minute).Sub(start).Seconds()
	r.SettledSeconds = waitReplicaSetReady(env, cl, rs.Name, sc.Pods, 10*time.Minute).Sub(start).Seconds()
	saved()
	if l := c.Leader(); l != nil {
		if hwm, err := statusKiB(l.PID(), "VmHWM:"); err == nil {
			r.LeaderPeakMiB = float64(hwm) / 1024
		}
	}
	return r
}

// waitReplicaSetReady waits until the ReplicaSet's status counts n ready
// replicas and returns when that was seen.
func waitReplicaSetReady(env *Env, cl *client.Client, name string, n int, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for {
		obj, err := cl.Get(context.Background(), api.ReplicaSet, SchedNamespace, name, true)
		if err == nil && obj.(*appsv1.ReplicaSet).Status.ReadyReplicas == int32(n) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			env.Fatalf("ReplicaSet %s: not %d ready replicas after %s (last error %v)", name, n, timeout, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// schedWarmup is how long pods are created at the latency run's rate
// before the measured ones, which are counted from then on (as the write
// suite's warm-up): the first seconds of a new rate are not the steady state.
const schedWarmup = 2 * time.Second

func schedLatency(env *Env, cl *client.Client, rate float64, pods int) SchedLatencyResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// From now on: a watch that first listed the throughput run's pods
	// would still be reading them when the first pods of this run are
	// bound, and measure that as their latency.
	l, err := cl.List(ctx, api.Pod, SchedNamespace, client.ListOptions{Limit: 1})
	if err != nil {
		env.Fatal(err)
	}
	bw := watchBindings(ctx, env, cl, l.ResourceVersion)
	bw.mu.Lock()
	base := len(bw.bound)
	bw.mu.Unlock()
	started := make(map[string]time.Time, pods)
	acked := make(map[string]time.Time, pods)
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	warm := int(rate * schedWarmup.Seconds())
	errs := make(chan error, pods+warm)
	for i := range pods + warm {
		<-tick.C
		name := fmt.Sprintf("lat-%06d", i-warm)
		if i < warm {
			name = fmt.Sprintf("warm-%06d", i)
		}
		pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: SchedNamespace, Name: name}, Spec: benchPodSpec()}
		if i >= warm {
			mu.Lock()
			started[name] = time.Now()
			mu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Create(ctx, pod); err != nil {
				errs <- err
			}
			mu.Lock()
			acked[name] = time.Now()
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		env.Fatal(err)
	}
	bw.waitBound(env, base+pods+warm, time.Minute)
	var lat, ack, seen Latencies
	var samples []SchedLatencySample
	first := started[fmt.Sprintf("lat-%06d", 0)]
	bw.mu.Lock()
	for name, t0 := range started {
		s := SchedLatencySample{At: t0.Sub(first).Seconds(), AckMs: Ms(acked[name].Sub(t0)),
			SeenMs: Ms(bw.seen[name].Sub(t0)), BoundMs: Ms(bw.bound[name].Sub(t0))}
		samples = append(samples, s)
		lat = append(lat, bw.bound[name].Sub(t0))
		ack = append(ack, acked[name].Sub(t0))
		seen = append(seen, bw.seen[name].Sub(t0))
	}
	bw.mu.Unlock()
	sort.Slice(samples, func(i, j int) bool { return samples[i].BoundMs > samples[j].BoundMs })
	return SchedLatencyResult{Rate: rate, Pods: pods, P50Ms: Ms(lat.Percentile(50)), P99Ms: Ms(lat.Percentile(99)),
		MaxMs: Ms(lat.Percentile(100)), LoadAvg: LoadAvg(), AckP99Ms: Ms(ack.Percentile(99)),
		SeenP99Ms: Ms(seen.Percentile(99)), Started: first, Slowest: samples[:min(len(samples), 30)]}
}

// schedTable reports the scheduling suite.
func (r *Results) schedTable(p func(string, ...any)) {
	s := r.Sched
	p("")
	p("### Scheduling (3 servers, simulated nodes from `orchd simulate`; goal >= 3,000 pods/s, create->bound p99 <= 50 ms at 100 pods/s)")
	p("")
	p("| nodes | pods | ReplicaSet created -> all bound, pods/s | first pod seen -> all bound, pods/s | seconds | leader peak RSS MiB |")
	p("|---:|---:|---:|---:|---:|---:|")
	seen := map[SchedScale]bool{}
	for _, t := range s.Throughput {
		sc := SchedScale{Nodes: t.Nodes, Pods: t.Pods}
		if seen[sc] {
			continue
		}
		seen[sc] = true
		var total, bind, secs, rss []float64
		for _, u := range s.Throughput {
			if u.Nodes == sc.Nodes && u.Pods == sc.Pods {
				total, bind = append(total, u.TotalPerSec), append(bind, u.BindPerSec)
				secs, rss = append(secs, u.TotalSeconds), append(rss, u.LeaderPeakMiB)
			}
		}
		p("| %d | %d | %s | %s | %s | %s |", sc.Nodes, sc.Pods, SpreadOf(total).Format(0), SpreadOf(bind).Format(0),
			SpreadOf(secs).Format(1), SpreadOf(rss).Format(0))
	}
	if len(s.Latency) > 0 {
		var p50, p99, mx, ack, seen []float64
		for _, l := range s.Latency {
			p50, p99, mx = append(p50, l.P50Ms), append(p99, l.P99Ms), append(mx, l.MaxMs)
			ack, seen = append(ack, l.AckP99Ms), append(seen, l.SeenP99Ms)
		}
		l := s.Latency[0]
		p("")
		p("| steady rate | pods | nodes | create->bound p50 ms | p99 ms | max ms | create->acknowledged p99 ms | create->seen p99 ms |")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|")
		p("| %.0f/s | %d | %d | %s | %s | %s | %s | %s |", l.Rate, l.Pods, l.Nodes, SpreadOf(p50).Format(1), SpreadOf(p99).Format(1), SpreadOf(mx).Format(1),
			SpreadOf(ack).Format(1), SpreadOf(seen).Format(1))
	}
}
