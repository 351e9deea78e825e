package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
)

// Exec implements Runtime.
func (c *Containerd) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	if len(cmd) == 0 {
		return 0, errors.New("exec: empty command")
	}
	ctr, err := c.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, notFound("container", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("exec in %s: container is not running: %w", id, errdefs.ErrFailedPrecondition)
	} else if err != nil {
		return 0, err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return 0, err
	}
	pspec := *spec.Process
	pspec.Args, pspec.Terminal = cmd, false
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	execID := "exec-" + newID()[:12]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(
		cio.WithStreams(nil, stdout, stderr), cio.WithFIFODir(filepath.Join(c.cfg.StateDir, "fifo"))))
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	// The process record and its FIFOs are removed whatever happens.
	defer proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exitC, err := proc.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, fmt.Errorf("exec in %s: %w: %s", id, ErrCannotRun, startErrorMessage(err))
	}
	var st containerd.ExitStatus
	select {
	case st = <-exitC:
	case <-ctx.Done():
		proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return 0, ctx.Err()
	}
	code, _, err := st.Result()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	// Output still in the FIFOs is copied before returning; a process that
	// left a child holding them open does not keep us waiting long.
	ioDone := make(chan struct{})
	go func() { proc.IO().Wait(); close(ioDone) }()
	select {
	case <-ioDone:
	case <-time.After(2 * time.Second):
	}
	return int(code), nil
}
