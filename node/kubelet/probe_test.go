package kubelet

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeSwitch makes the fake runtime's exec answer per probe command.
type probeSwitch struct {
	mu   sync.Mutex
	fail map[string]bool
	runs map[string]int
}

func (p *probeSwitch) set(cmd string, fail bool) {
	p.mu.Lock()
	p.fail[cmd] = fail
	p.mu.Unlock()
}

func (p *probeSwitch) count(cmd string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs[cmd]
}

func newProbeSwitch(h *harness) *probeSwitch {
	ps := &probeSwitch{fail: map[string]bool{}, runs: map[string]int{}}
	h.rt.setExec(func(cmd []string) int {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		ps.runs[cmd[0]]++
		if ps.fail[cmd[0]] {
			return 1
		}
		return 0
	})
	return ps
}

func execProbe(cmd string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
		PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: 1, TimeoutSeconds: 1}
}

// The readiness probe decides Ready: not before it first succeeds, false
// after failureThreshold consecutive failures (exactly then), true again
// after a success. The container is never restarted for it.
func TestReadinessProbe(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		ps := newProbeSwitch(h)
		ps.set("ready", true)
		p := pod("web", "app")
		p.Spec.Containers[0].ReadinessProbe = execProbe("ready", 5, 3)
		p.Spec.Containers[0].ReadinessProbe.InitialDelaySeconds = 2
		h.cl.create(p)
		h.start()
		time.Sleep(time.Minute)
		settle()
		if h.ready("web") || h.status("web").Phase != corev1.PodRunning {
			t.Fatal("Ready while the readiness probe fails")
		}
		ps.set("ready", false)
		h.waitFor(10*time.Second, "Ready", func() bool { return h.ready("web") })

		ps.set("ready", true)
		failedAt := time.Now()
		h.waitFor(time.Minute, "not Ready", func() bool { return !h.ready("web") })
		// Probes run at 2s, 7s, 12s... after the start: the third failure
		// comes 10-15 s after the switch.
		if d := time.Since(failedAt); d < 10*time.Second || d > 15*time.Second {
			t.Fatalf("not Ready %v after the probe started failing, want 3 periods of 5s", d)
		}
		ps.set("ready", false)
		h.waitFor(10*time.Second, "Ready again", func() bool { return h.ready("web") })
		if cs := h.ctrStatus("web", "app"); cs.RestartCount != 0 {
			t.Fatalf("readiness failures restarted the container: %+v", cs)
		}
		if ps.count("ready") < 15 {
			t.Fatalf("the readiness probe ran %d times in ~90 s at a 5 s period", ps.count("ready"))
		}
	})
}

// failureThreshold liveness failures restart the container (SIGTERM with
// the pod's grace), as the restart policy allows; with Never it stays
// down and the pod fails.
func TestLivenessProbe(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		ps := newProbeSwitch(h)
		p := pod("web", "app")
		p.Spec.TerminationGracePeriodSeconds = ptr[int64](7)
		p.Spec.Containers[0].LivenessProbe = execProbe("alive", 10, 3)
		h.cl.create(p)
		h.start()
		h.waitFor(time.Second, "Ready", func() bool { return h.ready("web") })
		time.Sleep(time.Minute)
		settle()
		if len(h.rt.stops()) != 0 {
			t.Fatal("a healthy container was stopped")
		}
		ps.set("alive", true)
		failedAt := time.Now()
		h.waitFor(time.Minute, "a restart", func() bool { return h.ctrStatus("web", "app").RestartCount == 1 })
		if d := time.Since(failedAt); d < 20*time.Second || d > 30*time.Second {
			t.Fatalf("restarted %v after the probe started failing, want after the third failure (20-30 s)", d)
		}
		if s := h.rt.stops(); len(s) != 1 || s[0].Grace != 7*time.Second {
			t.Fatalf("stops %+v, want one with the pod's 7s grace", s)
		}
		ps.set("alive", false)
		time.Sleep(5 * time.Minute)
		settle()
		if cs := h.ctrStatus("web", "app"); cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated == nil {
			t.Fatalf("after recovery: %+v", cs)
		}
	})

	t.Run("restartPolicy Never", func(t *testing.T) {
		run(t, func(t *testing.T, h *harness) {
			ps := newProbeSwitch(h)
			ps.set("alive", true)
			p := pod("web", "app")
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
			p.Spec.Containers[0].LivenessProbe = execProbe("alive", 1, 1)
			h.cl.create(p)
			h.start()
			h.waitFor(time.Minute, "pod Failed", func() bool { return h.status("web").Phase == corev1.PodFailed })
			time.Sleep(time.Minute)
			settle()
			if n := len(h.rt.Calls("start")); n != 1 {
				t.Fatalf("%d starts with restartPolicy Never", n)
			}
		})
	})
}

// Liveness and readiness wait for the startup probe; a startup probe that
// never succeeds restarts the container after failureThreshold periods.
func TestStartupProbe(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		ps := newProbeSwitch(h)
		ps.set("started", true)
		ps.set("alive", true) // would restart at once if it ran
		p := pod("slow", "app")
		c := &p.Spec.Containers[0]
		c.StartupProbe = execProbe("started", 2, 10)
		c.LivenessProbe = execProbe("alive", 1, 1)
		c.ReadinessProbe = execProbe("ready", 1, 1)
		h.cl.create(p)
		h.start()
		time.Sleep(15 * time.Second)
		settle()
		cs := h.ctrStatus("slow", "app")
		if ps.count("alive") != 0 || ps.count("ready") != 0 || cs.Started == nil || *cs.Started || cs.Ready {
			t.Fatalf("before startup: liveness ran %d, readiness %d times; status %+v", ps.count("alive"), ps.count("ready"), cs)
		}
		// Ten failures, two seconds apart: restarted 18-20 s after start.
		h.waitFor(10*time.Second, "a restart", func() bool { return h.ctrStatus("slow", "app").RestartCount == 1 })
		// Ten probes of the first attempt, and the new attempt's first,
		// which runs as it starts.
		if n := ps.count("started"); n != 11 {
			t.Fatalf("%d startup probes when restarted, want 10+1", n)
		}
		ps.set("started", false)
		ps.set("alive", false)
		h.waitFor(10*time.Second, "Ready", func() bool { return h.ready("slow") })
		if cs := h.ctrStatus("slow", "app"); cs.Started == nil || !*cs.Started || cs.RestartCount != 1 {
			t.Fatalf("after startup: %+v", cs)
		}
	})
}

// The real prober: httpGet (status 200-399, named ports, headers) and
// tcpSocket against a local server, and exec through the runtime.
func TestRealProber(t *testing.T) {
	var mu sync.Mutex
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/healthz" || r.Header.Get("X-Check") != "yes" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)
	ctr := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	target := ProbeTarget{PodIP: host, Container: ctr, ContainerID: "c1"}
	pr := NewProber(newTestRuntime())
	httpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "healthz", Port: intstr.FromString("http"),
		HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Check", Value: "yes"}}}}}
	ctx := context.Background()
	for _, tc := range []struct {
		code int
		want ProbeResult
	}{{200, ProbeSuccess}, {302, ProbeSuccess}, {500, ProbeFailure}, {404, ProbeFailure}} {
		mu.Lock()
		code = tc.code
		mu.Unlock()
		if got, msg := pr.Probe(ctx, httpProbe, target); got != tc.want {
			t.Errorf("httpGet answered %d: %v (%s), want %v", tc.code, got, msg, tc.want)
		}
	}
	tcp := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}}
	if got, msg := pr.Probe(ctx, tcp, target); got != ProbeSuccess {
		t.Errorf("tcpSocket to a listening port: %v %s", got, msg)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tcp.TCPSocket.Port = intstr.FromInt32(int32(closed))
	if got, _ := pr.Probe(ctx, tcp, ProbeTarget{PodIP: "127.0.0.1", Container: ctr}); got != ProbeFailure {
		t.Errorf("tcpSocket to a closed port succeeded")
	}
	bad := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("nope")}}}
	if got, msg := pr.Probe(ctx, bad, target); got != ProbeFailure || !strings.Contains(msg, "no port of that name") {
		t.Errorf("unknown named port: %v %q", got, msg)
	}
	exec := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	if got, msg := pr.Probe(ctx, exec, target); got != ProbeFailure || !strings.Contains(msg, "not found") {
		t.Errorf("exec in a container that does not run: %v %q", got, msg)
	}
}
