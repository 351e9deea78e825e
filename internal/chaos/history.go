package chaos

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// OpKind is what a recorded client operation did.
type OpKind int

const (
	// OpCreate made the key (before the clients start): its version is
	// the register's first.
	OpCreate OpKind = iota
	// OpRead is a linearizable GET: it returns the value and version.
	OpRead
	// OpCAS is an update conditional on the version read before it.
	OpCAS
)

func (k OpKind) String() string { return [...]string{"create", "read", "cas"}[k] }

// Outcome is what the client learnt of an operation.
type Outcome int

const (
	// OK: acknowledged (a read returned; a write was applied).
	OK Outcome = iota
	// Conflict: the update was refused because the version had changed
	// (409): a definite "not applied".
	Conflict
	// Failed: another definite refusal (4xx other than 409): not applied,
	// and not expected in these histories.
	Failed
	// Unknown: no answer (timeout, connection lost, 5xx): the write may or
	// may not have been applied, now or later.
	Unknown
)

func (o Outcome) String() string { return [...]string{"ok", "conflict", "failed", "unknown"}[o] }

// Op is one recorded client operation.
type Op struct {
	Client int
	Kind   OpKind
	Key    string
	// Expect is the version a CAS was conditional on.
	Expect uint64
	// Value is the value a CAS or create wrote, or the value a read returned.
	Value string
	// Version is the version a read returned, or an acknowledged write's
	// version as its response said.
	Version uint64
	// RespValue is the value an acknowledged write's response carried:
	// normally Value; anything else means the response did not describe
	// the write (see Checker).
	RespValue string
	Outcome   Outcome
	// Call and Return are the invocation and response times since the
	// history's start; Return is meaningless for Unknown.
	Call, Return time.Duration
	Err          string
}

func (o Op) String() string {
	ret := fmt.Sprintf("%.3fs", o.Return.Seconds())
	if o.Outcome == Unknown {
		ret = "?"
	}
	s := fmt.Sprintf("[%.3fs–%s] c%d %s %s", o.Call.Seconds(), ret, o.Client, o.Kind, o.Key)
	switch o.Kind {
	case OpRead:
		if o.Outcome == OK {
			s += fmt.Sprintf(" -> %s@%d", o.Value, o.Version)
		}
	case OpCAS:
		s += fmt.Sprintf(" if @%d set %s", o.Expect, o.Value)
		if o.Outcome == OK {
			s += fmt.Sprintf(" -> ok @%d", o.Version)
			if o.RespValue != o.Value {
				s += fmt.Sprintf(" (response carried %s)", o.RespValue)
			}
		}
	case OpCreate:
		s += fmt.Sprintf(" = %s -> @%d", o.Value, o.Version)
	}
	if o.Outcome != OK {
		s += " -> " + o.Outcome.String()
		if o.Err != "" {
			s += " (" + o.Err + ")"
		}
	}
	return s
}

// Recorder collects operations from concurrent clients.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the time since the history's start.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// At converts a wall-clock instant into history time.
func (r *Recorder) At(t time.Time) time.Duration { return t.Sub(r.start) }

// Add records an operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Ops returns the operations recorded so far, by invocation time.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	out := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}
