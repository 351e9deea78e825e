package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"orch.dev/orch/internal/gossipmeta"
	"orch.dev/orch/internal/logging"
)

// Member roles and statuses as `orchctl members` shows them.
const (
	RoleServer = gossipmeta.RoleServer
	RoleWorker = gossipmeta.RoleWorker

	// No "suspect": memberlist (v0.5) keeps a member's suspicion to
	// itself (its Members() reports the embedded Node.State, which it
	// never updates), so a suspected member shows as alive until it is
	// declared dead, as in Consul's and Serf's member lists.
	StatusAlive = "alive"
	StatusDead  = "dead"
	StatusLeft  = "left"
)

type memberMeta = gossipmeta.Meta

// Member is one gossip member.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Role    string `json:"role"`
	Status  string `json:"status"`
	meta    memberMeta
}

// gossip owns the memberlist instance and a view of every member ever seen,
// including dead and departed ones.
type gossip struct {
	ml      *memberlist.Memberlist
	selfMu  sync.Mutex
	self    memberMeta // NodeMeta; Keys change with the keyring
	logger  *slog.Logger
	dataDir string

	// state and merge carry this server's state in memberlist's push-pull
	// exchanges (the sealed cluster CA, tls_gossip.go); either may be nil.
	state     func() []byte
	merge     func([]byte)
	encrypted bool                // with the keys of keyring
	keyring   *memberlist.Keyring // nil without encryption

	mu      sync.Mutex
	members map[string]*Member
	changed chan struct{}
}

// newGossip starts memberlist, encrypted with ring (gossip_keyring.go);
// a nil ring means no encryption.
func newGossip(cfg *Config, ring *gossipmeta.Keyring, self memberMeta, state func() []byte, merge func([]byte)) (*gossip, error) {
	g := &gossip{self: self, logger: cfg.Logger, dataDir: cfg.DataDir, members: map[string]*Member{}, changed: make(chan struct{}),
		state: state, merge: merge}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.GossipPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.GossipPort
	mc.Delegate = g
	mc.Events = g
	mc.Logger = logging.Std(cfg.Logger, "gossip")
	if ring != nil {
		kr, err := ring.Memberlist()
		if err != nil {
			return nil, err
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
		g.self.Keys = ring.IDs()
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	g.ml, g.keyring, g.encrypted = ml, mc.Keyring, mc.EncryptionEnabled()
	return g, nil
}

// NodeMeta, NotifyMsg, GetBroadcasts, LocalState and MergeRemoteState make
// gossip a memberlist.Delegate: metadata, and state in push-pull exchanges.
func (g *gossip) NodeMeta(limit int) []byte {
	g.selfMu.Lock()
	b := g.self.Encode()
	g.selfMu.Unlock()
	if len(b) > limit {
		g.logger.Error("gossip metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}
func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte {
	if g.state == nil {
		return nil
	}
	return g.state()
}
func (g *gossip) MergeRemoteState(buf []byte, join bool) {
	if g.merge != nil && len(buf) > 0 {
		g.merge(buf)
	}
}

// pull exchanges state with the given members now (a push-pull, as when
// joining), so that state another server just created reaches this one
// without waiting for the periodic exchange.
func (g *gossip) pull(members []Member) {
	var addrs []string
	for _, m := range members {
		if m.Name != g.ml.LocalNode().Name {
			addrs = append(addrs, m.Address)
		}
	}
	if len(addrs) > 0 {
		g.ml.Join(addrs)
	}
}

// NotifyJoin, NotifyLeave and NotifyUpdate make gossip a memberlist.EventDelegate.
func (g *gossip) NotifyJoin(n *memberlist.Node)   { g.record(n, StatusAlive) }
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.record(n, StatusAlive) }
func (g *gossip) NotifyLeave(n *memberlist.Node) {
	status := StatusDead
	if n.State == memberlist.StateLeft {
		status = StatusLeft
	}
	g.record(n, status)
}

func (g *gossip) record(n *memberlist.Node, status string) {
	meta, err := gossipmeta.Decode(n.Meta)
	if err != nil {
		g.logger.Warn("ignoring member with unreadable metadata", "member", n.Name, "err", err)
		return
	}
	m := &Member{Name: n.Name, Address: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Role: meta.Role, Status: status, meta: meta}
	g.mu.Lock()
	prev := g.members[n.Name]
	g.members[n.Name] = m
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	if prev == nil || prev.Status != status {
		g.logger.Info("member "+status, "member", n.Name, "role", meta.Role, "address", m.Address)
	}
}

// Members returns every known member, sorted by name.
func (g *gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, *m)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Member returns one member by name.
func (g *gossip) Member(name string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Changed returns a channel closed at the next membership change.
func (g *gossip) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

const peersFile = "gossip-peers.json"

// joinLoop joins the given addresses plus the peers remembered from the
// last run, retrying until one answers or stop closes.
func (g *gossip) joinLoop(addrs []string, defaultPort int, stop <-chan struct{}) {
	addrs = append(withPort(addrs, defaultPort), g.rememberedPeers()...)
	if len(addrs) == 0 {
		return
	}
	backoff := 200 * time.Millisecond
	for {
		n, err := g.ml.Join(addrs)
		if n > 0 {
			g.logger.Info("joined cluster", "contacted", n)
			return
		}
		if g.ml.NumMembers() > 1 {
			// Others joined this member meanwhile (remembered peers may be
			// gone for good, as after `orchd recover`).
			g.logger.Info("in a cluster through members that joined us; no more join attempts", "members", g.ml.NumMembers())
			return
		}
		g.logger.Warn("join failed; retrying", "addresses", addrs, "err", err, "in", backoff)
		select {
		case <-stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func withPort(addrs []string, port int) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, strconv.Itoa(port))
		}
		out = append(out, a)
	}
	return out
}

// rememberPeers saves the addresses of live members so that a restarted
// agent can rejoin without --join.
func (g *gossip) rememberPeers() {
	var addrs []string
	for _, m := range g.Members() {
		if m.Name != g.ml.LocalNode().Name && m.Status == StatusAlive {
			addrs = append(addrs, m.Address)
		}
	}
	if len(addrs) == 0 {
		return
	}
	b, _ := json.Marshal(addrs)
	// Not atomicfile.Write: this runs at every membership change (thousands
	// while simulated nodes join) and the file is only a hint (--join
	// works without it), so it is renamed into place but not fsynced.
	tmp := filepath.Join(g.dataDir, peersFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		os.Rename(tmp, filepath.Join(g.dataDir, peersFile))
	}
}

func (g *gossip) rememberedPeers() []string {
	b, err := os.ReadFile(filepath.Join(g.dataDir, peersFile))
	if err != nil {
		return nil
	}
	var addrs []string
	json.Unmarshal(b, &addrs)
	return addrs
}

// leave announces departure and stops gossip.
func (g *gossip) leave(timeout time.Duration) {
	if err := g.ml.Leave(timeout); err != nil {
		g.logger.Warn("gossip leave", "err", err)
	}
	g.ml.Shutdown()
}
