package agent

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/pki"
)

// testCluster runs agents in this process on a private loopback /24, so
// tests exercise real sockets, Raft and gossip under the race detector.
type testCluster struct {
	t      *testing.T
	agents []*Agent
	logs   []*syncBuffer
}

// syncBuffer is a goroutine-safe log sink tests can search.
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

var fastRaft = RaftTiming{HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
	LeaderLeaseTimeout: 250 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}

func freeLoopbackPrefix(t *testing.T) string {
	for range 50 {
		prefix := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(99), rand.IntN(256))
		ok := true
		for _, host := range []string{"11", "12", "13"} {
			for _, port := range []string{"7400", "7401", "7402"} {
				ln, err := net.Listen("tcp", prefix+host+":"+port)
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return prefix
		}
	}
	t.Fatal("no free loopback prefix")
	return ""
}

// startCluster starts n servers (with a token when given) and waits for a
// leader that has finished its barrier and created the system namespaces.
func startCluster(t *testing.T, n int, token string, mutate ...func(*Config)) *testCluster {
	t.Helper()
	prefix := freeLoopbackPrefix(t)
	c := &testCluster{t: t}
	if token == "" && n > 1 {
		token = newClusterSecretForTest() // servers of one cluster share a secret
	}
	for i := range n {
		logs := &syncBuffer{}
		cfg := Config{
			Name: fmt.Sprintf("s%d", i+1), DataDir: t.TempDir(), BindAddr: fmt.Sprintf("%s%d", prefix, 11+i),
			Server: true, BootstrapExpect: n, Token: token, Raft: fastRaft,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		if i > 0 {
			cfg.Join = []string{prefix + "11"}
		}
		for _, m := range mutate {
			m(&cfg)
		}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		c.agents = append(c.agents, a)
		c.logs = append(c.logs, logs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, a := range c.agents {
			a.Shutdown(ctx)
		}
		if t.Failed() {
			for i, l := range c.logs {
				t.Logf("==== log of s%d\n%s", i+1, l.String())
			}
		}
	})
	c.waitFor("a ready leader with namespaces", func() bool {
		l := c.leader()
		return l != nil && l.fsm.View().Get(api.Namespace, "", "kube-public") != nil
	})
	return c
}

func (c *testCluster) leader() *Agent {
	for _, a := range c.agents {
		if !a.shuttingDown.Load() && a.raft.State() == raft.Leader {
			a.leaderMu.Lock()
			ready := a.leaderReady
			a.leaderMu.Unlock()
			if ready {
				return a
			}
		}
	}
	return nil
}

func (c *testCluster) follower() *Agent {
	for _, a := range c.agents {
		if a.raft.State() == raft.Follower {
			return a
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func (c *testCluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends a request to agent a and returns the status code and body.
func do(t *testing.T, a *Agent, method, path, contentType, body string, header ...string) (int, string) {
	t.Helper()
	// Like the Go client, API calls are retried while the cluster has no
	// leader (503) or lost it mid-write (504), writes with one request ID
	// so that a retry is applied once: a leader change on a loaded test
	// machine is the environment, not what these tests are about.
	retry := strings.HasPrefix(path, "/api")
	if retry && method != http.MethodGet && !slices.Contains(header, "X-Orch-Request-Id") {
		header = append(header, "X-Orch-Request-Id", fmt.Sprintf("test-%d", testRequestIDs.Add(1)))
	}
	for attempt := 1; ; attempt++ {
		code, b := doOnce(t, a, method, path, contentType, body, header...)
		if !retry || (code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout) || attempt == 50 {
			return code, b
		}
		time.Sleep(100 * time.Millisecond) // a client's retry backoff
	}
}

var testRequestIDs atomic.Int64

func doOnce(t *testing.T, a *Agent, method, path, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, err := newAPIRequest(context.Background(), a, method, path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := apiHTTPClient(a).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newClusterSecretForTest is a fresh cluster secret.
func newClusterSecretForTest() string {
	b := make([]byte, 16)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// newAPIRequest is a request to a's API with the cluster's credentials.
func newAPIRequest(ctx context.Context, a *Agent, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.URL()+path, body)
	if err != nil {
		return nil, err
	}
	if secret := a.ClusterSecret(); secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	return req, nil
}

// apiHTTPClient is an HTTPS client for a's API that trusts the cluster CA.
func apiHTTPClient(a *Agent) *http.Client {
	if c, ok := apiClients.Load(a); ok {
		return c.(*http.Client)
	}
	ca := a.tls.caCert()
	if ca == nil {
		panic("apiHTTPClient: the server has no CA yet")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(ca, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})}}
	c2, _ := apiClients.LoadOrStore(a, c)
	return c2.(*http.Client)
}

var apiClients sync.Map // *Agent -> *http.Client
