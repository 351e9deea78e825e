// Package suite holds orch's benchmarks: write throughput against etcd,
// large lists, watch fan-out, server memory, and snapshot/restore times.
// Every suite starts real processes (orchd through internal/testcluster,
// etcd from the Debian package) on loopback addresses and removes them, and
// every directory it made, when it ends, also on failure or a signal.
// It never changes the product: it only drives it through its API and its
// exported fsm package.
package suite

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"orch.dev/orch/internal/testcluster"
)

// Env is the benchmark's stand-in for testing.T: it owns a temporary
// directory and a stack of cleanups that runs once, at the end, on Fatal,
// or on SIGINT/SIGTERM.
type Env struct {
	dir string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	n        int
	once     sync.Once
	// Verbose prints Logf lines (the harness's own chatter) to stderr.
	Verbose bool
}

var _ testcluster.T = (*Env)(nil)

// NewEnv makes the benchmark's temporary directory and arranges for the
// cleanups to run when the process is interrupted.
func NewEnv() (*Env, error) {
	dir, err := os.MkdirTemp("", "orch-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{dir: dir}
	e.cleanups = append(e.cleanups, func() { os.RemoveAll(dir) })
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "orch-bench: %v: cleaning up\n", s)
		e.Close()
		os.Exit(130)
	}()
	return e, nil
}

// Dir is the benchmark's temporary directory.
func (e *Env) Dir() string { return e.dir }

// Close runs the cleanups, newest first, once; a concurrent caller waits
// until they have run.
func (e *Env) Close() {
	e.once.Do(func() {
		e.mu.Lock()
		fns := e.cleanups
		e.cleanups = nil
		e.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}

// Helper is part of testcluster.T.
func (e *Env) Helper() {}

// Cleanup registers fn to run at the end.
func (e *Env) Cleanup(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, fn)
}

// PopCleanups runs, newest first, the cleanups registered since mark (a
// value from Mark): a suite that starts a cluster per run stops it before
// the next run instead of at exit.
func (e *Env) PopCleanups(mark int) {
	e.mu.Lock()
	if mark > len(e.cleanups) {
		e.mu.Unlock()
		return
	}
	fns := append([]func(){}, e.cleanups[mark:]...)
	e.cleanups = e.cleanups[:mark]
	e.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Mark is the current depth of the cleanup stack.
func (e *Env) Mark() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.cleanups)
}

// TempDir returns a new directory inside the benchmark's directory.
func (e *Env) TempDir() string {
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	d := filepath.Join(e.dir, fmt.Sprintf("%03d", n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.Fatal(err)
	}
	return d
}

// Failed reports whether Fatal was called (the cluster harness then prints
// the servers' logs).
func (e *Env) Failed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// Logf prints harness messages when verbose (the cluster harness prints the
// servers' logs through it after a failure, so those always go out).
func (e *Env) Logf(format string, args ...any) {
	if e.Verbose || e.Failed() {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// Fatal reports the error, cleans up and exits. It may be called from any
// goroutine.
func (e *Env) Fatal(args ...any) { e.fail(fmt.Sprint(args...)) }

// Fatalf is Fatal with a format.
func (e *Env) Fatalf(format string, args ...any) { e.fail(fmt.Sprintf(format, args...)) }

func (e *Env) fail(msg string) {
	_, file, line, _ := runtime.Caller(2)
	fmt.Fprintf(os.Stderr, "orch-bench: FAILED at %s:%d: %s\n", filepath.Base(file), line, msg)
	e.mu.Lock()
	e.failed = true
	e.mu.Unlock()
	e.Close()
	os.Exit(1)
}
