package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// The audit log records every write request (creates, updates, patches,
// deletes, subresources, operator actions), allowed or refused, as one JSON
// line in <data-dir>/audit.log on the server that received it (a write a
// follower forwards is recorded there, not again on the leader). It holds
// who, what and the outcome, never a request body: no Secret value and no
// token reaches it. The file rotates by size: auditFiles files of at most
// auditFileMiB MiB each (audit.log and its timestamped predecessors).
//
// Lines are buffered and written every auditFlushEvery (or when the buffer
// fills, and at shutdown): one write system call per line cost the leader
// about 3% of its CPU at a few thousand writes per second. A crash of the
// process can lose the last auditFlushEvery of lines; a crash of the
// machine could lose more before, as the file is never fsynced.
const (
	auditFileName   = "audit.log"
	auditFileMiB    = 10
	auditFiles      = 3
	auditFlushEvery = 100 * time.Millisecond
	auditBufferSize = 64 << 10
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	Role      string    `json:"role"`
	Verb      string    `json:"verb"`
	Resource  string    `json:"resource"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Code      int       `json:"code"`
	RequestID string    `json:"requestID"`
	Remote    string    `json:"remote"`
}

type auditLog struct {
	mu      sync.Mutex
	w       *lumberjack.Logger
	buf     *bufio.Writer // over w
	enc     *json.Encoder // into buf
	pending bool          // buf holds lines not yet written
	closed  bool
	failed  bool // a write failed; logged once until one succeeds
	logErr  func(error)
	stop    chan struct{}
	done    chan struct{}
}

func newAuditLog(dataDir string, logger *slog.Logger) *auditLog {
	l := &auditLog{
		w: &lumberjack.Logger{
			Filename:   filepath.Join(dataDir, auditFileName),
			MaxSize:    auditFileMiB,
			MaxBackups: auditFiles - 1,
		},
		logErr: func(err error) { logger.Error("writing the audit log failed; requests go on unrecorded", "err", err) },
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.buf = bufio.NewWriterSize(l.w, auditBufferSize)
	l.enc = json.NewEncoder(l.buf)
	go l.flushLoop()
	return l
}

// flushLoop writes the buffered lines every auditFlushEvery until close.
func (l *auditLog) flushLoop() {
	defer close(l.done)
	t := time.NewTicker(auditFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.pending {
				l.noteErr(l.buf.Flush())
				l.pending = false
			}
			l.mu.Unlock()
		}
	}
}

// noteErr logs the first of a run of failed writes. A bufio.Writer keeps
// its first error for good, so after one the buffer is reset (its lines
// are lost, as an unbuffered write's would be) and later lines are tried
// again: the audit log resumes when, say, disk space returns.
func (l *auditLog) noteErr(err error) {
	if err != nil {
		l.buf.Reset(l.w)
	}
	if err != nil && !l.failed && l.logErr != nil {
		l.logErr(err)
	}
	l.failed = err != nil
}

func (l *auditLog) record(p Principal, at *requestAttrs, code int, r *http.Request) {
	rid := r.Header.Get(requestIDHeader)
	if len(rid) > 64 {
		rid = rid[:64]
	}
	e := AuditEntry{Time: time.Now().UTC(), User: p.Name, Role: string(p.Role), Verb: at.verb, Resource: at.resource,
		Namespace: at.namespace, Name: at.name, Code: code, RequestID: rid, Remote: r.RemoteAddr}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	// Encode writes the line and its newline into the buffer, which
	// writes through to the file only when full.
	l.noteErr(l.enc.Encode(e))
	l.pending = true
}

// close writes what is buffered and closes the file.
func (l *auditLog) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noteErr(l.buf.Flush())
	l.w.Close()
}

type auditKey struct{}

func withAudit(r *http.Request, at *requestAttrs) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), auditKey{}, at))
}

// noteAuditName lets a handler name the object a request created (the
// path of a create names none) for the audit line.
func noteAuditName(r *http.Request, name string) {
	if at, ok := r.Context().Value(auditKey{}).(*requestAttrs); ok && at.name == "" {
		at.name = name
	}
}
