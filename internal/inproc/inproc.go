// Package inproc runs orch servers inside a test process: real agents with
// Raft, gossip and the HTTP API on their own loopback addresses, so that
// tests of leader components (scheduler, controllers) exercise the real
// write path under the race detector without building binaries.
package inproc

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// FastRaft are Raft timings for tests: elections in about a second, not
// so short that a race-instrumented process on a busy 2-core machine
// misses heartbeats and holds spurious elections.
var FastRaft = agent.RaftTiming{HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
	LeaderLeaseTimeout: 250 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}

// Cluster is a set of in-process servers.
type Cluster struct {
	t      testing.TB
	Agents []*agent.Agent
	Logs   []*Buffer
}

// Buffer is a goroutine-safe log sink tests can search.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Options configure a cluster.
type Options struct {
	Servers int    // default 1
	Token   string // cluster secret; default: a fresh one for several servers
	// Configure adjusts each server's configuration.
	Configure func(*agent.Config)
	// Setup registers leader components (OnLeader) and handlers on each
	// agent before it starts.
	Setup func(*agent.Agent)
}

func freeLoopbackPrefix(t testing.TB) string {
	for range 50 {
		prefix := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(99), rand.IntN(256))
		ok := true
		for _, host := range []string{"11", "12", "13", "14"} {
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

// Start starts the servers and waits for a ready leader with the system
// objects created.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Servers == 0 {
		opts.Servers = 1
	}
	if opts.Token == "" && opts.Servers > 1 {
		b := make([]byte, 16)
		crand.Read(b)
		opts.Token = hex.EncodeToString(b)
	}
	prefix := freeLoopbackPrefix(t)
	c := &Cluster{t: t}
	for i := range opts.Servers {
		logs := &Buffer{}
		cfg := agent.Config{
			Name: fmt.Sprintf("s%d", i+1), DataDir: t.TempDir(), BindAddr: fmt.Sprintf("%s%d", prefix, 11+i),
			Server: true, BootstrapExpect: opts.Servers, Token: opts.Token, Raft: FastRaft,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		if i > 0 {
			cfg.Join = []string{prefix + "11"}
		}
		if opts.Configure != nil {
			opts.Configure(&cfg)
		}
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if opts.Setup != nil {
			opts.Setup(a)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		c.Agents = append(c.Agents, a)
		c.Logs = append(c.Logs, logs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, a := range c.Agents {
			a.Shutdown(ctx)
		}
		if t.Failed() {
			for i, l := range c.Logs {
				t.Logf("==== log of s%d\n%s", i+1, l.String())
			}
		}
	})
	c.WaitFor(20*time.Second, "a ready leader with the system objects", func() bool {
		l := c.Leader()
		return l != nil && l.View().Get(api.PriorityClass, "", api.SystemNodeCritical) != nil &&
			l.View().Get(api.Namespace, "", "kube-public") != nil
	})
	return c
}

// Leader is the server that leads and has finished its barrier, or nil.
func (c *Cluster) Leader() *agent.Agent {
	for _, a := range c.Agents {
		if a.IsReadyLeader() {
			return a
		}
	}
	return nil
}

// Followers are the servers that do not lead.
func (c *Cluster) Followers() []*agent.Agent {
	var out []*agent.Agent
	for _, a := range c.Agents {
		if a.RaftState() == raft.Follower {
			out = append(out, a)
		}
	}
	return out
}

// Client returns a Go client for every server.
func (c *Cluster) Client() *client.Client {
	cl, err := client.New(client.Config{Servers: c.URLs(), Token: c.Token(), TLS: c.TLS(), RetryFor: 20 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// WaitFor polls cond until it holds, failing the test after timeout.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URLs are the servers' API URLs (https://).
func (c *Cluster) URLs() []string {
	var urls []string
	for _, a := range c.Agents {
		urls = append(urls, a.URL())
	}
	return urls
}

// TLS is the client TLS configuration that trusts the cluster CA.
func (c *Cluster) TLS() client.TLS { return client.TLS{CAPEM: c.Agents[0].CACertPEM()} }

// Token is the cluster secret (the one a single server generated when
// started without one).
func (c *Cluster) Token() string { return c.Agents[0].ClusterSecret() }
