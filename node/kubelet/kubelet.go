package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/sched/fit"
)

// Config configures a Kubelet. Zero durations take the defaults shown.
type Config struct {
	NodeName string
	NodeIP   string // reported as each pod's hostIP
	// DataDir holds the desired pods and their volumes; keep it on
	// persistent storage so pods survive a reboot while offline.
	DataDir string
	Runtime runtime.Runtime
	// Cluster is the control plane; nil runs from DataDir only.
	Cluster Cluster
	DNS     runtime.DNSConfig
	// PodDNS, when set, gives each pod its resolv.conf (cluster DNS and
	// dnsPolicy) and takes precedence over DNS.
	PodDNS func(*corev1.Pod) runtime.DNSConfig

	CrashLoopBackoff Backoff // DefaultCrashLoopBackoff
	ImagePullBackoff Backoff // DefaultCrashLoopBackoff
	// RetryPeriod is how soon a pod that could not be set up (missing
	// ConfigMap, sandbox failure) is tried again: 5 s.
	RetryPeriod time.Duration
	// ResyncPeriod is how often every pod is checked without a reason: 10 s.
	ResyncPeriod time.Duration
	// VolumeRefresh is how often configMap and secret volumes are
	// rewritten from the API: 60 s.
	VolumeRefresh time.Duration
	// APITimeout bounds one read of a ConfigMap or Secret: 5 s.
	APITimeout time.Duration
	// StartupWait is how long a starting kubelet waits for the API's list
	// of its pods before it starts from the pods it remembers: 3 s.
	StartupWait time.Duration
	// StatusWriters is how many status writes may be in flight: 8.
	StatusWriters int
	// Tmpfs mounts a tmpfs for secret volumes and memory emptyDirs (needs
	// root); without it they are plain directories.
	Tmpfs bool
	// Prober runs probes; nil: HTTP, TCP and exec probes for real.
	Prober Prober
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.CrashLoopBackoff == (Backoff{}) {
		c.CrashLoopBackoff = DefaultCrashLoopBackoff
	}
	if c.ImagePullBackoff == (Backoff{}) {
		c.ImagePullBackoff = DefaultCrashLoopBackoff
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RetryPeriod, 5*time.Second)
	def(&c.ResyncPeriod, 10*time.Second)
	def(&c.VolumeRefresh, 60*time.Second)
	def(&c.APITimeout, 5*time.Second)
	def(&c.StartupWait, 3*time.Second)
	if c.StatusWriters == 0 {
		c.StatusWriters = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Kubelet runs the pods bound to one node.
type Kubelet struct {
	cfg    Config
	rt     runtime.Runtime
	store  *store
	status *statusManager
	prober Prober
	log    *slog.Logger

	online     atomic.Bool   // the last list or watch succeeded
	synced     chan struct{} // closed after the first list from the API
	syncedOnce sync.Once
	ready      chan struct{} // closed once stored pods are adopted and started

	mu       sync.Mutex
	ctx      context.Context
	workers  map[types.UID]*podWorker
	byCtr    map[string]types.UID       // container ID -> pod, for runtime events
	admitted map[types.UID]*corev1.Pod  // pods holding host ports
	adopted  map[types.UID]*adoptedPod  // what ran before this process, until a worker takes it
	rejected map[types.UID]podRejection // pods admission refused
	gone     map[types.UID]time.Time    // pods finished here: late or replayed events must not revive them
	wg       sync.WaitGroup
}

type podRejection struct{ reason, message string }

// New checks cfg and opens the data directory.
func New(cfg Config) (*Kubelet, error) {
	cfg.defaults()
	if cfg.NodeName == "" || cfg.DataDir == "" || cfg.Runtime == nil {
		return nil, errors.New("kubelet: NodeName, DataDir and Runtime are required")
	}
	st, err := newStore(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	k := &Kubelet{cfg: cfg, rt: cfg.Runtime, store: st, prober: cfg.Prober, log: cfg.Logger,
		synced: make(chan struct{}), ready: make(chan struct{}),
		workers: map[types.UID]*podWorker{}, byCtr: map[string]types.UID{}, admitted: map[types.UID]*corev1.Pod{},
		adopted: map[types.UID]*adoptedPod{}, rejected: map[types.UID]podRejection{}, gone: map[types.UID]time.Time{}}
	if k.prober == nil {
		k.prober = &realProber{rt: cfg.Runtime}
	}
	k.status = newStatusManager(cfg.Cluster, cfg.StatusWriters, k.log)
	return k, nil
}

// Ready is closed once the pods remembered from before are adopted (or
// restarted) and the kubelet follows the API.
func (k *Kubelet) Ready() <-chan struct{} { return k.ready }

// Synced is closed after the first successful list of the node's pods.
func (k *Kubelet) Synced() <-chan struct{} { return k.synced }

// Online reports whether the last contact with the API succeeded.
func (k *Kubelet) Online() bool { return k.online.Load() }

// Run runs the pods until ctx ends, then returns once every goroutine it
// started has; the pods keep running in the runtime.
func (k *Kubelet) Run(ctx context.Context) error {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
	stored, errs := k.store.loadPods()
	for _, err := range errs {
		k.log.Warn("skipping a damaged pod record", "err", err)
	}
	if err := k.adoptRuntime(ctx); err != nil {
		return fmt.Errorf("listing what the runtime runs: %w", err)
	}
	// With the API at hand, start from what it wants now (and with the
	// status it shows: adopted containers keep their readiness); without
	// it, from what this node remembers.
	desired, known, listed := stored, uint64(0), false
	for _, p := range stored {
		known = max(known, parseRV(p.ResourceVersion))
	}
	if k.cfg.Cluster != nil {
		lctx, cancel := context.WithTimeout(ctx, k.cfg.StartupWait)
		pods, rv, err := k.cfg.Cluster.ListPods(lctx, k.cfg.NodeName, formatRV(known))
		cancel()
		if err == nil {
			desired, known, listed = pods, max(known, parseRV(rv)), true
			k.setOnline(true, nil)
		} else {
			k.log.Warn("the API cannot be reached; starting the pods this node remembers", "pods", len(stored), "err", err)
		}
	}
	// Pods whose containers still run are admitted first: they hold their
	// host ports already.
	sort.SliceStable(desired, func(i, j int) bool {
		return k.adopted[desired[i].UID] != nil && k.adopted[desired[j].UID] == nil
	})
	for _, p := range desired {
		k.setPod(p)
	}
	if listed {
		// Pods this node remembers that the API no longer has were deleted
		// while this agent was down: their workers stop and clean them.
		inList := map[types.UID]bool{}
		for _, p := range desired {
			inList[p.UID] = true
		}
		for _, p := range stored {
			if !inList[p.UID] {
				k.setPod(p)
			}
		}
		k.replacePods(desired, known)
		k.syncedOnce.Do(func() { close(k.synced) })
	}
	k.cleanOrphans()
	events := k.rt.Events(ctx)
	k.wg.Add(2)
	go func() { defer k.wg.Done(); k.status.run(ctx) }()
	go func() { defer k.wg.Done(); k.runtimeEvents(ctx, events) }()
	if k.cfg.Cluster != nil {
		k.wg.Add(1)
		go func() { defer k.wg.Done(); k.follow(ctx, known, listed) }()
	}
	close(k.ready)
	<-ctx.Done()
	k.wg.Wait()
	return nil
}

// runtimeEvents wakes the worker of a container that exited; a resync
// wakes every worker.
func (k *Kubelet) runtimeEvents(ctx context.Context, events <-chan runtime.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				// The runtime stopped delivering: resubscribe.
				events = k.rt.Events(ctx)
				k.wakeAll()
				continue
			}
			if ev.Type == runtime.EventResync {
				k.wakeAll()
				continue
			}
			k.mu.Lock()
			w := k.workers[k.byCtr[ev.ContainerID]]
			k.mu.Unlock()
			if w != nil {
				w.poke()
			}
		}
	}
}

func (k *Kubelet) wakeAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workers {
		w.poke()
	}
}

// setPod records a desired pod (new or changed) and hands it to its worker.
func (k *Kubelet) setPod(pod *corev1.Pod) {
	if pod.Spec.NodeName != k.cfg.NodeName {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == nil || k.ctx.Err() != nil {
		return
	}
	if w := k.workers[pod.UID]; w != nil {
		w.update(pod)
		return
	}
	if _, done := k.gone[pod.UID]; done {
		return
	}
	if r, ok := admit(pod, k.admitted); !ok {
		k.rejected[pod.UID] = r
		k.log.Warn("pod rejected", "pod", podKey(pod), "reason", r.reason, "message", r.message)
	} else if len(fit.HostPorts(pod)) > 0 {
		k.admitted[pod.UID] = pod
	}
	a := k.adopted[pod.UID]
	w := newPodWorker(k, pod, a)
	if a != nil {
		for _, c := range a.containers {
			k.byCtr[c.ID] = pod.UID
		}
	}
	delete(k.adopted, pod.UID)
	k.workers[pod.UID] = w
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		w.run(k.ctx)
	}()
}

// admit refuses a pod whose host ports another admitted pod holds.
func admit(pod *corev1.Pod, admitted map[types.UID]*corev1.Pod) (podRejection, bool) {
	others := make([]*corev1.Pod, 0, len(admitted))
	for _, p := range admitted {
		others = append(others, p)
	}
	if hp, clash := fit.PortConflict(pod, others); clash {
		holder := ""
		for _, p := range others {
			if _, c := fit.PortConflict(pod, []*corev1.Pod{p}); c {
				holder = podKey(p)
			}
		}
		return podRejection{reason: "HostPortConflict",
			message: fmt.Sprintf("host port %s is already used by pod %s on this node", hp, holder)}, false
	}
	return podRejection{}, true
}

// removePod tells a pod's worker the pod is gone from the API.
func (k *Kubelet) removePod(uid types.UID) {
	k.mu.Lock()
	w := k.workers[uid]
	k.mu.Unlock()
	if w != nil {
		w.remove()
	}
}

// forget drops a pod whose worker finished.
func (k *Kubelet) forget(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.workers, uid)
	delete(k.admitted, uid)
	delete(k.rejected, uid)
	t := time.Now()
	for u, at := range k.gone {
		if t.Sub(at) > 10*time.Minute {
			delete(k.gone, u)
		}
	}
	k.gone[uid] = t
	for id, u := range k.byCtr {
		if u == uid {
			delete(k.byCtr, id)
		}
	}
}

// releasePorts frees a pod's host ports (it finished).
func (k *Kubelet) releasePorts(uid types.UID) {
	k.mu.Lock()
	delete(k.admitted, uid)
	k.mu.Unlock()
}

func (k *Kubelet) rejection(uid types.UID) (podRejection, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.rejected[uid]
	return r, ok
}

func (k *Kubelet) trackContainer(id string, uid types.UID) {
	k.mu.Lock()
	k.byCtr[id] = uid
	k.mu.Unlock()
}

func (k *Kubelet) untrackContainer(id string) {
	k.mu.Lock()
	delete(k.byCtr, id)
	k.mu.Unlock()
}

// desiredUIDs lists the pods that have a worker.
func (k *Kubelet) desiredUIDs() map[types.UID]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[types.UID]bool, len(k.workers))
	for uid := range k.workers {
		out[uid] = true
	}
	return out
}

// Container returns the ID of a pod's container for logs and exec: its
// current attempt, or with previous the one before.
func (k *Kubelet) Container(namespace, name, container string, previous bool) (string, error) {
	k.mu.Lock()
	var w *podWorker
	for _, cand := range k.workers {
		if p := cand.current(); p.Namespace == namespace && p.Name == name {
			if w == nil || p.CreationTimestamp.After(w.current().CreationTimestamp.Time) {
				w = cand
			}
		}
	}
	k.mu.Unlock()
	if w == nil {
		return "", fmt.Errorf("pod %s/%s: %w", namespace, name, ErrPodNotFound)
	}
	return w.containerID(container, previous)
}

// Errors of Container.
var (
	ErrPodNotFound       = errors.New("no such pod on this node")
	ErrContainerNotFound = errors.New("no such container")
	ErrContainerName     = errors.New("a container name must be given")
)

// Pods returns the pods the kubelet runs, as last seen (for tests and
// debugging).
func (k *Kubelet) Pods() []*corev1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(k.workers))
	for _, w := range k.workers {
		out = append(out, w.current())
	}
	return out
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// now is time.Now at the precision the API keeps.
func now() metav1.Time { return metav1.NewTime(time.Now().Truncate(time.Second)) }
