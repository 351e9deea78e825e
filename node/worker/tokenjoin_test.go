package worker_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/orchd"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
	"orch.dev/orch/node/worker"
)

// A worker that joined with a worker join token (no cluster secret) gets
// its certificate through the join handshake, talks to the API with it,
// becomes Ready and runs a pod whose logs `orchctl logs` reads through the
// server; its worker API, on mutual TLS, lets in the server and no one
// else. Restarted, it needs the (single-use, now used) token no more.
func TestTokenJoinedWorkerRunsPod(t *testing.T) {
	ctrd.Require(t)
	c := inproc.Start(t, inproc.Options{Setup: func(a *agent.Agent) { orchd.RegisterLeaderComponents(a, orchd.LeaderOptions{}) }})
	cl := c.Client()
	code, tok, errOut := orchctl(t, c, "operator", "token", "create", "--role", "worker", "--single-use")
	if code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	tok = strings.TrimSpace(tok)
	if _, err := join.Parse(tok); err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, c, func(cfg *worker.Config) {
		// --join names the server's API; gossip is on that host's port 7402.
		cfg.Token, cfg.JoinToken, cfg.Join = "", tok, []string{c.Agents[0].HTTPAddr()}
	})
	if !strings.Contains(n.logs.String(), "joined the cluster with a join token") {
		t.Fatal("the worker did not join with the token")
	}
	waitFor(t, 30*time.Second, "node w1 Ready", func() bool {
		o, err := cl.Get(ctxT(t), api.Node, "", "w1", true)
		if err != nil {
			return false
		}
		for _, cond := range o.(*corev1.Node).Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	if _, err := cl.Create(ctxT(t), webDeployment()); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	waitFor(t, 60*time.Second, "the web pod Running and Ready", func() bool { pod = webPod(t, cl); return podReady(pod) })
	code, out, errOut := orchctl(t, c, "logs", pod.Name, "-c", "web")
	if code != 0 || !strings.Contains(out, "web listening on :8080") {
		t.Fatalf("orchctl logs: %d %q %q", code, out, errOut)
	}

	// The worker API: the server's certificate gets in; none, a worker's
	// or a user's does not.
	ca := c.Agents[0].ClusterCA()
	get := func(certs *pki.Certs) error {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: pki.ClientConfig(ca.Cert, certs, pki.Policy{Roles: []pki.Role{pki.RoleWorker}})}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + n.w.APIAddr() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(pkitest.Node(t, ca, pki.RoleServer, "s9").Certs); err != nil {
		t.Fatalf("a server certificate is refused: %v", err)
	}
	for what, certs := range map[string]*pki.Certs{"no certificate": nil,
		"a worker certificate": pkitest.Node(t, ca, pki.RoleWorker, "w2").Certs,
		"a user certificate":   pkitest.User(t, ca, "alice", pki.UserAdmin).Certs} {
		if err := get(certs); err == nil {
			t.Errorf("the worker API let in a client with %s", what)
		}
	}
	// Restart without the token: the kept certificate is enough.
	if fi, err := os.Stat(filepath.Join(n.cfg.DataDir, "tls", "worker.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker.key: %v %v", fi, err)
	}
	n.stop()
	n.cfg.JoinToken = "orch1." + strings.Repeat("0", 16) + "." + strings.Repeat("0", 32) + "." + strings.Repeat("0", 64) // would be refused
	n.start()
	code, out, errOut = orchctl(t, c, "logs", pod.Name, "-c", "web")
	if code != 0 || !strings.Contains(out, "web listening on :8080") {
		t.Fatalf("orchctl logs after the restart: %d %q %q", code, out, errOut)
	}
}
