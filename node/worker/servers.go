package worker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/node"
)

// servers holds the API clients. Their server list comes from gossip
// (the servers announce their API address), or is fixed (--dev); the last
// list known is kept in the data directory so a worker restarting while
// gossip is unreachable still knows whom to try. The clients speak HTTPS
// and trust the cluster CA only: given (Config.TLS), or sent sealed by the
// servers over gossip and opened with the cluster secret; it is kept in
// the data directory too (ca.crt).
type servers struct {
	token  string
	path   string
	caPath string

	mu    sync.Mutex
	tls   client.TLS
	list  []string
	cl    *client.Client // kubelet and registration
	hb    *client.Client // heartbeats: no long retries
	ready chan struct{}  // closed once a list is known
}

func newServers(dataDir, token string, tls client.TLS) *servers {
	return &servers{token: token, tls: tls, path: filepath.Join(dataDir, "servers.json"), caPath: filepath.Join(dataDir, "ca.crt"),
		ready: make(chan struct{})}
}

// load reads the CA and the list kept from the last run.
func (s *servers) load() {
	if b, err := os.ReadFile(s.caPath); err == nil && !s.tls.Enabled() {
		s.tls.CAPEM = b
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return
	}
	var list []string
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		for i, u := range list {
			list[i] = strings.TrimPrefix(u, "http://") // kept by an older worker
		}
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
	cl, err := client.New(client.Config{Servers: list, Token: s.token, TLS: s.tls, UserAgent: "orchd-worker", RetryFor: 10 * time.Second})
	if err != nil {
		return err
	}
	hb, err := client.New(client.Config{Servers: list, Token: s.token, TLS: s.tls, UserAgent: "orchd-worker", RetryFor: time.Second, AttemptTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	s.list, s.cl, s.hb = list, cl, hb
	if persist {
		b, _ := json.Marshal(list)
		return atomicfile.Write(s.path, b, 0o600)
	}
	return nil
}

func (s *servers) hasCA() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tls.Enabled()
}

// setCA trusts the cluster CA from now on and keeps it.
func (s *servers) setCA(pem []byte) error {
	s.mu.Lock()
	s.tls.CAPEM = pem
	s.list = nil // clients are made again with the CA
	s.mu.Unlock()
	return atomicfile.Write(s.caPath, pem, 0o644)
}

// addrs is the current server list (API host:port).
func (s *servers) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
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
		mc := node.MembershipConfig{Name: w.cfg.Name, BindAddr: w.cfg.Bind, GossipPort: w.cfg.GossipPort,
			Join: w.cfg.Join, Token: w.cfg.Token, Logger: w.log}
		if w.cfg.JoinToken != "" {
			// --join names the servers' APIs; gossip is on their default port,
			// with the key the join response gave.
			mc.Join, mc.Token, mc.GossipKey = gossipHosts(w.cfg.Join), "", w.tls.gossip()
		}
		mc.Keyring = w.keptKeyring() // keyring.go
		m, err = node.Join(mc, 5*time.Second)
		if err != nil {
			w.log.Warn("cannot join the cluster's gossip yet", "err", err)
			w.refreshKeptKeyring(ctx) // the keys may have been rotated meanwhile
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
	var keys sync.WaitGroup
	keys.Add(1)
	go func() { defer keys.Done(); m.FollowKeyring(ctx, s.fetchKeyring, w.keyringPath(), keyringEvery) }()
	defer keys.Wait() // before Leave
	if !s.hasCA() {
		ca, err := m.WaitClusterCA(time.Minute)
		for err != nil {
			w.log.Warn("waiting for the cluster CA from the servers", "err", err)
			select {
			case <-ctx.Done():
				return
			default:
			}
			ca, err = m.WaitClusterCA(time.Minute)
		}
		if err := s.setCA(pki.CertPEM(ca.Cert)); err != nil {
			w.log.Error("keeping the cluster CA", "err", err)
		}
	}
	if w.apiTLS && w.cfg.JoinToken == "" && w.tls.needsCert(time.Now()) {
		// The cluster secret opens the sealed CA: the worker certifies itself.
		ca, err := m.WaitClusterCA(time.Minute)
		if err == nil {
			err = w.tls.issueSelf(ca, time.Now())
		}
		if err != nil {
			w.log.Error("cannot issue the worker API certificate; servers cannot reach this worker's logs and exec", "err", err)
		}
	}
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
