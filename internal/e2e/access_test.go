package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/testcluster"
)

// auditHas reports whether a server's audit log has a line matching every
// field given (string values compared as they are, numbers as JSON numbers).
func auditHas(t *testing.T, dataDir string, want map[string]any) bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dataDir, "audit.log"))
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		match := true
		for k, v := range want {
			if line[k] != v {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tokens, roles, the audit log and encrypted Secrets across real orchd
// processes: tokens made with orchctl work on every server, a view user
// cannot read Secrets, no credentials get 401, a write through a follower
// is audited there (once), a revoked token stops working everywhere, and
// no file of any data dir holds a Secret's value.
func TestAccessControlAcrossServers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	c.WaitSystemObjects(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	orchctl := func(args ...string) string {
		t.Helper()
		out, err := c.Orchctl(args...)
		if err != nil {
			t.Fatalf("orchctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	viewTok := orchctl("operator", "token", "create", "--role", "view", "--user", "alice")
	editTok := orchctl("operator", "token", "create", "--role", "edit", "--user", "bob", "--ttl", "1h")
	joinTok, err := join.Parse(orchctl("operator", "token", "create", "--role", "worker", "--single-use"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil || joinTok.CAHash != pki.Fingerprint(ca) {
		t.Fatalf("the join token pins %s, the cluster CA is %s (%v)", joinTok.CAHash, pki.Fingerprint(ca), err)
	}
	as := func(s *testcluster.Server, token string) *client.Client {
		cl, err := client.New(client.Config{Servers: []string{s.URL()}, Token: token, TLS: c.TLS(), RetryFor: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	for _, s := range c.Servers {
		if _, err := as(s, viewTok).ListAll(ctx, api.Pod, "default", client.ListOptions{}); err != nil {
			t.Fatalf("%s: view listing pods: %v", s.Name, err)
		}
		if _, err := as(s, viewTok).ListAll(ctx, api.Secret, "default", client.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("%s: view listing Secrets: %v", s.Name, err)
		}
		if _, err := as(s, "").ListAll(ctx, api.Pod, "default", client.ListOptions{}); !apierrors.IsUnauthorized(err) {
			t.Fatalf("%s: no credentials: %v", s.Name, err)
		}
	}

	leader := c.Leader()
	var follower *testcluster.Server
	for _, s := range c.Servers {
		if s != leader {
			follower = s
		}
	}
	// Through the follower itself (the Go client would send a write to the
	// leader it learnt of): the follower forwards it.
	const value = "e2e-SECRET-value-9931"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(ca, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, follower.URL()+"/api/v1/namespaces/default/secrets",
		strings.NewReader(`{"metadata":{"name":"db"},"stringData":{"password":"`+value+`"}}`))
	req.Header.Set("Authorization", "Bearer "+editTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("edit creating a Secret through %s: %s", follower.Name, resp.Status)
	}
	o, err := as(leader, editTok).Get(ctx, api.Secret, "default", "db", false)
	if err != nil || string(o.(*corev1.Secret).Data["password"]) != value {
		t.Fatalf("reading the Secret back: %v", err)
	}
	bobCreatedDB := map[string]any{"user": "bob", "role": "edit", "verb": "create", "resource": "secrets", "namespace": "default", "name": "db", "code": 201.0}
	waitUntil(t, "the audit line on "+follower.Name, func() bool { return auditHas(t, follower.DataDir, bobCreatedDB) })
	if auditHas(t, leader.DataDir, map[string]any{"name": "db", "verb": "create"}) {
		t.Fatal("the leader also audited the forwarded write")
	}

	orchctl("operator", "token", "revoke", strings.Split(editTok, ".")[1])
	for _, s := range c.Servers {
		waitUntil(t, "the revocation on "+s.Name, func() bool {
			_, err := as(s, editTok).ListAll(ctx, api.ConfigMap, "default", client.ListOptions{})
			return apierrors.IsUnauthorized(err)
		})
	}

	for _, s := range c.Servers {
		filepath.WalkDir(s.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(value)) {
				t.Errorf("%s holds the Secret's value", path)
			}
			return nil
		})
	}
}
