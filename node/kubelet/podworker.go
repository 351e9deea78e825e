package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/node/runtime"
)

// forever is "no timer needed": the worker waits for a wake-up.
const forever = time.Duration(1<<63 - 1)

// podWorker reconciles one pod. Its goroutine owns every field below the
// mutex; other goroutines (the kubelet, probers) reach it only through the
// guarded fields and poke.
type podWorker struct {
	k    *Kubelet
	uid  types.UID
	log  *slog.Logger
	wake chan struct{}

	mu        sync.Mutex
	pod       *corev1.Pod
	removed   bool                   // gone from the API: stop and clean up without confirming
	probes    map[string]*probeState // by container name, written by probers
	published map[string][2]string   // container name -> current and previous container IDs

	sandbox        *runtime.Sandbox
	staleSandboxes []string
	sandboxErr     error
	ctrs           map[string]*ctrState
	crash, pull    *backoffs
	pullErr        map[string]string // image -> last pull error, while backing off
	adopted        bool
	startTime      *metav1.Time
	volumes        map[string]string
	volumesAt      time.Time
	volumeErr      error
	probers        map[string]*containerProbers
	lastStatus     *corev1.PodStatus
	terminal       corev1.PodPhase // Succeeded or Failed once reached: never left
	reason         string          // pod-level reason and message (rejection, deadline)
	message        string
	confirmWait    time.Duration
}

// ctrState is what the worker knows about one container name.
type ctrState struct {
	name        string
	cur, prev   *runtime.ContainerStatus // newest attempt, and the one before
	garbage     []string                 // older attempts, to remove
	nextAttempt int
	waiting     *corev1.ContainerStateWaiting // why it is not running though it should
	restartNow  bool                          // stopped by the kubelet, not failed: no backoff
}

func newPodWorker(k *Kubelet, pod *corev1.Pod, a *adoptedPod) *podWorker {
	w := &podWorker{k: k, uid: pod.UID, log: k.log.With("pod", podKey(pod)), wake: make(chan struct{}, 1),
		pod: pod, probes: map[string]*probeState{}, published: map[string][2]string{},
		ctrs: map[string]*ctrState{}, crash: newBackoffs(k.cfg.CrashLoopBackoff), pull: newBackoffs(k.cfg.ImagePullBackoff),
		pullErr: map[string]string{}, probers: map[string]*containerProbers{}}
	w.adopt(a)
	return w
}

// update hands the worker a newer version of its pod.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	if old := parseRV(w.pod.ResourceVersion); old == 0 || parseRV(pod.ResourceVersion) >= old {
		w.pod = pod
	}
	w.mu.Unlock()
	w.poke()
}

// remove tells the worker its pod is gone from the API.
func (w *podWorker) remove() {
	w.mu.Lock()
	w.removed = true
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *podWorker) desired() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.removed
}

func (w *podWorker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) ctr(name string) *ctrState {
	cs := w.ctrs[name]
	if cs == nil {
		cs = &ctrState{name: name}
		w.ctrs[name] = cs
	}
	return cs
}

// run syncs until the pod is gone (then the worker forgets itself) or ctx
// ends (the agent stops; containers keep running).
func (w *podWorker) run(ctx context.Context) {
	defer w.stopAllProbes()
	timer := time.NewTimer(forever)
	defer timer.Stop()
	for {
		next, done := w.sync(ctx)
		if done {
			w.k.forget(w.uid)
			return
		}
		if ctx.Err() != nil {
			return
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sync does the next steps for the pod and says when to look again.
func (w *podWorker) sync(ctx context.Context) (time.Duration, bool) {
	pod, removed := w.desired()
	if removed || pod.DeletionTimestamp != nil {
		return w.terminate(ctx, pod, removed)
	}
	if err := w.k.store.savePod(pod); err != nil {
		w.log.Error("recording the desired pod", "err", err)
	}
	w.refresh(ctx)
	if w.startTime == nil {
		if pod.Status.StartTime != nil {
			w.startTime = pod.Status.StartTime.DeepCopy()
		} else {
			t := now()
			w.startTime = &t
		}
	}
	next := w.k.cfg.ResyncPeriod
	if r, ok := w.k.rejection(w.uid); ok && w.terminal == "" {
		w.terminal, w.reason, w.message = corev1.PodFailed, r.reason, r.message
	}
	if w.terminal == "" {
		if d, ok := w.deadline(pod); ok && d <= 0 {
			w.log.Info("pod exceeded its activeDeadlineSeconds; stopping it")
			w.stopAll(ctx, podGrace(pod))
			w.terminal, w.reason, w.message = corev1.PodFailed, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
		} else if ok {
			next = min(next, d)
		}
	}
	if w.terminal == "" {
		next = min(next, w.ensure(ctx, pod))
	}
	w.collectGarbage(ctx)
	w.report(pod, false)
	w.publish()
	return next, false
}

// deadline is how long the pod may still run under activeDeadlineSeconds.
func (w *podWorker) deadline(pod *corev1.Pod) (time.Duration, bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || w.startTime == nil {
		return 0, false
	}
	end := w.startTime.Add(time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second)
	return time.Until(end), true
}

// refresh asks the runtime for the state of each current container.
func (w *podWorker) refresh(ctx context.Context) {
	for _, cs := range w.ctrs {
		w.refreshOne(ctx, cs)
	}
}

func (w *podWorker) refreshOne(ctx context.Context, cs *ctrState) {
	if cs.cur == nil {
		return
	}
	st, err := w.k.rt.ContainerStatus(ctx, cs.cur.ID)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		// Removed behind our back: the next attempt replaces it.
		w.log.Warn("a container vanished from the runtime", "container", cs.name, "id", cs.cur.ID)
		w.k.untrackContainer(cs.cur.ID)
		cs.cur = nil
	case err != nil:
		if ctx.Err() == nil {
			w.log.Warn("reading container status", "container", cs.name, "err", err)
		}
	default:
		cs.cur = &st
	}
}

// publish makes the container IDs visible to logs and exec.
func (w *podWorker) publish() {
	ids := make(map[string][2]string, len(w.ctrs))
	for name, cs := range w.ctrs {
		var p [2]string
		if cs.cur != nil {
			p[0] = cs.cur.ID
		}
		if cs.prev != nil {
			p[1] = cs.prev.ID
		}
		ids[name] = p
	}
	w.mu.Lock()
	w.published = ids
	w.mu.Unlock()
}

// containerID serves Kubelet.Container.
func (w *podWorker) containerID(name string, previous bool) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if name == "" {
		if len(w.pod.Spec.Containers) != 1 {
			var names []string
			for _, c := range w.pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return "", fmt.Errorf("%w for pod %s, choose one of: %v", ErrContainerName, w.pod.Name, names)
		}
		name = w.pod.Spec.Containers[0].Name
	}
	ids, ok := w.published[name]
	id := ids[0]
	if previous {
		id = ids[1]
	}
	if !ok || id == "" {
		what := "container"
		if previous {
			what = "previous terminated container"
		}
		return "", fmt.Errorf("%s %q in pod %q: %w", what, name, w.pod.Name, ErrContainerNotFound)
	}
	return id, nil
}

// report computes the pod's status and queues it when it changed.
func (w *podWorker) report(pod *corev1.Pod, terminating bool) {
	st := w.computeStatus(pod, terminating)
	if w.lastStatus != nil && apiequality.Semantic.DeepEqual(*w.lastStatus, st) {
		return
	}
	if (st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed) && w.terminal == "" && !terminating {
		w.terminal = st.Phase
		w.k.releasePorts(w.uid)
		w.stopAllProbes()
		w.log.Info("pod finished", "phase", st.Phase)
	}
	w.lastStatus = &st
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID}, Status: st}
	w.k.status.set(out)
}

// podGrace is how long the pod's containers get between SIGTERM and SIGKILL.
func podGrace(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return corev1.DefaultTerminationGracePeriodSeconds * time.Second
}

// stopAll stops every running container of the pod at once.
func (w *podWorker) stopAll(ctx context.Context, grace time.Duration) error {
	w.stopAllProbes()
	var wg sync.WaitGroup
	errs := make([]error, 0, len(w.ctrs))
	var mu sync.Mutex
	for _, cs := range w.ctrs {
		if cs.cur == nil || cs.cur.State == runtime.StateExited {
			continue
		}
		id := cs.cur.ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.k.rt.StopContainer(ctx, id, grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.refresh(ctx)
	return errors.Join(errs...)
}

// collectGarbage removes older attempts and sandboxes no longer used.
func (w *podWorker) collectGarbage(ctx context.Context) {
	for _, cs := range w.ctrs {
		kept := cs.garbage[:0]
		for _, id := range cs.garbage {
			if err := w.k.rt.RemoveContainer(ctx, id); err != nil {
				w.log.Warn("removing an old container", "container", cs.name, "id", id, "err", err)
				kept = append(kept, id)
				continue
			}
			w.k.untrackContainer(id)
		}
		cs.garbage = kept
	}
	kept := w.staleSandboxes[:0]
	for _, id := range w.staleSandboxes {
		if err := w.k.rt.RemoveSandbox(ctx, id); err != nil {
			kept = append(kept, id)
		}
	}
	w.staleSandboxes = kept
}
