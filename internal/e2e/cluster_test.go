package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
	"orch.dev/orch/internal/testcluster"
)

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: data}
	api.ConfigMap.SetTypeMeta(cm)
	return cm
}

// Writes through every server are visible, linearizably, through every other.
func TestWritesThroughEveryServer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	ctx := context.Background()
	for i, w := range c.Servers {
		name := fmt.Sprintf("via-%s", w.Name)
		if _, err := c.Client(w.URL()).Create(ctx, configMap(name, map[string]string{"n": fmt.Sprint(i)})); err != nil {
			t.Fatalf("create through %s: %v", w.Name, err)
		}
		for _, r := range c.Servers {
			obj, err := c.Client(r.URL()).Get(ctx, api.ConfigMap, "default", name, false)
			if err != nil {
				t.Fatalf("read %s through %s right after writing through %s: %v", name, r.Name, w.Name, err)
			}
			if got := obj.(*corev1.ConfigMap).Data["n"]; got != fmt.Sprint(i) {
				t.Fatalf("%s through %s: data n=%q", name, r.Name, got)
			}
		}
	}
}

// kill -9 of the leader while clients write: a new leader takes over, no
// acknowledged write is lost, clients see no failure, and the killed server
// catches up when it returns with its data dir.
func TestKillLeaderWhileWriting(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	w := startWriters(c.Client(), 8, "kill")
	w.waitFor(t, 300)
	old := c.Leader()
	old.Kill()
	c.WaitLeader(old, 15*time.Second)
	w.waitFor(t, 300)
	acked, failed := w.stop()
	for _, err := range failed {
		t.Errorf("client saw a failed write: %v", err)
	}
	t.Logf("%d acknowledged writes, %d failed, longest stall %s", acked.Len(), len(failed), w.maxGap)
	assertEverywhere(t, c, acked)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitVoters(3, 30*time.Second)
	assertEverywhere(t, c, acked)
}

// A planned transfer (command or SIGTERM of the leader) fails no request.
func TestLeaderTransferFailsNoRequest(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	cl := c.Client()
	w := startWriters(cl, 8, "transfer")
	w.waitFor(t, 200)

	first := c.Leader()
	if _, err := cl.Do(context.Background(), client.Request{Method: http.MethodPost, Path: "/v1/operator/raft/transfer-leader"}); err != nil {
		t.Fatal(err)
	}
	second := c.WaitLeader(first, 10*time.Second)
	w.waitFor(t, 200)

	second.Stop() // SIGTERM: hands leadership over before exiting
	c.WaitLeader(second, 10*time.Second)
	w.waitFor(t, 200)
	acked, failed := w.stop()
	for _, err := range failed {
		t.Errorf("client saw a failed write: %v", err)
	}
	t.Logf("%d acknowledged writes through two planned leader changes, longest stall %s", acked.Len(), w.maxGap)
	assertEverywhere(t, c, acked)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitVoters(3, 30*time.Second)
	assertEverywhere(t, c, acked)
}

// A server that joins a running cluster is added as a non-voter, then
// promoted once it has caught up.
func TestLateServerJoinsAsNonVoterThenVoter(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	ctx := context.Background()
	for i := range 50 {
		if _, err := c.Client().Create(ctx, configMap(fmt.Sprintf("before-%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	s4 := c.AddServer()
	sawNonVoter := false
	c.Eventually(60*time.Second, "s4 to become a voter", func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		peers, err := c.Peers(l)
		if err != nil {
			return false
		}
		for _, p := range peers {
			if p.ID == s4.Name {
				sawNonVoter = sawNonVoter || !p.Voter
				return p.Voter
			}
		}
		return false
	})
	if !sawNonVoter {
		t.Error("s4 became a voter without first being a non-voter")
	}
	got, err := c.Client(s4.URL()).Get(ctx, api.ConfigMap, "default", "before-49", false)
	if err != nil || got.GetName() != "before-49" {
		t.Fatalf("s4 does not serve data written before it joined: %v", err)
	}
}

// Restarting every server keeps the cluster and its data: bootstrap
// happened once and is not repeated.
func TestRestartEveryServer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	ctx := context.Background()
	if _, err := c.Client().Create(ctx, configMap("survivor", map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		s.Kill()
	}
	for _, s := range c.Servers {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitVoters(3, 30*time.Second)
	obj, err := c.Client().Get(ctx, api.ConfigMap, "default", "survivor", false)
	if err != nil {
		t.Fatalf("data lost across a full restart: %v", err)
	}
	if obj.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatalf("data changed: %v", obj)
	}
	for _, s := range c.Servers {
		if n := countLines(t, s.LogPath, "bootstrapping cluster"); n > 1 {
			t.Errorf("%s bootstrapped %d times", s.Name, n)
		}
	}
}

func countLines(t *testing.T, path, substr string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n
}

// With a token, the API refuses anonymous clients, Raft refuses
// connections without a server certificate of the cluster CA (another
// CA's, none), the API refuses client certificates of another CA, and a
// server with another token cannot join.
func TestTokenIsRequired(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true, Token: "correct-horse-battery"})
	ctx := context.Background()
	anon, _ := client.New(client.Config{Servers: c.URLs(), TLS: c.TLS(), RetryFor: 2 * time.Second})
	_, err := anon.List(ctx, api.ConfigMap, "default", client.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("anonymous list: want 401 Unauthorized, got %v", err)
	}
	if _, err := c.Client().Create(ctx, configMap("authed", nil)); err != nil {
		t.Fatalf("authenticated create: %v", err)
	}

	// Raft speaks mutual TLS: a peer without a certificate, or with a
	// server certificate of another CA, is refused; plain bytes too.
	other := pkitest.NewCA(t, "other")
	for what, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's server certificate": {pkitest.Node(t, other, pki.RoleServer, "s9").TLS()}} {
		if raftAccepts(t, c.Servers[0].IP+":7401", certs) {
			t.Errorf("raft accepted a peer with %s", what)
		}
	}
	conn, err := net.Dial("tcp", c.Servers[0].IP+":7401")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("ORCHRAFT1" + strings.Repeat("x", 64)))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("raft port kept a connection that failed the handshake open")
		}
	}
	// The API: a client certificate of another CA fails the handshake.
	cfg, err := c.TLS().Config()
	if err != nil {
		t.Fatal(err)
	}
	user := pkitest.User(t, other, "mallory", pki.UserAdmin).TLS()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &user, nil }
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if resp, err := hc.Get(c.Servers[0].URL() + "/api/v1/namespaces/default/configmaps"); err == nil {
		resp.Body.Close()
		t.Fatalf("the API accepted a client certificate of another CA: %s", resp.Status)
	}

	// A server with the wrong token: its join attempts are rejected (it
	// logs them), and the cluster never lists it.
	intruder := c.AddServerWithToken("wrong-token")
	c.Eventually(30*time.Second, "the intruder's join to be refused twice", func() bool {
		return countLines(t, intruder.LogPath, "join failed") >= 2
	})
	var members []struct {
		Name string `json:"name"`
	}
	if err := c.Client().GetJSON(ctx, "/v1/members", nil, &members); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Name == intruder.Name {
			t.Fatalf("a server with the wrong token joined gossip: %v", members)
		}
	}
}

// A restarted follower reports ready only once it has caught up with the
// leader (within the ready lag of 100 entries), not as soon as it knows
// the leader.
func TestRestartedFollowerIsReadyOnlyWhenCaughtUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	leader := c.Leader()
	var follower *testcluster.Server
	for _, s := range c.Servers {
		if s != leader {
			follower = s
			break
		}
	}
	follower.Kill()
	ctx := context.Background()
	cl := c.Client(leader.URL())
	const n = 600
	for i := range n {
		if _, err := cl.Create(ctx, configMap(fmt.Sprintf("cu-%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	hc := c.HTTPClient()
	hc.Timeout = time.Second
	c.Eventually(60*time.Second, "the follower to report ready", func() bool {
		resp, err := hc.Get(follower.URL() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// Ready means within 100 entries of the leader: an object written 110
	// entries before the newest is in the follower's own state.
	name := fmt.Sprintf("cu-%d", n-110)
	if _, err := c.Client(follower.URL()).Get(ctx, api.ConfigMap, "default", name, true); err != nil {
		t.Fatalf("the follower reported ready without %s: %v", name, err)
	}
}

// raftAccepts dials a Raft port with TLS and the given client certificates
// and reports whether the server sent its "accepted" byte.
func raftAccepts(t *testing.T, addr string, certs []tls.Certificate) bool {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs, MinVersion: tls.VersionTLS13})
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	n, err := conn.Read(b[:])
	return err == nil && n == 1 && b[0] == 0x01
}
