package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOperatorTokenCreateListRevoke(t *testing.T) {
	server := testServer(t)
	out := mustRun(t, server, "operator", "token", "create", "--role", "view", "--user", "alice", "--ttl", "2h")
	token := strings.TrimSpace(out)
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "orchu" || strings.Count(out, "\n") != 1 {
		t.Fatalf("create printed %q, want one orchu token", out)
	}
	id := parts[1]

	list := mustRun(t, server, "operator", "token", "list")
	if !strings.Contains(list, id) || !strings.Contains(list, "alice") || !strings.Contains(list, "valid") || strings.Contains(list, parts[2]) {
		t.Fatalf("list:\n%s", list)
	}
	var tokens []tokenInfo
	if err := json.Unmarshal([]byte(mustRun(t, server, "operator", "token", "list", "-o", "json")), &tokens); err != nil ||
		len(tokens) != 1 || tokens[0].ID != id || tokens[0].Role != "view" || tokens[0].User != "alice" {
		t.Fatalf("list -o json: %+v %v", tokens, err)
	}
	if out := mustRun(t, server, "operator", "token", "revoke", id); !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %q", out)
	}
	if list := mustRun(t, server, "operator", "token", "list"); !strings.Contains(list, "revoked") {
		t.Fatalf("list after revoke:\n%s", list)
	}

	mustFail(t, server, "", "--role", "operator", "token", "create", "--role", "root", "--user", "x")
	mustFail(t, server, "", "--user", "operator", "token", "create", "--role", "edit")
	mustFail(t, server, "", "--single-use", "operator", "token", "create", "--role", "admin", "--user", "x", "--single-use")
	mustFail(t, server, "", "--ttl", "operator", "token", "create", "--role", "admin", "--user", "x", "--ttl", "-1h")
	mustFail(t, server, "", "ID is required", "operator", "token", "revoke")
	mustFail(t, server, "", "not found", "operator", "token", "revoke", "ffffffffffffffff")
	if n := strings.Count(mustRun(t, server, "operator", "token", "list"), "\n"); n != 2 {
		t.Fatalf("refused creates left tokens behind: %d lines", n)
	}
}
