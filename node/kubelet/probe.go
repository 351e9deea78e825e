package kubelet

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/node/runtime"
)

// ProbeResult is the outcome of one probe run.
type ProbeResult int

const (
	ProbeSuccess ProbeResult = iota + 1
	ProbeFailure
)

// ProbeTarget is what a probe checks.
type ProbeTarget struct {
	PodIP       string
	ContainerID string
	Container   *corev1.Container
}

// Prober runs one probe once; ctx carries the probe's timeout. The
// message says why a probe failed.
type Prober interface {
	Probe(ctx context.Context, p *corev1.Probe, t ProbeTarget) (ProbeResult, string)
}

// probeState is what the probes of a container's current attempt found.
type probeState struct {
	id        string // container these results are about
	started   bool   // the startup probe succeeded (true without one)
	ready     bool   // the readiness probe succeeded (with none: started)
	killWhy   string // a liveness or startup probe failed: restart it
	hasReady  bool
	startedAt time.Time
}

// containerProbers are the probe goroutines of one container attempt.
type containerProbers struct {
	id     string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type probeKind string

const (
	probeLiveness  probeKind = "Liveness"
	probeReadiness probeKind = "Readiness"
	probeStartup   probeKind = "Startup"
)

// ensureProbes starts the probes of a running container attempt once.
func (w *podWorker) ensureProbes(pod *corev1.Pod, c *corev1.Container, st *runtime.ContainerStatus) {
	if cp := w.probers[c.Name]; cp != nil && cp.id == st.ID {
		return
	}
	w.stopProbes(c.Name)
	ps := &probeState{id: st.ID, started: c.StartupProbe == nil, hasReady: c.ReadinessProbe != nil, startedAt: st.StartedAt}
	ps.ready = ps.started && !ps.hasReady
	if w.adopted {
		// A container adopted after an agent restart keeps the results the
		// API shows for it until its probes say otherwise: readiness does
		// not flap because the agent restarted.
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == c.Name && cs.ContainerID == "containerd://"+st.ID {
				ps.started = ps.started || (cs.Started != nil && *cs.Started)
				ps.ready = ps.ready || (ps.started && cs.Ready)
			}
		}
	}
	w.mu.Lock()
	w.probes[c.Name] = ps
	w.mu.Unlock()
	if c.LivenessProbe == nil && c.ReadinessProbe == nil && c.StartupProbe == nil {
		return
	}
	ctx, cancel := context.WithCancel(w.k.ctx)
	cp := &containerProbers{id: st.ID, cancel: cancel}
	w.probers[c.Name] = cp
	ip := ""
	if w.sandbox != nil {
		ip = w.sandbox.IP
	}
	target := ProbeTarget{PodIP: ip, ContainerID: st.ID, Container: c}
	for kind, p := range map[probeKind]*corev1.Probe{probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe, probeStartup: c.StartupProbe} {
		if p == nil {
			continue
		}
		cp.wg.Add(1)
		go func() {
			defer cp.wg.Done()
			w.probeLoop(ctx, kind, p, target, st.StartedAt)
		}()
	}
}

// stopProbes ends the probes of a container and forgets their results.
func (w *podWorker) stopProbes(name string) {
	if cp := w.probers[name]; cp != nil {
		cp.cancel()
		cp.wg.Wait()
		delete(w.probers, name)
	}
	w.mu.Lock()
	delete(w.probes, name)
	w.mu.Unlock()
}

func (w *podWorker) stopAllProbes() {
	for name := range w.probers {
		w.stopProbes(name)
	}
}

// probeKill says why a running container must be restarted ("" if not).
func (w *podWorker) probeKill(name, id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ps := w.probes[name]; ps != nil && ps.id == id {
		return ps.killWhy
	}
	return ""
}

// probeView returns started and ready for a container attempt.
func (w *podWorker) probeView(name, id string) (started, ready bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ps := w.probes[name]; ps != nil && ps.id == id {
		return ps.started, ps.ready
	}
	return false, false
}

// probeLoop runs one probe of one container attempt with Kubernetes'
// timing: the first run initialDelaySeconds after the container started,
// then every periodSeconds; failureThreshold consecutive failures and
// successThreshold consecutive successes change the result. Liveness and
// readiness wait for the startup probe to succeed.
func (w *podWorker) probeLoop(ctx context.Context, kind probeKind, p *corev1.Probe, t ProbeTarget, startedAt time.Time) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	failureThreshold, successThreshold := max(p.FailureThreshold, 1), max(p.SuccessThreshold, 1)
	sleep := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-tm.C:
			return true
		}
	}
	if !sleep(time.Until(startedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second))) {
		return
	}
	name := t.Container.Name
	var successes, failures int32
	for {
		if kind != probeStartup && !w.probeStarted(name, t.ContainerID) {
			if !sleep(period) {
				return
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		res, msg := w.k.prober.Probe(pctx, p, t)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if res == ProbeSuccess {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		switch {
		case kind == probeStartup && successes >= successThreshold:
			w.setProbe(name, t.ContainerID, func(ps *probeState) { ps.started, ps.ready = true, !ps.hasReady })
			return
		case kind == probeStartup && failures >= failureThreshold:
			w.setProbe(name, t.ContainerID, func(ps *probeState) { ps.killWhy = "startup probe failed: " + msg })
			return
		case kind == probeLiveness && failures >= failureThreshold:
			w.setProbe(name, t.ContainerID, func(ps *probeState) { ps.killWhy = "liveness probe failed: " + msg })
			return
		case kind == probeReadiness && successes >= successThreshold:
			w.setProbe(name, t.ContainerID, func(ps *probeState) { ps.ready = true })
		case kind == probeReadiness && failures >= failureThreshold:
			w.setProbe(name, t.ContainerID, func(ps *probeState) { ps.ready = false })
		}
		if !sleep(period) {
			return
		}
	}
}

func (w *podWorker) probeStarted(name, id string) bool {
	started, _ := w.probeView(name, id)
	return started
}

// setProbe changes a container's probe results and wakes the worker when
// they changed.
func (w *podWorker) setProbe(name, id string, f func(*probeState)) {
	w.mu.Lock()
	ps := w.probes[name]
	changed := false
	if ps != nil && ps.id == id {
		before := *ps
		f(ps)
		changed = before != *ps
	}
	w.mu.Unlock()
	if changed {
		w.poke()
	}
}
