// Package nft is the proxy's nftables backend: it programs virtual servers
// into its own table ("ip orch-proxy") with a verdict map keyed by
// VIP . protocol . port (O(1) lookup however many services there are), one
// chain per virtual server choosing an endpoint with numgen (a cascade of
// "numgen random mod (N-i) == 0 goto endpoint-i" rules, no set per
// service), one chain per endpoint doing the DNAT, per-endpoint sets for
// ClientIP affinity, and masquerading for hairpin and outside-the-cluster
// NodePort traffic. Each sync is one transaction holding only the changed
// virtual servers' objects; Check tells cheaply whether anyone changed the
// table since (see check.go).
//
// It owns that table and nothing else: it never touches other tables,
// flushes the ruleset, or runs the nft binary.
package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// Names of the fixed objects in the table.
const (
	DefaultTable = "orch-proxy"

	mapServices     = "service-ips"           // VIP . proto . port : goto svc chain
	mapNodePorts    = "service-nodeports"     // proto . port : goto svc chain
	setNoEPServices = "no-endpoint-services"  // VIP . proto . port, rejected
	setNoEPNodePort = "no-endpoint-nodeports" // proto . port, rejected
)

// Config configures a Backend.
type Config struct {
	// Table name (family ip); default "orch-proxy".
	Table string
	// NetNS is the network namespace to program (a path such as
	// /run/netns/x or /proc/PID/ns/net); "" is the caller's.
	NetNS string
	// ClusterCIDR is the pod network: NodePort traffic from outside it is
	// masqueraded so replies come back through this node. Zero masquerades
	// all NodePort traffic.
	ClusterCIDR netip.Prefix
	// MasqueradeBit is the packet-mark bit that asks for masquerading
	// (default 0x4000, as kube-proxy).
	MasqueradeBit uint32
	// MaxBatch bounds the kernel messages sent in one transaction; a larger
	// sync (in practice only a full sync at start) is split between virtual
	// servers (default 20000: the kernel acknowledges and echoes every
	// message at commit, and many more overflow the socket's receive
	// buffer).
	MaxBatch int
}

// Backend implements proxy.Backend with nftables.
type Backend struct {
	cfg   Config
	table *nftables.Table

	mu   sync.Mutex
	conn *nftables.Conn
	genc *nftx.GenConn

	// What the table holds as far as this backend knows, for Check; see
	// check.go.
	state tracked
	// Check's own sockets, so that it never waits for an Apply.
	checkMu   sync.Mutex
	checkConn *nftables.Conn
	checkGen  *nftx.GenConn
}

var _ proxy.Backend = (*Backend)(nil)

// New returns a backend; nothing is touched until Init.
func New(cfg Config) *Backend {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.MasqueradeBit == 0 {
		cfg.MasqueradeBit = 0x4000
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 20000
	}
	return &Backend{cfg: cfg, table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4}}
}

func (b *Backend) connect() (*nftables.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		return b.conn, nil
	}
	c, err := nftx.Open(b.cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	g, err := nftx.OpenGen(b.cfg.NetNS)
	if err != nil {
		c.CloseLasting()
		return nil, err
	}
	b.conn, b.genc = c, g
	return c, nil
}

// Close releases the netlink sockets (the rules stay).
func (b *Backend) Close() error {
	b.checkMu.Lock()
	if b.checkConn != nil {
		b.checkConn.CloseLasting()
		b.checkGen.Close()
		b.checkConn, b.checkGen = nil, nil
	}
	b.checkMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil
	}
	err := b.conn.CloseLasting()
	b.genc.Close()
	b.conn, b.genc = nil, nil
	return err
}

func (b *Backend) set(name string) *nftables.Set {
	s := &nftables.Set{Table: b.table, Name: name}
	switch name {
	case mapServices:
		s.IsMap, s.KeyType, s.DataType = true, nftx.VIPKeyType, nftables.TypeVerdict
	case mapNodePorts:
		s.IsMap, s.KeyType, s.DataType = true, nftx.NodePortKeyType, nftables.TypeVerdict
	case setNoEPServices:
		s.KeyType = nftx.VIPKeyType
	case setNoEPNodePort:
		s.KeyType = nftx.NodePortKeyType
	}
	s.Concatenation = true
	return s
}

func (b *Backend) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.table}
}

// Init creates the table, its maps and sets, and the fixed chains. The fixed
// chains are rewritten in one transaction (they are a dozen rules); the
// per-service objects are left alone.
func (b *Backend) Init(ctx context.Context) error {
	c, err := b.connect()
	if err != nil {
		return err
	}
	c.AddTable(b.table)
	for _, n := range []string{mapServices, mapNodePorts, setNoEPServices, setNoEPNodePort} {
		if err := c.AddSet(b.set(n), nil); err != nil {
			return err
		}
	}
	bit := b.cfg.MasqueradeBit
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio int32) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: b.table, Type: typ, Hooknum: hook, Priority: nftx.Priority(prio)}
		c.AddChain(ch)
		c.FlushChain(ch)
		return ch
	}
	plain := func(name string) *nftables.Chain {
		ch := b.chain(name)
		c.AddChain(ch)
		c.FlushChain(ch)
		return ch
	}
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: nftx.Join(e...)})
	}
	jump := func(kind expr.VerdictKind, to string) []expr.Any {
		return []expr.Any{&expr.Verdict{Kind: kind, Chain: to}}
	}
	// Regular chains first: base chains jump to them.
	services := plain("services")
	rule(services, nftx.VIPTuple(), []expr.Any{nftx.VMap(mapServices)})
	rule(services, nftx.DaddrLocal(), nftx.NotLoopback(), nftx.PortTuple(), []expr.Any{nftx.VMap(mapNodePorts)})
	masq := plain("masquerading")
	rule(masq, nftx.MarkUnsetReturn(bit))
	rule(masq, nftx.ClearMark(bit), []expr.Any{nftx.Masquerade()})
	reject := plain("reject")
	rule(reject, []expr.Any{nftx.L4Proto(nftx.Reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: nftx.Reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
	rule(reject, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})
	check := plain("endpoints-check")
	rule(check, nftx.VIPTuple(), []expr.Any{nftx.Lookup(setNoEPServices)}, jump(expr.VerdictGoto, "reject"))
	npCheck := plain("nodeport-endpoints-check")
	rule(npCheck, nftx.DaddrLocal(), nftx.PortTuple(), []expr.Any{nftx.Lookup(setNoEPNodePort)}, jump(expr.VerdictGoto, "reject"))

	rule(base("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -100), jump(expr.VerdictJump, "services"))
	// "priority dstnat" is refused for nat output; -100 is the same value.
	rule(base("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, -100), jump(expr.VerdictJump, "services"))
	rule(base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100), jump(expr.VerdictJump, "masquerading"))
	// A VIP without ready endpoints is not DNATed; reject it here rather than
	// let it follow the default route off the node.
	rule(base("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward, -10), nftx.CtNew(), jump(expr.VerdictJump, "endpoints-check"))
	rule(base("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, -10), nftx.CtNew(), jump(expr.VerdictJump, "endpoints-check"))
	rule(base("filter-input", nftables.ChainTypeFilter, nftables.ChainHookInput, -10), nftx.CtNew(), jump(expr.VerdictJump, "nodeport-endpoints-check"))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: init table %s: %w", b.cfg.Table, err)
	}
	return nil
}

// Cleanup deletes the table and everything in it.
func (b *Backend) Cleanup(ctx context.Context) error {
	c, err := b.connect()
	if err != nil {
		return err
	}
	b.state.forget()
	return DeleteTable(c, b.cfg.Table)
}

// DeleteTable deletes table "ip name" if it exists.
func DeleteTable(c *nftables.Conn, name string) error {
	tabs, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	for _, t := range tabs {
		if t.Name == name {
			c.DelTable(t)
			if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("nftables: delete table %s: %w", name, err)
			}
		}
	}
	return nil
}
