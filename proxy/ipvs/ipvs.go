// Package ipvs is the proxy's IPVS backend: one IPVS virtual server per
// ClusterIP:port/proto (the VIP bound to a dummy interface, orch-ipvs0) and
// per node address for NodePorts, NAT forwarding, round robin, persistence
// for ClientIP affinity, and weight 0 to drain an endpoint. What IPVS cannot
// do (masquerading hairpin and outside-the-cluster traffic) is done with
// nftables in its own table ("ip orch-proxy-ipvs"); no iptables binary.
//
// It owns the dummy interface, the virtual servers whose address is on it,
// the NodePort virtual servers on node addresses, and that table. It never
// flushes IPVS or touches other virtual servers. Call Available before New:
// github.com/moby/ipvs does not fail cleanly on a kernel without IPVS.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	mipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	pnetns "orch.dev/orch/internal/netns"
	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// Defaults.
const (
	DefaultInterface = "orch-ipvs0"
	DefaultTable     = "orch-proxy-ipvs"
	flagPersistent   = 0x1 // IP_VS_SVC_F_PERSISTENT
)

// Available reports whether the kernel has IPVS: /proc/net/ip_vs exists (the
// module is loaded) or the IPVS generic-netlink family resolves (which
// also loads the module on demand where it exists).
func Available() bool {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		return true
	}
	_, err := netlink.GenlFamilyGet("IPVS")
	return err == nil
}

// Config configures a Backend.
type Config struct {
	// NetNS is the network namespace to program ("" for the caller's).
	NetNS string
	// Interface is the dummy interface holding the VIPs.
	Interface string
	// Table is the nftables table (family ip) for masquerading.
	Table string
	// ClusterCIDR is the pod network; traffic to services from outside it
	// is masqueraded. Zero masquerades all service traffic.
	ClusterCIDR netip.Prefix
	// NodeIPs are the addresses NodePorts listen on; empty means every IPv4
	// address on the node's interfaces but lo and Interface, read at Init.
	NodeIPs []netip.Addr
	// NodePortMin/Max bound the NodePort virtual servers this backend
	// considers its own (default 30000-32767).
	NodePortMin, NodePortMax uint16
	// MasqueradeBit is the packet-mark bit asking for masquerading
	// (default 0x4000).
	MasqueradeBit uint32
	// Scheduler is the IPVS scheduler (default "rr").
	Scheduler string
}

// Backend implements proxy.Backend with IPVS.
type Backend struct {
	cfg   Config
	table *nftables.Table

	mu      sync.Mutex
	h       *mipvs.Handle
	nl      *netlink.Handle
	nft     *nftables.Conn
	nodeIPs []netip.Addr
	// vipRefs counts the virtual servers on each VIP, epRefs the virtual
	// servers using each endpoint address (hairpin set), as of the last
	// Read and Apply.
	vipRefs, epRefs map[netip.Addr]int

	// What IPVS holds as far as the backend knows, for Check (check.go).
	state tracked
	// Check's own handles, so that it never waits for an Apply.
	checkMu sync.Mutex
	checkH  *mipvs.Handle
	checkNL *netlink.Handle
}

var _ proxy.Backend = (*Backend)(nil)

// New returns a backend; nothing is touched until Init.
func New(cfg Config) *Backend {
	if cfg.Interface == "" {
		cfg.Interface = DefaultInterface
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.NodePortMin == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	if cfg.MasqueradeBit == 0 {
		cfg.MasqueradeBit = 0x4000
	}
	if cfg.Scheduler == "" {
		cfg.Scheduler = mipvs.RoundRobin
	}
	return &Backend{cfg: cfg, table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4}}
}

// Close releases the netlink sockets (the rules stay).
func (b *Backend) Close() error {
	b.checkMu.Lock()
	if b.checkH != nil {
		b.checkH.Close()
		b.checkNL.Close()
		b.checkH, b.checkNL = nil, nil
	}
	b.checkMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		b.h.Close()
		b.h = nil
	}
	if b.nl != nil {
		b.nl.Close()
		b.nl = nil
	}
	if b.nft != nil {
		b.nft.CloseLasting()
		b.nft = nil
	}
	return nil
}

func (b *Backend) open() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		return nil
	}
	h, nl, err := openHandles(b.cfg.NetNS)
	if err != nil {
		return err
	}
	c, err := nftx.Open(b.cfg.NetNS)
	if err != nil {
		h.Close()
		nl.Close()
		return fmt.Errorf("nftables: %w", err)
	}
	b.h, b.nl, b.nft = h, nl, c
	return nil
}

// openHandles opens an IPVS and an rtnetlink handle in the namespace at
// nsPath ("" for the caller's).
func openHandles(nsPath string) (*mipvs.Handle, *netlink.Handle, error) {
	h, err := mipvs.New(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ipvs: %w", err)
	}
	ns := netns.None()
	if nsPath != "" {
		if ns, err = netns.GetFromPath(nsPath); err != nil {
			h.Close()
			return nil, nil, err
		}
		defer ns.Close()
	}
	nl, err := netlink.NewHandleAt(ns, syscall.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return h, nl, nil
}

// Init sets the sysctls IPVS NAT needs, creates the dummy interface and the
// masquerading table, and learns the node addresses.
func (b *Backend) Init(ctx context.Context) error {
	if !Available() {
		return proxy.ErrNoIPVS
	}
	if err := b.open(); err != nil {
		return err
	}
	for _, s := range [][2]string{
		{"net.ipv4.vs.conntrack", "1"}, // lets nftables masquerade IPVS connections
		{"net.ipv4.vs.expire_nodest_conn", "1"},
		{"net.ipv4.vs.expire_quiescent_template", "1"},
		{"net.ipv4.ip_forward", "1"},
	} {
		if err := pnetns.WriteSysctl(b.cfg.NetNS, s[0], s[1]); err != nil {
			return fmt.Errorf("ipvs: sysctl %s: %w", s[0], err)
		}
	}
	l, err := b.nl.LinkByName(b.cfg.Interface)
	if err != nil {
		if err := b.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: b.cfg.Interface}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ipvs: create %s: %w", b.cfg.Interface, err)
		}
		if l, err = b.nl.LinkByName(b.cfg.Interface); err != nil {
			return err
		}
	}
	if err := b.nl.LinkSetUp(l); err != nil {
		return err
	}
	if err := b.initTable(); err != nil {
		return err
	}
	return b.learnNodeIPs()
}

func (b *Backend) learnNodeIPs() error {
	if len(b.cfg.NodeIPs) > 0 {
		b.nodeIPs = slices.Clone(b.cfg.NodeIPs)
		return nil
	}
	links, err := b.nl.LinkList()
	if err != nil {
		return err
	}
	b.nodeIPs = nil
	for _, l := range links {
		if n := l.Attrs().Name; n == "lo" || n == b.cfg.Interface {
			continue
		}
		addrs, err := b.nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip.IsGlobalUnicast() {
				b.nodeIPs = append(b.nodeIPs, ip)
			}
		}
	}
	slices.SortFunc(b.nodeIPs, netip.Addr.Compare)
	return nil
}

// vipAddrs lists the addresses on the dummy interface.
func (b *Backend) vipAddrs() (map[netip.Addr]bool, netlink.Link, error) {
	return vipAddrsOf(b.nl, b.cfg.Interface)
}

func vipAddrsOf(nl *netlink.Handle, dummy string) (map[netip.Addr]bool, netlink.Link, error) {
	l, err := nl.LinkByName(dummy)
	if err != nil {
		return nil, nil, fmt.Errorf("ipvs: %s: %w", dummy, err)
	}
	addrs, err := nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, err
	}
	m := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			m[ip] = true
		}
	}
	return m, l, nil
}

// bindVIP binds (or unbinds) one address on the dummy interface.
func (b *Backend) bindVIP(a netip.Addr, bind bool) error {
	l, err := b.nl.LinkByName(b.cfg.Interface)
	if err != nil {
		return fmt.Errorf("ipvs: %s: %w", b.cfg.Interface, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if bind {
		if err := b.nl.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ipvs: bind %s: %w", a, err)
		}
		return nil
	}
	if err := b.nl.AddrDel(l, addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("ipvs: unbind %s: %w", a, err)
	}
	return nil
}

// syncVIPs binds exactly the ClusterIPs of rs to the dummy interface (at
// Read; Apply binds and unbinds one by one).
func (b *Backend) syncVIPs(rs proxy.RuleSet) error {
	have, l, err := b.vipAddrs()
	if err != nil {
		return err
	}
	want := map[netip.Addr]bool{}
	for k := range rs {
		if !k.IsNodePort() {
			want[k.Addr] = true
		}
	}
	for a := range want {
		if !have[a] {
			err := b.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}})
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("ipvs: bind %s: %w", a, err)
			}
		}
	}
	for a := range have {
		if !want[a] {
			err := b.nl.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}})
			if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("ipvs: unbind %s: %w", a, err)
			}
		}
	}
	return nil
}

// Cleanup removes the virtual servers this backend owns, the dummy
// interface and the table.
func (b *Backend) Cleanup(ctx context.Context) error {
	if !Available() {
		return nil
	}
	if err := b.open(); err != nil {
		return err
	}
	if err := b.learnNodeIPs(); err != nil {
		return err
	}
	owned, err := b.owned()
	if err != nil {
		return err
	}
	for _, s := range owned {
		if err := b.h.DelService(s.svc); err != nil && !notFound(err) {
			return fmt.Errorf("ipvs: delete %s: %w", s.key, err)
		}
	}
	if l, err := b.nl.LinkByName(b.cfg.Interface); err == nil {
		if err := b.nl.LinkDel(l); err != nil {
			return err
		}
	}
	return deleteTable(b.nft, b.cfg.Table)
}

func notFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}
