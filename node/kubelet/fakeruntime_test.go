package kubelet

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
)

// testRuntime is the runtime fake (package fake) with what these tests
// add: each container's "process" behaves as its environment says, like
// the crasher test image,
//
//	RUN_FOR=5s      exit after 5 s (default: run until stopped)
//	EXIT_CODE=3     the exit code then (default 0)
//	IGNORE_TERM=1   SIGTERM does nothing: StopContainer waits the whole grace
//
// (a process exits 143 on SIGTERM otherwise), a command starting with
// /nope cannot be started, and the configuration each container was
// created with is kept for the tests to check.
type testRuntime struct {
	*fake.Runtime
	mu   sync.Mutex
	cfgs map[string]runtime.ContainerConfig
	pods map[string]string // container ID -> pod name
	// override, when set, may replace the program of an attempt.
	override func(cfg runtime.ContainerConfig) *fake.Program
}

func newTestRuntime(images ...string) *testRuntime {
	return &testRuntime{Runtime: fake.New(fake.Options{Images: images}), cfgs: map[string]runtime.ContainerConfig{}, pods: map[string]string{}}
}

func (r *testRuntime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	id, err := r.Runtime.CreateContainer(ctx, sandboxID, cfg)
	if err == nil {
		pod := ""
		sbs, _ := r.Runtime.ListSandboxes(ctx)
		for _, sb := range sbs {
			if sb.ID == sandboxID {
				pod = sb.Config.Name
			}
		}
		r.mu.Lock()
		r.cfgs[id], r.pods[id] = cfg, pod
		r.mu.Unlock()
	}
	return id, err
}

// StartContainer gives the fake the program of this container before it
// starts (the fake's programs are per container name).
func (r *testRuntime) StartContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg, ok := r.cfgs[id]; ok {
		p := programOf(cfg)
		if r.override != nil {
			if o := r.override(cfg); o != nil {
				p = *o
			}
		}
		r.Runtime.SetProgram(cfg.Name, p)
	}
	return r.Runtime.StartContainer(ctx, id)
}

func programOf(cfg runtime.ContainerConfig) fake.Program {
	env := map[string]string{}
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	p := fake.Program{TermExitCode: runtime.ExitCodeTerminated, IgnoreSIGTERM: env["IGNORE_TERM"] == "1"}
	if d, err := time.ParseDuration(env["RUN_FOR"]); err == nil {
		p.Exit, p.RunFor = true, d
		fmt.Sscan(env["EXIT_CODE"], &p.ExitCode)
	}
	if len(cfg.Command) > 0 && strings.HasPrefix(cfg.Command[0], "/nope") {
		p.CannotRun = fmt.Sprintf("exec: %q: stat %s: no such file or directory", cfg.Command[0], cfg.Command[0])
	}
	return p
}

// Calls lists the calls that change something, as "start app 2" (verb,
// container, attempt), "create web app 0" (with the pod), "stop app 0 7s",
// "remove app 0", "sandbox web", "rmsandbox sb1" and "pull ref", filtered
// by prefix.
func (r *testRuntime) Calls(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.Runtime.Calls() {
		cfg := r.cfgs[c.ID]
		var s string
		switch c.Op {
		case fake.OpStartContainer:
			s = fmt.Sprintf("start %s %d", cfg.Name, cfg.Attempt)
		case fake.OpCreateContainer:
			if c.Err != nil {
				continue
			}
			s = fmt.Sprintf("create %s %s %d", r.pods[c.ID], cfg.Name, cfg.Attempt)
		case fake.OpStopContainer:
			s = fmt.Sprintf("stop %s %d %s", cfg.Name, cfg.Attempt, c.Grace)
		case fake.OpRemoveContainer:
			s = fmt.Sprintf("remove %s %d", cfg.Name, cfg.Attempt)
		case fake.OpCreateSandbox:
			s = "sandbox " + c.Name
		case fake.OpRemoveSandbox:
			if c.Err != nil {
				continue
			}
			s = "rmsandbox " + c.ID
		case fake.OpEnsureImage:
			s = "pull " + c.Name
		default:
			continue
		}
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// startTimes returns when each attempt of a container was started,
// relative to t0.
func (r *testRuntime) startTimes(name string, t0 time.Time) []time.Duration {
	var out []time.Duration
	for _, c := range r.Runtime.Calls(fake.OpStartContainer) {
		if c.Name == name {
			out = append(out, c.At.Sub(t0).Round(time.Second))
		}
	}
	return out
}

func (r *testRuntime) stops() []fake.Call { return r.Runtime.Calls(fake.OpStopContainer) }

// running returns the running containers by "pod/container".
func (r *testRuntime) running() map[string]runtime.ContainerStatus {
	cs, _ := r.Runtime.ListContainers(context.Background())
	out := map[string]runtime.ContainerStatus{}
	for _, c := range cs {
		if c.State == runtime.StateRunning {
			out[c.Labels[runtime.LabelPodName]+"/"+c.Name] = c
		}
	}
	return out
}

func (r *testRuntime) config(id string) runtime.ContainerConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfgs[id]
}

// setExec answers exec (and exec probes) with the exit code f returns.
func (r *testRuntime) setExec(f func(cmd []string) int) {
	r.Runtime.SetExec(func(_ context.Context, _ runtime.ContainerStatus, cmd []string, _, _ io.Writer) (int, error) {
		return f(cmd), nil
	})
}
