package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
)

// Exec implements Runtime.
func (c *Containerd) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	ctx = c.withClientLog(ctx)
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
	// Two goroutines copy the streams; one lock lets stdout and stderr be
	// the same writer, and nothing is written after Exec returns.
	streams := &lockedStreams{}
	defer streams.close()
	execID := "exec-" + newID()[:12]
	// Creating and starting the process is not cut short by ctx: a start
	// interrupted half-way leaves a process the shim does not know, which
	// nothing can kill. ctx is honoured before and after.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	proc, err := task.Exec(sctx, execID, &pspec, cio.NewCreator(
		cio.WithStreams(nil, streams.writer(stdout), streams.writer(stderr)), cio.WithFIFODir(filepath.Join(c.cfg.StateDir, "fifo"))))
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	wctx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	// The process record and its FIFOs are removed whatever happens; a
	// process still running is killed first.
	defer proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exitC, err := proc.Wait(wctx)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := proc.Start(sctx); err != nil {
		return 0, fmt.Errorf("exec in %s: %w: %s", id, ErrCannotRun, startErrorMessage(err))
	}
	var st containerd.ExitStatus
	select {
	case st = <-exitC:
	case <-ctx.Done():
		// The deferred Delete kills it and waits for it to be gone.
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

// lockedStreams serialises the writes of an exec's output copiers and
// drops those that come after close.
type lockedStreams struct {
	mu     sync.Mutex
	closed bool
}

func (l *lockedStreams) writer(w io.Writer) io.Writer {
	if w == nil {
		w = io.Discard
	}
	return &lockedWriter{l: l, w: w}
}

func (l *lockedStreams) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

type lockedWriter struct {
	l *lockedStreams
	w io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.l.mu.Lock()
	defer lw.l.mu.Unlock()
	if lw.l.closed {
		return len(p), nil
	}
	return lw.w.Write(p)
}
