package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"orch.dev/orch/api"
)

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// createToken makes a token through the API as the cluster admin.
func createToken(t *testing.T, a *Agent, req TokenRequest) TokenCreated {
	t.Helper()
	b, _ := json.Marshal(req)
	code, body := do(t, a, "POST", "/v1/tokens", "application/json", string(b))
	if code != http.StatusCreated {
		t.Fatalf("creating a %s token: %d %s", req.Role, code, body)
	}
	var tc TokenCreated
	if err := json.Unmarshal([]byte(body), &tc); err != nil || tc.Token == "" || tc.ID == "" {
		t.Fatalf("token create answer %q: %v", body, err)
	}
	return tc
}

// wantStatus checks an answer's code and that it is a Kubernetes Status
// whose message contains each of msgs.
func wantStatus(t *testing.T, what string, code int, body string, wantCode int, msgs ...string) {
	t.Helper()
	var st struct {
		Kind    string `json:"kind"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if code != wantCode || json.Unmarshal([]byte(body), &st) != nil || st.Kind != "Status" || st.Code != wantCode {
		t.Fatalf("%s: %d %s, want a %d Status", what, code, body, wantCode)
	}
	for _, m := range msgs {
		if !strings.Contains(st.Message, m) {
			t.Fatalf("%s: message %q does not say %q", what, st.Message, m)
		}
	}
}

// itemNames lists the metadata.name of a list answer's items.
func itemNames(t *testing.T, body string) []string {
	t.Helper()
	var l struct {
		Items []struct {
			Metadata struct {
				Namespace string `json:"namespace"`
				Name      string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("list answer %q: %v", body, err)
	}
	var out []string
	for _, i := range l.Items {
		out = append(out, strings.TrimPrefix(i.Metadata.Namespace+"/"+i.Metadata.Name, "/"))
	}
	return out
}

// auditLines reads a server's audit log.
func auditLines(t *testing.T, a *Agent) []AuditEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, auditFileName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []AuditEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// flipLast changes a token's last hex digit.
func flipLast(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		return s[:len(s)-1] + "1"
	}
	return s[:len(s)-1] + "0"
}

func hasAudit(lines []AuditEntry, match func(AuditEntry) bool) bool {
	for _, l := range lines {
		if match(l) {
			return true
		}
	}
	return false
}

// The refusals of issue #7 on the API: no credentials, bad, expired and
// revoked tokens (401); view reading Secrets, edit and view reaching
// orch-system, edit and view calling admin endpoints (403); and every write
// and refusal in the audit log, with no token or Secret value in it.
func TestAPIRefusesWhatCallersMayNotDo(t *testing.T) {
	c, a := securedCluster(t)
	view := createToken(t, a, TokenRequest{Role: "view", User: "alice", TTL: "1h"})
	edit := createToken(t, a, TokenRequest{Role: "edit", User: "bob"})
	if !strings.HasPrefix(view.Token, "orchu.") || view.User != "alice" || view.Role != "view" || view.Status != "valid" {
		t.Fatalf("view token: %+v", view)
	}

	// No or bad credentials.
	noAuth := []string{"Authorization", ""}
	code, body := do(t, a, "GET", "/api/v1/namespaces/default/pods", "", "", noAuth...)
	wantStatus(t, "no credentials", code, body, http.StatusUnauthorized, "required")
	code, body = do(t, a, "POST", "/api/v1/namespaces/default/configmaps", "", `{"metadata":{"name":"x"}}`, noAuth...)
	wantStatus(t, "write without credentials", code, body, http.StatusUnauthorized)
	for _, bad := range []string{"wrong", "orchu.0123456789abcdef.0123456789abcdef0123456789abcdef",
		flipLast(view.Token), view.Token + "0", "Basic x"} {
		code, body = do(t, a, "GET", "/api/v1/namespaces", "", "", bearer(bad)...)
		wantStatus(t, "bad token", code, body, http.StatusUnauthorized)
	}
	for _, open := range []string{"/healthz", "/livez", "/version"} {
		if code, body := do(t, a, "GET", open, "", "", noAuth...); code != http.StatusOK {
			t.Fatalf("%s without credentials: %d %s", open, code, body)
		}
	}

	// view: reads all but Secrets, writes nothing.
	if code, body := do(t, a, "GET", "/api/v1/namespaces/default/pods", "", "", bearer(view.Token)...); code != http.StatusOK || len(itemNames(t, body)) != 2 {
		t.Fatalf("view listing pods: %d %s", code, body)
	}
	code, body = do(t, a, "GET", "/api/v1/namespaces/default/secrets/sec-env", "", "", bearer(view.Token)...)
	wantStatus(t, "view reading a Secret", code, body, http.StatusForbidden, `user "alice" (role view) cannot get secrets "sec-env" in namespace "default"`)
	code, body = do(t, a, "GET", "/api/v1/secrets", "", "", bearer(view.Token)...)
	wantStatus(t, "view listing Secrets", code, body, http.StatusForbidden, "cannot list secrets")
	code, body = do(t, a, "POST", "/api/v1/namespaces/default/configmaps", "", `{"metadata":{"name":"by-alice"}}`, bearer(view.Token)...)
	wantStatus(t, "view writing", code, body, http.StatusForbidden, "cannot create configmaps")

	// edit: writes namespaced objects, Secrets included; orch-system and
	// the token records in it stay hidden, in lists too.
	if code, body := do(t, a, "POST", "/api/v1/namespaces/default/secrets", "", `{"metadata":{"name":"by-bob"},"stringData":{"k":"v"}}`, bearer(edit.Token)...); code != http.StatusCreated {
		t.Fatalf("edit creating a Secret: %d %s", code, body)
	}
	code, body = do(t, a, "GET", "/api/v1/namespaces/"+SystemNamespace+"/secrets", "", "", bearer(edit.Token)...)
	wantStatus(t, "edit listing orch-system", code, body, http.StatusForbidden, SystemNamespace)
	code, body = do(t, a, "GET", "/api/v1/namespaces/"+SystemNamespace, "", "", bearer(view.Token)...)
	wantStatus(t, "view reading the orch-system Namespace", code, body, http.StatusForbidden)
	for _, who := range []TokenCreated{view, edit} {
		path := "/api/v1/secrets"
		if who.Role == "view" {
			path = "/api/v1/configmaps"
		}
		for _, p := range []string{path, "/api/v1/namespaces"} {
			code, body := do(t, a, "GET", p, "", "", bearer(who.Token)...)
			if code != http.StatusOK {
				t.Fatalf("%s listing %s: %d %s", who.User, p, code, body)
			}
			for _, n := range itemNames(t, body) {
				if n == SystemNamespace || strings.HasPrefix(n, SystemNamespace+"/") {
					t.Fatalf("%s listing %s sees %s", who.User, p, n)
				}
			}
		}
	}
	code, body = do(t, a, "GET", "/api/v1/namespaces/"+SystemNamespace+"/secrets", "", "", bearer(a.cfg.Token)...)
	if code != http.StatusOK || !strings.Contains(strings.Join(itemNames(t, body), ","), "token-"+edit.ID) {
		t.Fatalf("the admin does not see the token records: %d %s", code, body)
	}
	code, body = do(t, a, "PUT", "/api/v1/nodes/n1", "", `{"metadata":{"name":"n1"}}`, bearer(edit.Token)...)
	wantStatus(t, "edit changing a Node", code, body, http.StatusForbidden, "cluster-scoped")
	for _, admin := range []struct{ method, path string }{{"POST", "/v1/tokens"}, {"GET", "/v1/tokens"}, {"GET", "/v1/operator/raft/peers"}} {
		code, body = do(t, a, admin.method, admin.path, "application/json", `{"role":"admin","user":"bob"}`, bearer(edit.Token)...)
		wantStatus(t, "edit calling "+admin.path, code, body, http.StatusForbidden, "only admins")
	}

	// Listing tokens never shows a secret; revoked and expired tokens fail.
	code, body = do(t, a, "GET", "/v1/tokens", "", "")
	if code != http.StatusOK || !strings.Contains(body, view.ID) || strings.Contains(body, view.Token) || strings.Contains(body, "ecret") {
		t.Fatalf("token list: %d %s", code, body)
	}
	code, body = do(t, a, "DELETE", "/v1/tokens/"+edit.ID, "", "")
	if code != http.StatusOK || !strings.Contains(body, `"status":"revoked"`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	code, body = do(t, a, "GET", "/api/v1/namespaces", "", "", bearer(edit.Token)...)
	wantStatus(t, "revoked token", code, body, http.StatusUnauthorized, "revoked")
	short := createToken(t, a, TokenRequest{Role: "admin", User: "carol", TTL: "1ms"})
	c.waitFor("the short token to expire", func() bool {
		code, body := do(t, a, "GET", "/api/v1/namespaces", "", "", bearer(short.Token)...)
		return code == http.StatusUnauthorized && strings.Contains(body, "expired")
	})
	if code, body := do(t, a, "DELETE", "/v1/tokens/ffffffffffffffff", "", ""); code != http.StatusNotFound {
		t.Fatalf("revoking an unknown token: %d %s", code, body)
	}

	// Bad token requests change nothing and name the flag.
	for _, bad := range []struct{ body, flag string }{
		{`{"role":"root","user":"x"}`, "--role"}, {`{"role":"view"}`, "--user"}, {`{"role":"view","user":"x","singleUse":true}`, "--single-use"},
		{`{"role":"worker","user":"x"}`, "--user"}, {`{"role":"view","user":"x","ttl":"-1h"}`, "--ttl"}, {`{"role":"view","user":"Bad Name"}`, "--user"},
	} {
		code, body := do(t, a, "POST", "/v1/tokens", "application/json", bad.body)
		wantStatus(t, "token request "+bad.body, code, body, http.StatusBadRequest, bad.flag)
	}

	// The audit log has the writes, allowed and refused, and the admin
	// actions, and no token or Secret value.
	c.waitFor("audit lines", func() bool {
		lines := auditLines(t, a)
		return hasAudit(lines, func(e AuditEntry) bool {
			return e.User == "bob" && e.Role == "edit" && e.Verb == "create" && e.Resource == "secrets" && e.Name == "by-bob" && e.Code == 201
		}) && hasAudit(lines, func(e AuditEntry) bool {
			return e.User == "alice" && e.Verb == "create" && e.Resource == "configmaps" && e.Code == 403
		}) && hasAudit(lines, func(e AuditEntry) bool {
			return e.User == "" && e.Verb == "create" && e.Resource == "configmaps" && e.Code == 401
		}) && hasAudit(lines, func(e AuditEntry) bool {
			return e.User == "cluster-admin" && e.Verb == "delete" && e.Resource == "tokens" && e.Name == edit.ID && e.Code == 200
		}) && hasAudit(lines, func(e AuditEntry) bool {
			return e.User == "cluster-admin" && e.Verb == "create" && e.Resource == "tokens" && e.Name == view.ID && e.Code == 201
		})
	})
	for _, e := range auditLines(t, a) {
		if (e.Verb == "get" || e.Verb == "list") && e.Resource != "operator/snapshot" {
			t.Fatalf("a read was audited: %+v", e)
		}
		if e.Time.IsZero() || e.Remote == "" {
			t.Fatalf("audit line without time or remote: %+v", e)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(a.cfg.DataDir, auditFileName))
	for _, secret := range []string{view.Token, edit.Token, short.Token, a.cfg.Token, view.Token[len(view.Token)-32:]} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatal("the audit log holds a token")
		}
	}
	if v := a.fsm.View().Get(api.Secret, "default", "by-bob"); v == nil {
		t.Fatal("bob's Secret is missing")
	}

	// An editor deleting every Secret of the cluster leaves orch-system alone.
	dave := createToken(t, a, TokenRequest{Role: "edit", User: "dave"})
	if code, body := do(t, a, "DELETE", "/api/v1/secrets", "", "", bearer(dave.Token)...); code != http.StatusOK {
		t.Fatalf("edit deleting all Secrets: %d %s", code, body)
	}
	if a.fsm.View().Get(api.Secret, "default", "by-bob") != nil || a.fsm.View().Get(api.Secret, SystemNamespace, "token-"+dave.ID) == nil {
		t.Fatal("deleting all Secrets as edit: wrong Secrets deleted")
	}
}
