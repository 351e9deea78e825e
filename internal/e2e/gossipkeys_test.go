package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"orch.dev/orch/internal/gossipmeta"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/testcluster"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
	"orch.dev/orch/node/worker"
)

// keyringList is `orchctl operator gossip keyring list -o json`.
type keyringList struct {
	Primary string `json:"primary"`
	Keys    []struct {
		ID                       string
		Primary                  bool
		Holders, PrimaryOf, Live int
	} `json:"keys"`
	Members []keyringMember `json:"members"`
}

type keyringMember struct {
	Name, Status string
	Keys         []string
}

type gossipMember struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// Gossip keys rotate across three server processes and a worker that
// joined with a join token, without any member leaving the pool: a step is
// refused while a live member is not ready for it (named in the error),
// the primary key cannot be removed, and after the rotation a member with
// only the old key cannot join while one with the new key can. A server
// and the worker restarted afterwards speak the new key from what they
// kept on disk.
//
// The worker runs in the test process (a fake container runtime: this
// machine has no containerd for a worker process), with real gossip, the
// real join handshake and the real API over loopback sockets.
func TestGossipKeyRotation(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	prefix := strings.TrimSuffix(c.Servers[0].IP, "11")
	orchctl := func(args ...string) string {
		t.Helper()
		out, err := c.Orchctl(args...)
		if err != nil {
			t.Fatalf("orchctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	refused := func(want string, args ...string) {
		t.Helper()
		out, err := c.Orchctl(args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("orchctl %s: want a refusal saying %q, got %v:\n%s", strings.Join(args, " "), want, err, out)
		}
	}
	list := func() keyringList {
		t.Helper()
		var l keyringList
		if err := json.Unmarshal([]byte(orchctl("operator", "gossip", "keyring", "list", "-o", "json")), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	// every reports whether all live members hold exactly want, primary first.
	every := func(l keyringList, want ...string) bool {
		for _, m := range l.Members {
			if !slices.Equal(m.Keys, want) {
				return false
			}
		}
		return len(l.Members) == 4
	}

	w := startTokenWorker(t, c, prefix+"30")
	l := list()
	k0 := l.Primary
	c.Eventually(60*time.Second, "every member announcing the key derived from the cluster secret", func() bool { return every(list(), k0) })
	if len(l.Keys) != 1 {
		t.Fatalf("before any rotation: %+v", l)
	}

	// Watch the pool from every server for the whole rotation: nobody may
	// drop out.
	stop := make(chan struct{})
	var watch sync.WaitGroup
	var mu sync.Mutex
	var dropped []string
	for _, s := range c.Servers {
		watch.Add(1)
		go func() {
			defer watch.Done()
			cl := c.Client(s.URL())
			for {
				var ms []gossipMember
				if err := cl.GetJSON(context.Background(), "/v1/members", nil, &ms); err == nil {
					for _, m := range ms {
						if m.Status == "dead" && !strings.HasPrefix(m.Name, "probe") {
							mu.Lock()
							dropped = append(dropped, s.Name+" saw "+m.Name+" dead")
							mu.Unlock()
						}
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}

	// A live member that announces no keys (a probe that joined with the
	// current key) holds a rotation up, by name.
	key0, _ := gossipmeta.Key(c.Token())
	probe, err := probeJoin(prefix+"31", "probe-1", key0, c.Servers[0].IP)
	if err != nil {
		t.Fatalf("a member with the current key cannot join: %v", err)
	}
	k1 := orchctl("operator", "gossip", "keyring", "install")
	c.Eventually(30*time.Second, "every member but the probe holding "+k1, func() bool {
		l := list()
		n := 0
		for _, m := range l.Members {
			if slices.Contains(m.Keys, k1) {
				n++
			}
		}
		return n == 4
	})
	refused("probe-1", "operator", "gossip", "keyring", "use", k1)
	probe.Leave(time.Second)
	probe.Shutdown()
	c.Eventually(30*time.Second, "the probe gone from the pool", func() bool {
		for _, m := range list().Members {
			if m.Name == "probe-1" {
				return false
			}
		}
		return true
	})

	// Clear errors, nothing changed.
	refused("primary key", "operator", "gossip", "keyring", "remove", k0)
	refused("not found", "operator", "gossip", "keyring", "use", "0badc0de")
	refused("KEY", "operator", "gossip", "keyring", "install", "not-base64")
	refused("ID is required", "operator", "gossip", "keyring", "remove")

	out := orchctl("operator", "gossip", "keyring", "rotate", "--timeout", "90s")
	l = list()
	k2 := l.Primary
	if k2 == k0 || k2 == k1 || !strings.Contains(out, "removed") {
		t.Fatalf("rotate:\n%s\nthen %+v", out, l)
	}
	orchctl("operator", "gossip", "keyring", "remove", k1)
	c.Eventually(60*time.Second, "every member holding only "+k2, func() bool { return every(list(), k2) })
	close(stop)
	watch.Wait()
	if len(dropped) > 0 {
		t.Fatalf("members dropped out during the rotation: %v", dropped)
	}
	for _, s := range c.Servers {
		var ms []gossipMember
		if err := c.Client(s.URL()).GetJSON(context.Background(), "/v1/members", nil, &ms); err != nil {
			t.Fatal(err)
		}
		alive := 0
		for _, m := range ms {
			if m.Status == "alive" && !strings.HasPrefix(m.Name, "probe") {
				alive++
			}
		}
		if alive != 4 {
			t.Fatalf("%s sees %d members alive, want 4: %+v", s.Name, alive, ms)
		}
	}

	// The old key no longer gets in; the new one does.
	if p, err := probeJoin(prefix+"32", "probe-2", key0, c.Servers[0].IP); err == nil {
		p.Shutdown()
		t.Fatal("a member with only the removed key joined the pool")
	}
	kept, ok, err := gossipmeta.LoadKeyring(filepath.Join(w.cfg.DataDir, "tls", "gossip-keyring.json"))
	if err != nil || !ok || !slices.Equal(kept.IDs(), []string{k2}) {
		t.Fatalf("the worker's kept keyring: %v %v %v", kept.IDs(), ok, err)
	}
	if fi, err := os.Stat(filepath.Join(w.cfg.DataDir, "tls", "gossip-keyring.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker keyring file: %v %v", fi, err)
	}
	p, err := probeJoin(prefix+"33", "probe-3", kept.Primary, c.Servers[0].IP)
	if err != nil {
		t.Fatalf("a member with the new key cannot join: %v", err)
	}
	p.Leave(time.Second)
	p.Shutdown()

	// Restarts speak the new key from the data directory.
	s3 := c.Servers[2]
	s3.Stop()
	if err := s3.Start(); err != nil {
		t.Fatal(err)
	}
	w.stop()
	w.start(t)
	c.Eventually(60*time.Second, "the restarted server and worker back in the pool with "+k2, func() bool {
		l := list()
		return every(l, k2) && slices.ContainsFunc(l.Members, func(m keyringMember) bool { return m.Name == "s3" && m.Status == "alive" })
	})
	if !s3.LogContains("gossip keyring from the data directory") {
		t.Fatal("the restarted server did not start from its kept keyring")
	}
}

// probeJoin joins the pool as a bare memberlist member encrypting with
// key only, and reports whether it got in.
func probeJoin(bind, name string, key []byte, server string) (*memberlist.Memberlist, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertiseAddr = name, bind, 0, bind
	mc.SecretKey, mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = key, true, true
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, err
	}
	if _, err := ml.Join([]string{net.JoinHostPort(server, "7402")}); err != nil {
		ml.Shutdown()
		return nil, err
	}
	return ml, nil
}

// tokenWorker is an in-process worker that joined with a join token.
type tokenWorker struct {
	cfg    worker.Config
	logs   *inproc.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func startTokenWorker(t *testing.T, c *testcluster.Cluster, ip string) *tokenWorker {
	t.Helper()
	tok, err := c.Orchctl("operator", "token", "create", "--role", "worker")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, tok)
	}
	w := &tokenWorker{logs: &inproc.Buffer{}}
	w.cfg = worker.Config{Name: "wkr", DataDir: t.TempDir(), Bind: ip, Join: []string{c.Servers[0].IP},
		JoinToken: strings.TrimSpace(tok), Version: "test", HeartbeatInterval: 200 * time.Millisecond, ImagesDir: "-",
		NewRuntime: func(_ context.Context, podCIDR string) (runtime.Runtime, error) {
			return fake.New(fake.Options{PodCIDR: podCIDR}), nil
		},
		Logger: slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() {
		w.stop()
		if t.Failed() {
			t.Logf("==== worker log\n%s", w.logs.String())
		}
	})
	w.start(t)
	return w
}

func (w *tokenWorker) start(t *testing.T) {
	t.Helper()
	wk, err := worker.New(w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		if err := wk.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
}

func (w *tokenWorker) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
}
