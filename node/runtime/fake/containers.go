package fake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"orch.dev/orch/node/runtime"
)

// Program scripts how a container's process behaves once started. The
// zero Program runs until stopped and exits 0 on SIGTERM, like a web
// server that shuts down cleanly.
type Program struct {
	// Output is written to the container's log when it starts.
	Output string
	// Exit makes the process exit by itself after RunFor (0: at once)
	// with ExitCode, or OOM-killed (137, ReasonOOMKilled) with OOMKilled.
	Exit      bool
	RunFor    time.Duration
	ExitCode  int
	OOMKilled bool
	// CannotRun makes StartContainer fail with ErrCannotRun and this
	// message (a missing executable, say).
	CannotRun string
	// IgnoreSIGTERM makes StopContainer wait the whole grace period and
	// then kill the process (137).
	IgnoreSIGTERM bool
	// TermDelay is how long the process takes to exit after SIGTERM,
	// with TermExitCode; past the grace period it is killed (137).
	TermDelay    time.Duration
	TermExitCode int
}

// SetProgram makes containers with this name (in any pod) behave as p
// from their next start.
func (f *Runtime) SetProgram(container string, p Program) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.programs[container] = p
}

// SetImageProgram makes containers of this image behave as p from their
// next start, unless SetProgram names them.
func (f *Runtime) SetImageProgram(image string, p Program) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imgProgs[mustNormalize(image)] = p
}

// SetProgramFunc chooses the Program of every container that neither
// SetProgram nor SetImageProgram names, at its start, from its pod and
// its config (for example from its environment, as the test images read
// theirs). It is called with the fake's lock held: it must not call the
// fake.
func (f *Runtime) SetProgramFunc(fn func(pod runtime.SandboxConfig, c runtime.ContainerConfig) Program) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.progFunc = fn
}

type container struct {
	st      runtime.ContainerStatus
	pod     runtime.SandboxConfig
	cfg     runtime.ContainerConfig
	prog    Program
	log     []byte
	changed chan struct{} // closed and replaced when the log grows or the process ends
	done    chan struct{} // closed when the process ends
	timer   *time.Timer   // Program.RunFor
}

func (c *container) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// finish marks the process gone for waiters; the caller set the state.
func (c *container) finish() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.notify()
}

func (c *container) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

func (c *container) status() runtime.ContainerStatus {
	st := c.st
	st.Labels = maps.Clone(c.st.Labels)
	return st
}

// CreateContainer implements runtime.Runtime.
func (f *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, err := f.createContainer(sandboxID, cfg)
	f.record(Call{Op: OpCreateContainer, ID: id, Name: cfg.Name, Err: err})
	return id, err
}

func (f *Runtime) createContainer(sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	if err := f.failure(OpCreateContainer); err != nil {
		return "", err
	}
	sb, ok := f.sandboxes[sandboxID]
	if !ok {
		return "", fmt.Errorf("sandbox %s: %w", sandboxID, runtime.ErrNotFound)
	}
	name, err := runtime.NormalizeImageRef(cfg.Image)
	if err != nil {
		return "", fmt.Errorf("%w: %v", runtime.ErrImageNotFound, err)
	}
	img, ok := f.images[name]
	if !ok {
		return "", fmt.Errorf("image %s: %w", name, runtime.ErrImageNotFound)
	}
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, map[string]string{
		runtime.LabelSandbox: sb.ID, runtime.LabelPodUID: sb.Config.UID, runtime.LabelPodName: sb.Config.Name,
		runtime.LabelPodNS: sb.Config.Namespace, runtime.LabelContainer: cfg.Name, runtime.LabelAttempt: strconv.Itoa(cfg.Attempt),
	})
	id := f.newID("c")
	f.containers[id] = &container{
		st: runtime.ContainerStatus{
			ID: id, SandboxID: sb.ID, PodUID: sb.Config.UID, Name: cfg.Name, Attempt: cfg.Attempt,
			Image: name, ImageID: img.ID, Labels: labels, State: runtime.StateCreated, CreatedAt: time.Now().UTC(),
			LogPath: runtime.LogPath("/fake/logs", sb.Config, cfg.Name, cfg.Attempt),
		},
		pod: sb.Config, cfg: cloneConfig(cfg), changed: make(chan struct{}), done: make(chan struct{}),
	}
	f.ctrOrder = append(f.ctrOrder, id)
	return id, nil
}

func (f *Runtime) programFor(c *container) Program {
	if p, ok := f.programs[c.st.Name]; ok {
		return p
	}
	if p, ok := f.imgProgs[c.st.Image]; ok {
		return p
	}
	if f.progFunc != nil {
		return f.progFunc(c.pod, cloneConfig(c.cfg))
	}
	return Program{}
}

func cloneConfig(c runtime.ContainerConfig) runtime.ContainerConfig {
	c.Command, c.Args, c.Env = slices.Clone(c.Command), slices.Clone(c.Args), slices.Clone(c.Env)
	c.Mounts, c.Labels = slices.Clone(c.Mounts), maps.Clone(c.Labels)
	return c
}

// StartContainer implements runtime.Runtime.
func (f *Runtime) StartContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	call := Call{Op: OpStartContainer, ID: id}
	if c != nil {
		call.Name = c.st.Name
	}
	call.Err = f.startContainer(id, c)
	f.record(call)
	return call.Err
}

func (f *Runtime) startContainer(id string, c *container) error {
	if err := f.failure(OpStartContainer); err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	if c.st.State != runtime.StateCreated {
		return fmt.Errorf("container %s was started before: create a new one", id)
	}
	p := f.programFor(c)
	c.prog = p
	now := time.Now().UTC()
	if p.CannotRun != "" {
		c.st.State, c.st.ExitCode, c.st.Reason, c.st.Message = runtime.StateExited, runtime.ExitCodeCannotRun, runtime.ReasonCannotRun, p.CannotRun
		c.st.FinishedAt = now
		c.finish()
		return fmt.Errorf("start container %s: %w: %s", id, runtime.ErrCannotRun, p.CannotRun)
	}
	f.nextPID++
	c.st.State, c.st.PID, c.st.StartedAt = runtime.StateRunning, f.nextPID, now
	if p.Output != "" {
		c.log = append(c.log, p.Output...)
		c.notify()
	}
	if p.Exit {
		code := p.ExitCode
		if p.OOMKilled {
			code = runtime.ExitCodeStopped
		}
		if p.RunFor <= 0 {
			f.exit(c, code, p.OOMKilled)
		} else {
			c.timer = time.AfterFunc(p.RunFor, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				if c.st.State == runtime.StateRunning {
					f.exit(c, code, p.OOMKilled)
				}
			})
		}
	}
	return nil
}

// exit ends a running container's process and sends its events; the
// caller holds f.mu.
func (f *Runtime) exit(c *container, code int, oom bool) {
	c.stopTimer()
	now := time.Now().UTC()
	c.st.State, c.st.ExitCode, c.st.PID, c.st.FinishedAt = runtime.StateExited, code, 0, now
	switch {
	case oom:
		c.st.Reason = runtime.ReasonOOMKilled
	case code == 0:
		c.st.Reason = runtime.ReasonCompleted
	default:
		c.st.Reason = runtime.ReasonError
	}
	c.finish()
	if oom {
		f.broadcast(runtime.Event{Type: runtime.EventOOM, ContainerID: c.st.ID, At: now})
	}
	f.broadcast(runtime.Event{Type: runtime.EventExit, ContainerID: c.st.ID, ExitCode: code, At: now})
}

// Exit makes a running container's process exit now with code, as if it
// had crashed or finished.
func (f *Runtime) Exit(id string, code int) error {
	return f.end(id, code, false)
}

// OOMKill makes the kernel kill a running container for exceeding its
// memory limit.
func (f *Runtime) OOMKill(id string) error {
	return f.end(id, runtime.ExitCodeStopped, true)
}

func (f *Runtime) end(id string, code int, oom bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	if c.st.State != runtime.StateRunning {
		return fmt.Errorf("container %s is %s, not running", id, c.st.State)
	}
	f.exit(c, code, oom)
	return nil
}

// StopContainer implements runtime.Runtime: SIGTERM, then the process's
// Program says how long it takes to exit; past grace it is killed (137).
// The call is recorded when it is made.
func (f *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	c := f.containers[id]
	call := Call{Op: OpStopContainer, ID: id, Grace: grace}
	if c != nil {
		call.Name = c.st.Name
	}
	err := f.failure(OpStopContainer)
	if err == nil && c == nil {
		err = fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	call.Err = err
	f.record(call)
	if err != nil || c.st.State != runtime.StateRunning {
		f.mu.Unlock()
		return err
	}
	wait, code := grace, runtime.ExitCodeStopped
	if !c.prog.IgnoreSIGTERM && c.prog.TermDelay < grace {
		wait, code = c.prog.TermDelay, c.prog.TermExitCode
	}
	if wait <= 0 {
		f.exit(c, code, false)
		f.mu.Unlock()
		return nil
	}
	done := c.done
	f.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done: // exited meanwhile by itself
		return nil
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.st.State == runtime.StateRunning {
		f.exit(c, code, false)
	}
	return nil
}

// RemoveContainer implements runtime.Runtime. A container still running
// is killed first (an exit event is sent, as containerd does).
func (f *Runtime) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	call := Call{Op: OpRemoveContainer, ID: id}
	if c != nil {
		call.Name = c.st.Name
	}
	call.Err = f.failure(OpRemoveContainer)
	f.record(call)
	if call.Err != nil || c == nil {
		return call.Err
	}
	if c.st.State == runtime.StateRunning {
		f.exit(c, runtime.ExitCodeStopped, false)
	}
	c.stopTimer()
	c.finish()
	delete(f.containers, id)
	f.ctrOrder = slices.DeleteFunc(f.ctrOrder, func(s string) bool { return s == id })
	return nil
}

// ContainerStatus implements runtime.Runtime.
func (f *Runtime) ContainerStatus(ctx context.Context, id string) (runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure(OpContainerStatus); err != nil {
		return runtime.ContainerStatus{}, err
	}
	c := f.containers[id]
	if c == nil {
		return runtime.ContainerStatus{}, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return c.status(), nil
}

// ListContainers implements runtime.Runtime. Containers are in creation
// order.
func (f *Runtime) ListContainers(ctx context.Context) ([]runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure(OpListContainers); err != nil {
		return nil, err
	}
	out := make([]runtime.ContainerStatus, 0, len(f.ctrOrder))
	for _, id := range f.ctrOrder {
		out = append(out, f.containers[id].status())
	}
	return out, nil
}
