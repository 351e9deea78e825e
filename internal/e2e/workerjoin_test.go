package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/testcluster"
)

// A worker process joins with a worker join token: it verifies the
// servers' CA by the token's hash, gets its certificate, keeps it (key
// 0600) and registers its Node with it, no bearer token. It needs no
// containerd for that: it stops at the runtime, after registering. A
// restart uses the kept certificate, not the (single-use) token again.
// Forged, revoked, used and wrong-CA tokens are refused, the last before
// any server sees the secret.
func TestWorkerJoinWithToken(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	c.WaitSystemObjects(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	orchctl := func(args ...string) string {
		t.Helper()
		out, err := c.Orchctl(args...)
		if err != nil {
			t.Fatalf("orchctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	noRuntime := []string{"--containerd-socket", filepath.Join(t.TempDir(), "none.sock"), "--images-dir", "-"}
	cl := c.Client()
	nodeExists := func(name string) bool {
		_, err := cl.Get(ctx, api.Node, "", name, false)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("get node %s: %v", name, err)
		}
		return err == nil
	}
	serversLog := func(substr string) int {
		n := 0
		for _, s := range c.Servers {
			b, _ := os.ReadFile(s.LogPath)
			n += bytes.Count(b, []byte(substr))
		}
		return n
	}

	tokStr := orchctl("operator", "token", "create", "--role", "worker", "--single-use")
	tok, err := join.Parse(tokStr)
	if err != nil {
		t.Fatal(err)
	}
	w := c.WorkerWithToken("wtok", tokStr, noRuntime...)
	c.Eventually(60*time.Second, "the token-joined worker registers its Node", func() bool { return nodeExists("wtok") })
	dir := filepath.Join(w.DataDir, "tls")
	if fi, err := os.Stat(filepath.Join(dir, "worker.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker.key: %v %v", fi, err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "worker.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := pki.IdentityOf(cert); err != nil || id.Role != pki.RoleWorker || id.Name != "wtok" {
		t.Fatalf("worker certificate identity %+v, %v", id, err)
	}
	if got := serversLog("node joined"); got != 1 {
		t.Fatalf("%d joins logged by the servers, want 1", got)
	}
	c.Eventually(60*time.Second, "the worker stops at the missing runtime", w.Exited)

	// Restart: the Node and the pod CIDR state are gone, so the worker
	// must register again, with the kept certificate.
	w.Kill()
	orchctl("delete", "node", "wtok")
	if err := os.Remove(filepath.Join(w.DataDir, "worker.json")); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	c.Eventually(60*time.Second, "the restarted worker registers again without the token", func() bool { return nodeExists("wtok") })
	if got := serversLog("node joined"); got != 1 {
		t.Fatalf("%d joins logged by the servers after the restart, want 1", got)
	}
	if w.LogContains("join refused") || w.LogContains("refused by the server") {
		t.Fatal("the restarted worker presented the used token again")
	}
	w.Kill()

	refused := func(name, token, want string) *testcluster.Server {
		t.Helper()
		s := c.WorkerWithToken(name, token, noRuntime...)
		c.Eventually(60*time.Second, name+" gives up", s.Exited)
		if !s.LogContains(want) {
			b, _ := os.ReadFile(s.LogPath)
			t.Fatalf("%s: log lacks %q:\n%s", name, want, b)
		}
		if nodeExists(name) {
			t.Fatalf("%s registered a Node", name)
		}
		return s
	}
	// The single-use token again, from another node.
	refused("wagain", tokStr, "refused by the server")
	// A forged secret.
	forged := join.Token{ID: tok.ID, Secret: strings.Repeat("0", len(tok.Secret)), CAHash: tok.CAHash}
	refused("wforged", forged.String(), "refused by the server")
	// A revoked token.
	revStr := orchctl("operator", "token", "create", "--role", "worker")
	rev, _ := join.Parse(revStr)
	orchctl("operator", "token", "revoke", rev.ID)
	refused("wrevoked", revStr, "refused by the server")
	// An expired token.
	expStr := orchctl("operator", "token", "create", "--role", "worker", "--ttl", "1s")
	exp, _ := join.Parse(expStr)
	time.Sleep(1100 * time.Millisecond) // the token's lifetime, not synchronisation
	refused("wexpired", expStr, "refused by the server")
	// A token naming another CA: the worker stops at the handshake, so
	// no server ever sees it.
	other := join.Token{ID: strings.Repeat("a", len(tok.ID)), Secret: tok.Secret, CAHash: strings.Repeat("b", len(tok.CAHash))}
	refused("wotherca", other.String(), "pinned cluster CA")
	if n := serversLog(other.ID); n != 0 {
		t.Fatalf("a server logged the wrong-CA token %d times: its request was sent", n)
	}
	for _, id := range []string{forged.ID, rev.ID, exp.ID} {
		if serversLog(id) == 0 {
			t.Fatalf("no server logged the refusal of token %s", id)
		}
	}
}
