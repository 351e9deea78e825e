package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
)

// result is one in-process orchctl run.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs orchctl in-process against server (if not "") with stdin.
func runCLI(t *testing.T, server, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := []string{"orchctl"}
	if server != "" {
		full = append(append(full, "--server", server), caArgs(server)...)
	}
	full = append(full, args...)
	code := Run(context.Background(), full, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// mustRun fails the test unless orchctl exits 0.
func mustRun(t *testing.T, server string, args ...string) string {
	t.Helper()
	r := runCLI(t, server, "", args...)
	if r.code != 0 {
		t.Fatalf("orchctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// mustFail fails the test unless orchctl exits 1 with exactly one line on
// stderr containing want.
func mustFail(t *testing.T, server, stdin string, want string, args ...string) result {
	t.Helper()
	r := runCLI(t, server, stdin, args...)
	if r.code != 1 {
		t.Fatalf("orchctl %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 {
		t.Errorf("orchctl %s: stderr has %d lines, want one:\n%s", strings.Join(args, " "), len(lines), r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("orchctl %s: stderr %q does not contain %q", strings.Join(args, " "), r.stderr, want)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
