package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readAudit(t *testing.T, dir string) []AuditEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, auditFileName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []AuditEntry
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e AuditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// Buffered audit lines reach the file within the flush interval while the
// server runs, and every line is there, whole, after close.
func TestAuditLogFlushesBufferedLines(t *testing.T) {
	dir := t.TempDir()
	l := newAuditLog(dir, slog.New(slog.DiscardHandler))
	r := httptest.NewRequest("POST", "/api/v1/namespaces/default/configmaps", nil)
	at := &requestAttrs{verb: "create", resource: "configmaps", namespace: "default", name: "a"}
	l.record(Principal{Name: "alice", Role: AccessAdmin}, at, 201, r)
	deadline := time.Now().Add(10 * auditFlushEvery)
	for len(readAudit(t, dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no audit line in the file %s after the write", 10*auditFlushEvery)
		}
		time.Sleep(auditFlushEvery / 4) // polling interval
	}
	for range 999 {
		l.record(Principal{Name: "bob", Role: AccessEdit}, at, 403, r)
	}
	l.close()
	l.record(Principal{Name: "late", Role: AccessAdmin}, at, 201, r) // after close: dropped, no panic
	got := readAudit(t, dir)
	if len(got) != 1000 || got[0].User != "alice" || got[999].User != "bob" || got[999].Code != 403 {
		t.Fatalf("%d lines after close (first %+v); want alice's then 999 of bob's", len(got), got[0])
	}
}
