package runtime

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// ContainerStatus implements Runtime.
func (c *Containerd) ContainerStatus(ctx context.Context, id string) (ContainerStatus, error) {
	info, err := c.client.ContainerService().Get(ctx, id)
	if err != nil {
		return ContainerStatus{}, notFound("container", id, err)
	}
	var proc *tasktypes.Process
	if _, done := info.Labels[lExitCode]; !done {
		r, err := c.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
		if err = errgrpc.ToNative(err); err == nil {
			proc = r.Process
		} else if !errdefs.IsNotFound(err) {
			return ContainerStatus{}, err
		}
	}
	return c.status(info, proc), nil
}

// ListContainers implements Runtime.
func (c *Containerd) ListContainers(ctx context.Context) ([]ContainerStatus, error) {
	infos, err := c.client.ContainerService().List(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	procs := make(map[string]*tasktypes.Process, len(r.Tasks))
	for _, p := range r.Tasks {
		procs[p.ID] = p
	}
	out := make([]ContainerStatus, 0, len(infos))
	for _, info := range infos {
		out = append(out, c.status(info, procs[info.ID]))
	}
	return out, nil
}

func (c *Containerd) status(info containers.Container, proc *tasktypes.Process) ContainerStatus {
	l := info.Labels
	s := ContainerStatus{
		ID: info.ID, SandboxID: l[LabelSandbox], PodUID: l[LabelPodUID], Name: l[LabelContainer],
		Image: info.Image, ImageID: l[lImageID], LogPath: l[lLogPath], CreatedAt: info.CreatedAt,
		StartedAt: parseTime(l[lStartedAt]), FinishedAt: parseTime(l[lFinishedAt]),
		State: StateCreated, Labels: make(map[string]string, len(l)),
	}
	s.Attempt, _ = strconv.Atoi(l[LabelAttempt])
	for k, v := range l {
		if !strings.HasPrefix(k, internalPrefix) {
			s.Labels[k] = v
		}
	}
	exited := func(code int, oom bool) {
		s.State, s.ExitCode = StateExited, code
		switch {
		case oom:
			s.Reason = ReasonOOMKilled
		case code == 0:
			s.Reason = ReasonCompleted
		default:
			s.Reason = ReasonError
		}
	}
	switch {
	case l[lExitCode] != "":
		code, _ := strconv.Atoi(l[lExitCode])
		exited(code, l[lOOM] == "true")
	case l[lStartError] != "":
		s.State, s.ExitCode, s.Reason, s.Message = StateExited, ExitCodeCannotRun, ReasonCannotRun, l[lStartError]
	case proc == nil:
		// Created, or started and its task deleted without a record:
		// containerd restarted and lost it, or the machine rebooted.
		if !s.StartedAt.IsZero() {
			s.State, s.Reason = StateUnknown, ReasonTaskLost
		}
	case proc.Status == tasktypes.Status_RUNNING || proc.Status == tasktypes.Status_PAUSED || proc.Status == tasktypes.Status_PAUSING:
		s.State, s.PID = StateRunning, proc.Pid
	case proc.Status == tasktypes.Status_STOPPED:
		// Exited, not yet recorded by the monitor.
		exited(int(proc.ExitStatus), cgroupOOMKills("/"+c.cfg.Namespace+"/"+info.ID) > 0)
		if proc.ExitedAt != nil {
			s.FinishedAt = proc.ExitedAt.AsTime()
		}
	case proc.Status == tasktypes.Status_CREATED:
		s.State = StateCreated
	default:
		s.State = StateUnknown
	}
	return s
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// cgroupOOMKills reads the kernel's OOM kill count of a container's memory
// cgroup (v1 memory.oom_control or v2 memory.events); 0 when unreadable.
func cgroupOOMKills(cgPath string) int {
	for _, f := range []string{"/sys/fs/cgroup/memory" + cgPath + "/memory.oom_control", "/sys/fs/cgroup" + cgPath + "/memory.events"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
	}
	return 0
}
