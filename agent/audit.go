package agent

import (
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
const (
	auditFileName = "audit.log"
	auditFileMiB  = 10
	auditFiles    = 3
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
	mu     sync.Mutex
	w      *lumberjack.Logger
	failed bool // a write failed; logged once until one succeeds
	logErr func(error)
}

func newAuditLog(dataDir string, logger *slog.Logger) *auditLog {
	return &auditLog{
		w: &lumberjack.Logger{
			Filename:   filepath.Join(dataDir, auditFileName),
			MaxSize:    auditFileMiB,
			MaxBackups: auditFiles - 1,
		},
		logErr: func(err error) { logger.Error("writing the audit log failed; requests go on unrecorded", "err", err) },
	}
}

func (l *auditLog) record(p Principal, at *requestAttrs, code int, r *http.Request) {
	rid := r.Header.Get(requestIDHeader)
	if len(rid) > 64 {
		rid = rid[:64]
	}
	e := AuditEntry{Time: time.Now().UTC(), User: p.Name, Role: string(p.Role), Verb: at.verb, Resource: at.resource,
		Namespace: at.namespace, Name: at.name, Code: code, RequestID: rid, Remote: r.RemoteAddr}
	b, _ := json.Marshal(e)
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(b)
	if err != nil && !l.failed && l.logErr != nil {
		l.logErr(err)
	}
	l.failed = err != nil
}

func (l *auditLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
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
