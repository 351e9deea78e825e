package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/node/runtime"
)

// LabelSpecHash is put on each container: a hash of its definition, so a
// changed definition (a new image) replaces the container.
const LabelSpecHash = "orch.dev/container-hash"

// Waiting reasons, as Kubernetes reports them.
const (
	ReasonContainerCreating   = "ContainerCreating"
	ReasonPodInitializing     = "PodInitializing"
	ReasonCrashLoopBackOff    = "CrashLoopBackOff"
	ReasonErrImagePull        = "ErrImagePull"
	ReasonImagePullBackOff    = "ImagePullBackOff"
	ReasonErrImageNeverPull   = "ErrImageNeverPull"
	ReasonCreateConfigError   = "CreateContainerConfigError"
	ReasonCreateError         = "CreateContainerError"
	ReasonRunContainerError   = "RunContainerError"
	ReasonContainerStatusLost = "ContainerStatusUnknown"
)

// ensure moves the pod one step closer to running: volumes, sandbox, init
// containers in order, then every app container. It returns when it wants
// to be called again at the latest.
func (w *podWorker) ensure(ctx context.Context, pod *corev1.Pod) time.Duration {
	objs := w.k.newObjects(ctx, pod.Namespace)
	if w.volumes == nil || w.volumeErr != nil || time.Since(w.volumesAt) >= w.k.cfg.VolumeRefresh {
		paths, err := w.k.setUpVolumes(pod, objs)
		w.volumesAt, w.volumeErr = time.Now(), err
		if err == nil {
			w.volumes = paths
		} else if w.volumes != nil {
			w.log.Warn("refreshing volumes; keeping the previous content", "err", err)
		}
	}
	if w.volumes == nil {
		w.waitAll(pod, ReasonCreateConfigError, w.volumeErr.Error())
		return w.k.cfg.RetryPeriod
	}
	if !w.ensureSandbox(ctx, pod) {
		return w.k.cfg.RetryPeriod
	}
	next := forever
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.ctr(c.Name)
		st := cs.cur
		switch {
		case st != nil && st.State == runtime.StateExited && st.ExitCode == 0:
			cs.waiting = nil
			continue
		case st != nil && st.State == runtime.StateRunning:
			return next // its exit wakes the worker
		case st != nil && neverStarted(st):
			return min(next, w.startCreated(ctx, pod, c, cs))
		case st == nil:
			return min(next, w.start(ctx, pod, c, cs, objs))
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			return next // failed for good: the pod is Failed
		default:
			return min(next, w.restart(ctx, pod, c, cs, objs))
		}
	}
	for i := range pod.Spec.Containers {
		next = min(next, w.ensureContainer(ctx, pod, &pod.Spec.Containers[i], objs))
	}
	return next
}

func neverStarted(st *runtime.ContainerStatus) bool {
	return st.State == runtime.StateCreated && st.StartedAt.IsZero() && st.Reason == ""
}

// waitAll marks every container that is not running as waiting.
func (w *podWorker) waitAll(pod *corev1.Pod, reason, msg string) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			cs := w.ctr(c.Name)
			if cs.cur == nil || cs.cur.State != runtime.StateRunning {
				cs.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
			}
		}
	}
}

// ensureSandbox creates the pod's sandbox when it has none.
func (w *podWorker) ensureSandbox(ctx context.Context, pod *corev1.Pod) bool {
	if w.sandbox != nil {
		return true
	}
	host := pod.Spec.Hostname
	if host == "" {
		host = pod.Name
	}
	dnsConfig := w.k.cfg.DNS
	if w.k.cfg.PodDNS != nil {
		dnsConfig = w.k.cfg.PodDNS(pod)
	}
	sb, err := w.k.rt.CreateSandbox(ctx, runtime.SandboxConfig{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID),
		Hostname: host, Labels: pod.Labels, DNS: dnsConfig})
	if err != nil {
		w.sandboxErr = err
		w.log.Warn("creating the pod sandbox", "err", err)
		w.waitAll(pod, ReasonContainerCreating, "creating the pod sandbox: "+err.Error())
		return false
	}
	w.sandboxErr, w.sandbox = nil, &sb
	// Containers of an older sandbox (lost with a reboot) cannot run in
	// this one: stop what may still run; restarts follow the policy, at
	// once, as nothing failed.
	for _, cs := range w.ctrs {
		if cs.cur != nil && cs.cur.SandboxID != sb.ID && cs.cur.State == runtime.StateRunning {
			w.kill(ctx, cs, 0)
		}
	}
	w.crash.reset()
	return true
}

// ensureContainer keeps one app container running as the restart policy says.
func (w *podWorker) ensureContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, objs *objects) time.Duration {
	cs := w.ctr(c.Name)
	st := cs.cur
	if st != nil && st.State == runtime.StateRunning {
		switch why := w.probeKill(c.Name, st.ID); {
		case st.SandboxID != w.sandbox.ID:
			w.kill(ctx, cs, 0)
			cs.restartNow = true
		case why != "":
			w.log.Info("restarting a container", "container", c.Name, "why", why)
			w.kill(ctx, cs, podGrace(pod))
		case st.Labels[LabelSpecHash] != "" && st.Labels[LabelSpecHash] != specHash(c):
			w.log.Info("replacing a container whose definition changed", "container", c.Name)
			w.kill(ctx, cs, podGrace(pod))
			cs.restartNow = true
		default:
			cs.waiting = nil
			w.ensureProbes(pod, c, st)
			return forever
		}
		st = cs.cur
	}
	switch {
	case st == nil:
		return w.start(ctx, pod, c, cs, objs)
	case neverStarted(st):
		return w.startCreated(ctx, pod, c, cs)
	case st.State == runtime.StateRunning:
		return w.k.cfg.RetryPeriod // could not be stopped; try again
	case !cs.restartNow && !shouldRestart(pod.Spec.RestartPolicy, st):
		cs.waiting = nil
		return forever
	}
	return w.restart(ctx, pod, c, cs, objs)
}

// shouldRestart applies the restart policy to a finished container.
func shouldRestart(policy corev1.RestartPolicy, st *runtime.ContainerStatus) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return st.State != runtime.StateExited || st.ExitCode != 0
	}
	return true
}

// restart starts a new attempt of a finished container once its backoff
// allows.
func (w *podWorker) restart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cs *ctrState, objs *objects) time.Duration {
	now := time.Now()
	if cs.restartNow {
		cs.restartNow = false
		return w.start(ctx, pod, c, cs, objs)
	}
	failedAt := cs.cur.FinishedAt
	if failedAt.IsZero() || failedAt.After(now) {
		failedAt = now
	}
	if wait := w.crash.wait(c.Name, failedAt, now); wait > 0 {
		cs.waiting = &corev1.ContainerStateWaiting{Reason: ReasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", w.crash.entries[c.Name].delay, c.Name, pod.Name)}
		return wait
	}
	w.crash.started(c.Name, now)
	return w.start(ctx, pod, c, cs, objs)
}

// start creates and starts the next attempt of a container.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cs *ctrState, objs *objects) time.Duration {
	now := time.Now()
	key := "image:" + c.Image
	if msg, failed := w.pullErr[c.Image]; failed {
		if wait := w.pull.wait(key, w.pull.entries[key].lastStart, now); wait > 0 {
			cs.waiting = &corev1.ContainerStateWaiting{Reason: ReasonImagePullBackOff, Message: fmt.Sprintf("Back-off pulling image %q: %s", c.Image, msg)}
			return wait
		}
	}
	_, err := w.k.rt.EnsureImage(ctx, c.Image, pullPolicy(c.ImagePullPolicy))
	if err != nil {
		if ctx.Err() != nil {
			return forever
		}
		w.pull.started(key, now)
		w.pullErr[c.Image] = err.Error()
		reason := ReasonErrImagePull
		if c.ImagePullPolicy == corev1.PullNever && errors.Is(err, runtime.ErrImageNotFound) {
			reason = ReasonErrImageNeverPull
		}
		cs.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		// Show the error, then ImagePullBackOff while waiting.
		return min(time.Second, w.k.cfg.ImagePullBackoff.Initial)
	}
	delete(w.pullErr, c.Image)
	w.pull.forget(key)
	cfg, err := w.containerConfig(pod, c, objs, cs.nextAttempt)
	if err != nil {
		cs.waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreateConfigError, Message: err.Error()}
		return w.k.cfg.RetryPeriod
	}
	id, err := w.k.rt.CreateContainer(ctx, w.sandbox.ID, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return forever
		}
		cs.waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreateError, Message: err.Error()}
		return w.k.cfg.RetryPeriod
	}
	w.k.trackContainer(id, w.uid)
	cs.nextAttempt = cfg.Attempt + 1
	if cs.cur != nil {
		if cs.prev != nil {
			cs.garbage = append(cs.garbage, cs.prev.ID)
		}
		cs.prev = cs.cur
	}
	cs.cur = &runtime.ContainerStatus{ID: id, Name: c.Name, Attempt: cfg.Attempt, SandboxID: w.sandbox.ID, State: runtime.StateCreated}
	w.stopProbes(c.Name)
	return w.startCreated(ctx, pod, c, cs)
}

// startCreated starts the current (created) attempt.
func (w *podWorker) startCreated(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cs *ctrState) time.Duration {
	err := w.k.rt.StartContainer(ctx, cs.cur.ID)
	w.refreshOne(ctx, cs)
	if err != nil {
		if ctx.Err() != nil {
			return forever
		}
		cs.waiting = &corev1.ContainerStateWaiting{Reason: ReasonRunContainerError, Message: err.Error()}
		if errors.Is(err, runtime.ErrCannotRun) {
			w.log.Info("container cannot run", "container", c.Name, "err", err)
			return 0 // it has finished: restart (or not) by the policy
		}
		return w.k.cfg.RetryPeriod
	}
	cs.waiting = nil
	if cs.cur != nil && cs.cur.State == runtime.StateRunning {
		w.ensureProbes(pod, c, cs.cur)
	}
	return forever
}

// kill stops the current attempt of a container with grace.
func (w *podWorker) kill(ctx context.Context, cs *ctrState, grace time.Duration) {
	w.stopProbes(cs.name)
	if err := w.k.rt.StopContainer(ctx, cs.cur.ID, grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		w.log.Warn("stopping a container", "container", cs.name, "err", err)
	}
	w.refreshOne(ctx, cs)
}

// containerConfig resolves what the runtime needs to create a container.
func (w *podWorker) containerConfig(pod *corev1.Pod, c *corev1.Container, objs *objects, attempt int) (runtime.ContainerConfig, error) {
	env, err := containerEnv(pod, c, w.sandbox.IP, w.k.cfg.NodeIP, objs)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	mounts, err := containerMounts(c, w.volumes)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	return runtime.ContainerConfig{
		Name: c.Name, Attempt: attempt, Image: c.Image,
		Command: expandAll(c.Command, env), Args: expandAll(c.Args, env), Env: env, WorkingDir: c.WorkingDir,
		Mounts: mounts, Resources: resources(c), Labels: map[string]string{LabelSpecHash: specHash(c)},
	}, nil
}

func resources(c *corev1.Container) runtime.Resources {
	var r runtime.Resources
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		r.CPURequestMilli = q.MilliValue()
	} else if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		r.CPURequestMilli = q.MilliValue() // Kubernetes defaults requests to limits
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		r.CPULimitMilli = q.MilliValue()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		r.MemoryLimitBytes = q.Value()
	}
	return r
}

func pullPolicy(p corev1.PullPolicy) runtime.PullPolicy {
	switch p {
	case corev1.PullAlways:
		return runtime.PullAlways
	case corev1.PullNever:
		return runtime.PullNever
	}
	return runtime.PullIfNotPresent
}

// specHash identifies a container's definition. Probes are left out:
// they do not change what runs.
func specHash(c *corev1.Container) string {
	cc := c.DeepCopy()
	cc.LivenessProbe, cc.ReadinessProbe, cc.StartupProbe = nil, nil, nil
	b, _ := json.Marshal(cc)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
