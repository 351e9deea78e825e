package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"orch.dev/orch/internal/gossipmeta"
	"orch.dev/orch/internal/logging"
	"orch.dev/orch/internal/pki"
)

// MembershipConfig says how a worker joins gossip.
type MembershipConfig struct {
	Name       string
	BindAddr   string
	GossipPort int
	Join       []string // any member's address, host or host:port
	Token      string   // cluster token (gossip encryption)
	// GossipKey, instead of Token, is the gossip key itself (a worker that
	// joined with a join token gets it in the join response).
	GossipKey []byte
	// Keyring, when set, wins over both: the cluster's keyring as this
	// member last followed it (keyring.go).
	Keyring *gossipmeta.Keyring
	Logger  *slog.Logger
}

// Membership is a worker's place in gossip: through it the worker learns
// the API servers, with no fixed server list, and the sealed cluster CA
// the servers share (ClusterCA).
type Membership struct {
	ml    *memberlist.Memberlist
	d     *workerDelegate
	token string
	log   *slog.Logger

	ringMu  sync.Mutex
	ring    *memberlist.Keyring // nil without encryption
	version uint64              // gossipmeta.Keyring.Version of ring
}

type workerDelegate struct {
	mu       sync.Mutex
	meta     gossipmeta.Meta
	sealedCA []byte // the last one a server sent (gossipmeta.State)
	// servers are the live servers by name, copied in memberlist's event
	// callbacks: a *memberlist.Node that Members returns may change under
	// the reader (its Meta, when a server announces new gossip keys).
	servers map[string]serverMember
}

type serverMember struct {
	gossip string // host:port
	http   string // API address
}

// NotifyJoin, NotifyUpdate and NotifyLeave make workerDelegate a
// memberlist.EventDelegate; memberlist calls them with its lock held, so
// the node is read here and nowhere else.
func (d *workerDelegate) NotifyJoin(n *memberlist.Node)   { d.note(n, true) }
func (d *workerDelegate) NotifyUpdate(n *memberlist.Node) { d.note(n, true) }
func (d *workerDelegate) NotifyLeave(n *memberlist.Node)  { d.note(n, false) }

func (d *workerDelegate) note(n *memberlist.Node, alive bool) {
	meta, err := gossipmeta.Decode(n.Meta)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.servers == nil {
		d.servers = map[string]serverMember{}
	}
	if !alive || err != nil || meta.Role != gossipmeta.RoleServer {
		delete(d.servers, n.Name)
		return
	}
	d.servers[n.Name] = serverMember{gossip: n.Address(), http: meta.HTTP}
}

func (d *workerDelegate) serverMembers() []serverMember {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]serverMember, 0, len(d.servers))
	for _, s := range d.servers {
		out = append(out, s)
	}
	return out
}

func (d *workerDelegate) NodeMeta(int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta.Encode()
}
func (*workerDelegate) NotifyMsg([]byte)                {}
func (*workerDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (*workerDelegate) LocalState(bool) []byte          { return nil }
func (d *workerDelegate) MergeRemoteState(buf []byte, join bool) {
	var st gossipmeta.State
	if json.Unmarshal(buf, &st) != nil || st.V != gossipmeta.StateV1 || len(st.SealedCA) == 0 {
		return
	}
	d.mu.Lock()
	d.sealedCA = st.SealedCA
	d.mu.Unlock()
}

// ErrNoClusterCA means no server has sent the cluster CA yet.
var ErrNoClusterCA = errors.New("no server has sent the cluster CA over gossip yet")

// ClusterCA opens the sealed CA the servers sent with the cluster secret
// (--token): the secret proves the CA is the cluster's, and a worker
// holding it may issue its own certificate.
func (m *Membership) ClusterCA() (*pki.CA, error) {
	m.d.mu.Lock()
	b := m.d.sealedCA
	m.d.mu.Unlock()
	if b == nil {
		return nil, ErrNoClusterCA
	}
	var s pki.SealedCA
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return s.Open([]byte(m.token))
}

// WaitClusterCA waits for ClusterCA, asking the servers again now and then.
func (m *Membership) WaitClusterCA(timeout time.Duration) (*pki.CA, error) {
	deadline := time.Now().Add(timeout)
	for {
		ca, err := m.ClusterCA()
		if !errors.Is(err, ErrNoClusterCA) || time.Now().After(deadline) {
			return ca, err
		}
		var addrs []string
		for _, s := range m.d.serverMembers() {
			addrs = append(addrs, s.gossip)
		}
		if len(addrs) > 0 {
			m.ml.Join(addrs) // a push-pull: the servers send their state
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Join joins gossip as a worker, retrying until a member answers or the
// timeout passes.
func Join(cfg MembershipConfig, timeout time.Duration) (*Membership, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.GossipPort
	mc.AdvertiseAddr = cfg.BindAddr
	mc.AdvertisePort = cfg.GossipPort
	d := &workerDelegate{meta: gossipmeta.Meta{Role: gossipmeta.RoleWorker}}
	mc.Delegate = d
	mc.Events = d
	mc.Logger = logging.Std(cfg.Logger, "gossip")
	var ring *gossipmeta.Keyring
	switch {
	case cfg.Keyring != nil:
		ring = cfg.Keyring
	case cfg.Token != "":
		k, err := gossipmeta.DefaultKeyring(cfg.Token)
		if err != nil {
			return nil, err
		}
		ring = &k
	case len(cfg.GossipKey) > 0:
		ring = &gossipmeta.Keyring{Keys: [][]byte{cfg.GossipKey}, Primary: cfg.GossipKey}
	}
	var version uint64
	if ring != nil {
		kr, err := ring.Memberlist()
		if err != nil {
			return nil, err
		}
		mc.Keyring, mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = kr, true, true
		d.meta.Keys, version = ring.IDs(), ring.Version
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	var addrs []string
	for _, a := range cfg.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, "7402")
		}
		addrs = append(addrs, a)
	}
	deadline := time.Now().Add(timeout)
	for {
		n, err := ml.Join(addrs)
		if n > 0 {
			return &Membership{ml: ml, d: d, token: cfg.Token, log: cfg.Logger, ring: mc.Keyring, version: version}, nil
		}
		if time.Now().After(deadline) {
			ml.Shutdown()
			return nil, fmt.Errorf("--join %v: no member answered: %v", cfg.Join, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Servers returns the API addresses (host:port) of the alive servers,
// sorted; clients with the cluster CA speak HTTPS to them.
func (m *Membership) Servers() []string {
	var out []string
	for _, s := range m.d.serverMembers() {
		if s.http != "" {
			out = append(out, s.http)
		}
	}
	sort.Strings(out)
	return out
}

// WaitServers waits until gossip knows at least one server.
func (m *Membership) WaitServers(timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if s := m.Servers(); len(s) > 0 {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("gossip knows no API server after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leave announces departure and stops gossip.
func (m *Membership) Leave() {
	m.ml.Leave(2 * time.Second)
	m.ml.Shutdown()
}

// LocalAddr is the address this member gossips from.
func (m *Membership) LocalAddr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}
