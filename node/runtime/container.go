package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Labels the runtime keeps for itself on containers: how a container ended
// is written to its labels before its task is deleted, so status survives
// the task (and its shim process) being gone, and agent restarts.
const (
	internalPrefix = "orch.dev/runtime."
	lLogPath       = internalPrefix + "log-path"
	lImageID       = internalPrefix + "image-id"
	lStartedAt     = internalPrefix + "started-at"
	lFinishedAt    = internalPrefix + "finished-at"
	lExitCode      = internalPrefix + "exit-code"
	lOOM           = internalPrefix + "oom-killed"
	lStartError    = internalPrefix + "start-error"
)

func (c *Containerd) cgroupPath(id string) string { return "/" + c.cfg.Namespace + "/" + id }

// LogPath is where a container attempt's log is written:
// LogDir/<namespace>_<pod>_<uid>/<container>/<attempt>.log, as kubelet lays
// them out.
func LogPath(logDir string, sb SandboxConfig, container string, attempt int) string {
	return filepath.Join(logDir, sb.Namespace+"_"+sb.Name+"_"+sb.UID, container, strconv.Itoa(attempt)+".log")
}

// processArgs applies Kubernetes' command/args rules to the image's
// entrypoint and cmd.
func processArgs(entrypoint, cmd, command, args []string) []string {
	switch {
	case len(command) > 0:
		return append(append([]string{}, command...), args...)
	case len(args) > 0:
		return append(append([]string{}, entrypoint...), args...)
	default:
		return append(append([]string{}, entrypoint...), cmd...)
	}
}

// CreateContainer implements Runtime.
func (c *Containerd) CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error) {
	sb, err := c.loadSandbox(sandboxID)
	if err != nil {
		return "", err
	}
	name, err := NormalizeImageRef(cfg.Image)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrImageNotFound, err)
	}
	img, err := c.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return "", fmt.Errorf("image %s: %w", name, ErrImageNotFound)
	} else if err != nil {
		return "", err
	}
	ispec, err := img.Spec(ctx)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	imgCfg, err := img.Config(ctx)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	argv := processArgs(ispec.Config.Entrypoint, ispec.Config.Cmd, cfg.Command, cfg.Args)
	if len(argv) == 0 {
		return "", fmt.Errorf("container %s: no command: the image has no entrypoint or cmd: %w", cfg.Name, ErrCannotRun)
	}

	id := newID()
	logPath := LogPath(c.cfg.LogDir, sb.Config, cfg.Name, cfg.Attempt)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return "", err
	}
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, map[string]string{
		LabelSandbox: sb.ID, LabelPodUID: sb.Config.UID, LabelPodName: sb.Config.Name, LabelPodNS: sb.Config.Namespace,
		LabelContainer: cfg.Name, LabelAttempt: strconv.Itoa(cfg.Attempt),
		lLogPath: logPath, lImageID: imgCfg.Digest.String(),
	})

	sbDir := c.sandboxDir(sb.ID)
	mounts := []specs.Mount{
		// The container's own cgroups, read-only, as Docker and CRI mount
		// them: runtimes (JVM, GOMAXPROCS, automemlimit) size themselves
		// from these files.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		bindMount(filepath.Join(sbDir, "hostname"), "/etc/hostname", false),
		bindMount(filepath.Join(sbDir, "hosts"), "/etc/hosts", false),
		bindMount(filepath.Join(sbDir, "resolv.conf"), "/etc/resolv.conf", false),
	}
	for _, m := range cfg.Mounts {
		if !filepath.IsAbs(m.ContainerPath) {
			return "", fmt.Errorf("mount %q: container path must be absolute", m.ContainerPath)
		}
		if _, err := os.Stat(m.HostPath); err != nil {
			return "", fmt.Errorf("mount %q: %w", m.ContainerPath, err)
		}
		mounts = append(mounts, bindMount(m.HostPath, m.ContainerPath, m.ReadOnly))
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(argv...),
		oci.WithEnv(cfg.Env),
		oci.WithHostname(sb.Config.Hostname),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNS}),
		oci.WithMounts(mounts),
		oci.WithCgroup(c.cgroupPath(id)),
	}
	if cfg.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	opts = append(opts, resourceOpts(cfg.Resources)...)
	var runcOpts any
	if c.cfg.RuncRoot != "" {
		runcOpts = &runcoptions.Options{Root: c.cfg.RuncRoot}
	}
	if err := c.createGate.enter(ctx); err != nil {
		return "", err
	}
	defer c.createGate.leave()
	_, err = c.client.NewContainer(ctx, id,
		containerd.WithRuntime("io.containerd.runc.v2", runcOpts),
		containerd.WithImage(img),
		containerd.WithSnapshotter(c.cfg.Snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(opts...),
	)
	if err != nil {
		// NewContainer leaves the snapshot behind when the spec fails.
		c.client.SnapshotService(c.cfg.Snapshotter).Remove(context.WithoutCancel(ctx), id)
		return "", fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	return id, nil
}

func bindMount(src, dst string, ro bool) specs.Mount {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "rprivate", mode}}
}

// swapLimitable reports whether the kernel accounts swap per cgroup (v1
// memory.memsw.*, v2 memory.swap.max); runc refuses a swap limit otherwise.
var swapLimitable = sync.OnceValue(func() bool {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		return true
	}
	m, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
	return len(m) > 0
})

func resourceOpts(r Resources) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if r.CPURequestMilli > 0 {
		opts = append(opts, oci.WithCPUShares(uint64(max(2, r.CPURequestMilli*1024/1000))))
	}
	if r.CPULimitMilli > 0 {
		const period = 100_000 // µs
		opts = append(opts, oci.WithCPUCFS(max(1000, r.CPULimitMilli*period/1000), period))
	}
	if r.MemoryLimitBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(r.MemoryLimitBytes)))
		if swapLimitable() {
			// Memory plus swap capped at the memory limit: no swap, as
			// kubelet does, so exceeding the limit is an OOM kill and not
			// a slow crawl through swap.
			opts = append(opts, oci.WithMemorySwap(r.MemoryLimitBytes))
		}
	}
	return opts
}

// StartContainer implements Runtime.
func (c *Containerd) StartContainer(ctx context.Context, id string) error {
	ctx = c.withClientLog(ctx)
	unlock := c.locks.lock(id)
	defer unlock()
	ctr, err := c.client.LoadContainer(ctx, id)
	if err != nil {
		return notFound("container", id, err)
	}
	// LoadContainer has just read the record: no second round trip.
	info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return err
	}
	labels := info.Labels
	if _, ran := labels[lExitCode]; ran || labels[lStartError] != "" || labels[lStartedAt] != "" {
		return fmt.Errorf("container %s was started before: create a new one: %w", id, errdefs.ErrFailedPrecondition)
	}
	logPath := labels[lLogPath]
	if err := touch(logPath); err != nil {
		return err
	}
	if err := c.startGate.enter(ctx); err != nil {
		return err
	}
	// Creating and starting the task is not cut short by ctx: a start
	// interrupted half-way can leave a process nobody records.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	started := time.Now().UTC()
	task, err := ctr.NewTask(sctx, logFileIO(logPath))
	if err == nil {
		if err = task.Start(sctx); err != nil {
			task.Delete(sctx)
		}
	}
	c.startGate.leave()
	if err != nil {
		if errdefs.IsUnavailable(err) || errdefs.IsNotFound(err) || errdefs.IsAlreadyExists(err) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("start container %s: %w", id, err) // containerd's trouble (or ours), not the container's
		}
		msg := startErrorMessage(err)
		c.setLabels(sctx, id, map[string]string{
			lStartError: msg, lFinishedAt: time.Now().UTC().Format(time.RFC3339Nano),
		})
		return fmt.Errorf("start container %s: %w: %s", id, ErrCannotRun, msg)
	}
	return c.setLabels(sctx, id, map[string]string{lStartedAt: started.Format(time.RFC3339Nano)})
}

// logFileIO has the shim append the task's stdout and stderr to the
// existing file at path, each through its own descriptor: stderr is named
// by a second spelling of the same path. With one spelling (cio.LogFile)
// containerd 1.6's shim shares one descriptor between both copiers and the
// stdout copier closes it at exit, losing stderr written just before exit:
// the last words of a crashing process.
func logFileIO(path string) cio.Creator {
	return func(string) (cio.IO, error) {
		return fileIO{cio.Config{Stdout: path, Stderr: filepath.Dir(path) + "/./" + filepath.Base(path)}}, nil
	}
}

// fileIO is a task's IO that the shim does alone: nothing to copy or close here.
type fileIO struct{ cfg cio.Config }

func (f fileIO) Config() cio.Config { return f.cfg }
func (fileIO) Cancel()              {}
func (fileIO) Wait()                {}
func (fileIO) Close() error         { return nil }

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// startErrorMessage keeps the useful end of runc's error chain, e.g.
// `exec: "/nope": stat /nope: no such file or directory`.
func startErrorMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "unable to start container process: "); i >= 0 {
		msg = msg[i+len("unable to start container process: "):]
	}
	return strings.TrimSuffix(msg, ": unknown")
}

func (c *Containerd) setLabels(ctx context.Context, id string, labels map[string]string) error {
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	_, err := c.client.ContainerService().Update(ctx, containers.Container{ID: id, Labels: labels}, paths...)
	return err
}

func notFound(kind, id string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	return err
}

// StopContainer implements Runtime.
func (c *Containerd) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	ctx = c.withClientLog(ctx)
	ctr, err := c.client.LoadContainer(ctx, id)
	if err != nil {
		return notFound("container", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil // never started, or already finished
	} else if err != nil {
		return err
	}
	exitC, err := task.Wait(ctx)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: SIGTERM: %w", id, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	var st containerd.ExitStatus
	select {
	case st = <-exitC:
	case <-timer.C:
		if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop %s: SIGKILL: %w", id, err)
		}
		select {
		case st = <-exitC:
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	code, at, err := st.Result()
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return c.finalize(ctx, id, code, at)
}

// finalize records how a container's main process ended and deletes its
// task, which ends its shim. It is idempotent; the monitor and
// StopContainer both call it.
func (c *Containerd) finalize(ctx context.Context, id string, code uint32, at time.Time) error {
	unlock := c.locks.lock(id)
	defer unlock()
	info, err := c.client.ContainerService().Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if _, done := info.Labels[lExitCode]; !done {
		labels := map[string]string{lExitCode: strconv.Itoa(int(code)), lFinishedAt: at.UTC().Format(time.RFC3339Nano)}
		if c.mon.takeOOM(id) || cgroupOOMKills(c.cgroupPath(id)) > 0 {
			labels[lOOM] = "true"
		}
		if err := c.setLabels(ctx, id, labels); err != nil {
			return err
		}
	}
	_, err = c.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task %s: %w", id, err)
	}
	c.mon.exited(id)
	return nil
}

// RemoveContainer implements Runtime.
func (c *Containerd) RemoveContainer(ctx context.Context, id string) error {
	ctx = c.withClientLog(ctx)
	unlock := c.locks.lock(id)
	defer unlock()
	ctr, err := c.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	c.mon.forget(id)
	if p := labels[lLogPath]; p != "" {
		os.Remove(p)
		os.Remove(filepath.Dir(p)) // only when empty: other attempts keep it
	}
	return nil
}
