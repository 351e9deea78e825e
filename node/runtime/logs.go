package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Logs implements Runtime. With Follow it returns once the container has
// exited and its log is written out, or when ctx ends.
func (c *Containerd) Logs(ctx context.Context, id string, opts LogOptions, w io.Writer) error {
	var exited <-chan struct{}
	if opts.Follow {
		ch, stop := c.mon.waitExit(id)
		defer stop()
		exited = ch
	}
	st, err := c.ContainerStatus(ctx, id)
	if err != nil {
		return err
	}
	if st.State != StateRunning {
		done := make(chan struct{})
		close(done)
		exited = done
	}
	return ReadLog(ctx, st.LogPath, opts, w, exited)
}

// ReadLog writes the log file at path to w as opts say. With opts.Follow it
// keeps writing what is appended until exited is closed (then writes the
// rest and returns) or ctx ends. A log that does not exist yet reads as
// empty.
func ReadLog(ctx context.Context, path string, opts LogOptions, w io.Writer, exited <-chan struct{}) error {
	if opts.LimitBytes > 0 {
		w = &limitWriter{w: w, n: opts.LimitBytes}
	}
	err := readLog(ctx, path, opts, w, exited)
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

func readLog(ctx context.Context, path string, opts LogOptions, w io.Writer, exited <-chan struct{}) error {
	var changed <-chan struct{}
	if opts.Follow {
		ch, stop, err := watchFile(path)
		if err != nil {
			return err
		}
		defer stop()
		changed = ch
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) && !opts.Follow {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if opts.TailLines > 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !opts.Follow {
			return nil
		}
		select {
		case <-changed:
		case <-exited:
			// The writer is gone; what it wrote is in the file.
			_, err := io.Copy(w, f)
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchFile reports changes of a file through inotify, plus a tick every
// second in case an event is missed.
func watchFile(path string) (<-chan struct{}, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_CLOSE_WRITE|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: reads park in the poller
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			notify()
		}
	}()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				notify()
			case <-done:
				return
			}
		}
	}()
	return ch, func() { close(done); f.Close() }, nil
}

// tailOffset returns the offset of the start of the last n lines of f (a
// final line without a newline counts).
func tailOffset(f *os.File, n int) (int64, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	const chunk = 8192
	buf := make([]byte, chunk)
	pos, seen := end, 0
	first := true
	for pos > 0 {
		size := int64(chunk)
		if pos < size {
			size = pos
		}
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil {
			return 0, err
		}
		b := buf[:size]
		if first && len(b) > 0 && b[len(b)-1] == '\n' {
			b = b[:len(b)-1] // the final newline ends the last line, it does not start one
		}
		first = false
		for i := len(b); i > 0; {
			j := bytes.LastIndexByte(b[:i], '\n')
			if j < 0 {
				break
			}
			if seen++; seen == n {
				return pos + int64(j) + 1, nil
			}
			i = j
		}
	}
	return 0, nil
}

var errLimit = errors.New("log byte limit reached")

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.n {
		n, err := l.w.Write(p[:l.n])
		l.n -= int64(n)
		if err == nil {
			err = errLimit
		}
		return n, err
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}
