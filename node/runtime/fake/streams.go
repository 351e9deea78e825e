package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"orch.dev/orch/node/runtime"
)

// WriteLog appends s to a container's log, as its process writing to
// stdout or stderr would.
func (f *Runtime) WriteLog(id, s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	c.log = append(c.log, s...)
	c.notify()
	return nil
}

// Logs implements runtime.Runtime with the containerd runtime's semantics:
// TailLines counts the lines before the final newline, LimitBytes stops
// the output, Follow streams until the container has exited.
func (f *Runtime) Logs(ctx context.Context, id string, opts runtime.LogOptions, w io.Writer) error {
	f.mu.Lock()
	c := f.containers[id]
	err := f.failure(OpLogs)
	if err == nil && c == nil {
		err = fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	f.record(Call{Op: OpLogs, ID: id, Err: err})
	if err != nil {
		f.mu.Unlock()
		return err
	}
	pos := 0
	if opts.TailLines > 0 {
		pos = len(c.log) - len(tail(c.log, opts.TailLines))
	}
	left := opts.LimitBytes
	for {
		// Bytes below len(c.log) are never rewritten, so the chunk can be
		// written without the lock.
		chunk := c.log[pos:]
		running := c.st.State == runtime.StateRunning
		changed := c.changed
		f.mu.Unlock()
		pos += len(chunk)
		if opts.LimitBytes > 0 && int64(len(chunk)) >= left {
			_, err := w.Write(chunk[:left])
			return err
		}
		left -= int64(len(chunk))
		if len(chunk) > 0 {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		if !opts.Follow || !running {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
	}
}

// tail returns the last n lines of b; a final newline ends the last line.
func tail(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	seen := 0
	for i := end; i > 0; {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			break
		}
		if seen++; seen == n {
			return b[j+1:]
		}
		i = j
	}
	return b
}

// ExecFunc answers Exec (and so exec probes): it gets the container's
// status and the command, may write output, and returns the exit code, or
// an error when the command cannot run (wrap runtime.ErrCannotRun).
type ExecFunc func(ctx context.Context, c runtime.ContainerStatus, cmd []string, stdout, stderr io.Writer) (int, error)

// SetExec sets what Exec does; without it every command exits 0 silently.
func (f *Runtime) SetExec(fn ExecFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exec = fn
}

// Exec implements runtime.Runtime through the ExecFunc set with SetExec.
func (f *Runtime) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	f.mu.Lock()
	c := f.containers[id]
	err := f.failure(OpExec)
	switch {
	case err != nil:
	case len(cmd) == 0:
		err = fmt.Errorf("exec: empty command")
	case c == nil:
		err = fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	case c.st.State != runtime.StateRunning:
		err = fmt.Errorf("exec in %s: container is not running", id)
	}
	f.record(Call{Op: OpExec, ID: id, Cmd: slices.Clone(cmd), Err: err})
	fn := f.exec
	var st runtime.ContainerStatus
	if c != nil {
		st = c.status()
	}
	f.mu.Unlock()
	if err != nil || fn == nil {
		return 0, err
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return fn(ctx, st, slices.Clone(cmd), stdout, stderr)
}

type subscriber struct {
	ch   chan runtime.Event
	gone chan struct{} // closed when unsubscribed
	lost bool          // an event was dropped: send EventResync when there is room
}

// Events implements runtime.Runtime. The channel closes when ctx ends or
// the fake is closed; in a synctest bubble, end ctx before the test does.
func (f *Runtime) Events(ctx context.Context) <-chan runtime.Event {
	s := &subscriber{ch: make(chan runtime.Event, 1024), gone: make(chan struct{})}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			f.mu.Lock()
			f.unsubscribe(s)
			f.mu.Unlock()
		case <-s.gone:
		}
	}()
	return s.ch
}

// unsubscribe closes a subscription; the caller holds f.mu.
func (f *Runtime) unsubscribe(s *subscriber) {
	if _, ok := f.subs[s]; ok {
		delete(f.subs, s)
		close(s.ch)
		close(s.gone)
	}
}

// broadcast sends e to every subscriber without blocking; the caller holds
// f.mu. A subscriber too slow to take it gets EventResync later, as from
// the containerd runtime.
func (f *Runtime) broadcast(e runtime.Event) {
	for s := range f.subs {
		if s.lost {
			select {
			case s.ch <- runtime.Event{Type: runtime.EventResync, At: e.At}:
				s.lost = false
			default:
				continue
			}
		}
		select {
		case s.ch <- e:
		default:
			s.lost = true
		}
	}
}

// Resync sends EventResync to every subscriber, as the containerd runtime
// does after its event stream broke and may have lost events.
func (f *Runtime) Resync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broadcast(runtime.Event{Type: runtime.EventResync, At: time.Now()})
}

// Close implements runtime.Runtime: it ends every Events channel. The
// state stays, as containers keep running when an agent stops; the fake
// can be used again (an agent restart).
func (f *Runtime) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		f.unsubscribe(s)
	}
	return nil
}
