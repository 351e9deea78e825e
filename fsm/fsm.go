package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// Config configures an FSM.
type Config struct {
	Logger *slog.Logger
	// HistorySize is how many changes are kept for watches (default 32768).
	HistorySize int
	// Halt is called when the log holds a command this version cannot apply
	// (written by a newer orch). The default panics: a server that skipped
	// it would silently diverge from its peers. Tests replace it.
	Halt func(error)
}

// FSM is the replicated state machine. Raft calls Apply, ApplyBatch,
// Snapshot and Restore from a single goroutine; everything else reads.
type FSM struct {
	logger  *slog.Logger
	halt    func(error)
	db      atomic.Pointer[memdb.MemDB]
	history *History
	// requests orders the remembered request IDs for pruning; only the
	// apply goroutine touches it.
	requests *requestQueue
	// requestWindow is RequestWindow; package tests shrink it.
	requestWindow uint64
	// usage is what pods take from each node; only the apply goroutine
	// touches it.
	usage usage

	applied  atomic.Uint64
	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever applied grows
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an empty FSM.
func New(cfg Config) *FSM {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 32768
	}
	if cfg.Halt == nil {
		cfg.Halt = func(err error) {
			panic(fmt.Sprintf("orch FSM halted to avoid diverging from its peers: %v (upgrade this server)", err))
		}
	}
	f := &FSM{logger: cfg.Logger, halt: cfg.Halt, history: NewHistory(cfg.HistorySize), advanced: make(chan struct{}), requests: &requestQueue{}, requestWindow: RequestWindow, usage: usage{}}
	f.db.Store(newDB())
	return f
}

// View returns a consistent read-only snapshot of the current state.
func (f *FSM) View() *View { return &View{txn: f.db.Load().Txn(false)} }

// History is the change history watches are served from.
func (f *FSM) History() *History { return f.history }

// AppliedIndex is the index of the last log entry applied to the state.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the state reflects index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ch := f.advanced
		f.mu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	close(f.advanced)
	f.advanced = make(chan struct{})
	f.mu.Unlock()
}

// Apply applies one log entry. Its response is a *Result.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one store transaction and then
// publishes their changes to watchers.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	if len(logs) == 0 {
		return results
	}
	a := newApplier(f.db.Load())
	a.usage, a.requests, a.window = f.usage, f.requests, f.requestWindow
	for i, l := range logs {
		a.index = l.Index
		if l.Type != raft.LogCommand {
			continue // configuration changes only advance the index
		}
		results[i] = f.applyEntry(a, l.Data)
	}
	last := logs[len(logs)-1].Index
	if err := a.txn.Insert(tableMeta, &metaRow{Key: "applied", Index: last}); err != nil {
		panic(err) // static schema: cannot fail
	}
	a.txn.Commit()
	f.history.publish(a.events)
	f.setApplied(last)
	return results
}

func (f *FSM) applyEntry(a *applier, data []byte) *Result {
	cmd, err := Decode(data)
	switch {
	case errors.Is(err, ErrFromTheFuture):
		f.logger.Error("cannot apply log entry", "index", a.index, "err", err)
		f.halt(err)
		return &Result{Err: err}
	case err != nil:
		f.logger.Error("rejected malformed log entry", "index", a.index, "err", err)
		return &Result{Err: err}
	case cmd == nil:
		return &Result{} // ignorable command of a newer version
	}
	return a.applyOnce(cmd)
}
