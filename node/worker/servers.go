package worker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/node"
	"orch.dev/orch/node/kubelet"
)

// servers holds the API clients. Their server list comes from gossip
// (the servers announce their API address), or is fixed (--dev); the last
// list known is kept in the data directory so a worker restarting while
// gossip is unreachable still knows whom to try.
type servers struct {
	token string
	path  string

	mu    sync.Mutex
	list  []string
	cl    *client.Client // kubelet and registration
	hb    *client.Client // heartbeats: no long retries
	ready chan struct{}  // closed once a list is known
}

func newServers(dataDir, token string) *servers {
	return &servers{token: token, path: filepath.Join(dataDir, "servers.json"), ready: make(chan struct{})}
}

// load reads the list kept from the last run.
func (s *servers) load() {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return
	}
	var list []string
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		s.set(list, false)
	}
}

// set switches to a new server list (no-op when unchanged).
func (s *servers) set(list []string, persist bool) error {
	list = slices.Clone(list)
	slices.Sort(list)
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(list, s.list) || len(list) == 0 {
		return nil
	}
	cl, err := client.New(client.Config{Servers: list, Token: s.token, UserAgent: "orchd-worker", RetryFor: 10 * time.Second})
	if err != nil {
		return err
	}
	hb, err := client.New(client.Config{Servers: list, Token: s.token, UserAgent: "orchd-worker", RetryFor: time.Second, AttemptTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	if s.list == nil {
		close(s.ready)
	}
	s.list, s.cl, s.hb = list, cl, hb
	if persist {
		b, _ := json.Marshal(list)
		return kubelet.WriteFileAtomic(s.path, b, 0o600)
	}
	return nil
}

func (s *servers) client() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cl
}

func (s *servers) heartbeatClient() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hb
}

// follow joins gossip (retrying until it works) and then keeps the list
// in step with the servers gossip announces, until ctx ends.
func (s *servers) follow(ctx context.Context, w *Worker) {
	var m *node.Membership
	delay := time.Second
	for m == nil {
		var err error
		m, err = node.Join(node.MembershipConfig{Name: w.cfg.Name, BindAddr: w.cfg.Bind, GossipPort: w.cfg.GossipPort,
			Join: w.cfg.Join, Token: w.cfg.Token, Logger: w.log}, 5*time.Second)
		if err != nil {
			w.log.Warn("cannot join the cluster's gossip yet", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
		}
	}
	defer m.Leave()
	w.log.Info("joined gossip", "addr", m.LocalAddr())
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if list := m.Servers(); len(list) > 0 {
			if err := s.set(list, true); err != nil {
				w.log.Warn("using the servers gossip announces", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
