// Package routes owns the pod network between nodes: on every worker, a
// route to each other node's pod CIDR through that node's InternalIP (host
// gateway, as flannel's host-gw backend), kept current from the Node
// objects. The routes it installs carry their own protocol number, so at
// start it recognises and removes the ones it no longer wants, and never
// touches anyone else's.
package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

// Protocol marks orch's routes in the kernel (rtnetlink protocol 0x4f; the
// numbers below 0x10 belong to the kernel and well-known daemons).
const Protocol = netlink.RouteProtocol(0x4f)

// Route is one wanted route: Dst through the gateway Via.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

func (r Route) String() string { return r.Dst.String() + " via " + r.Via.String() }

// Desired is the route set for node self: every other node with a pod CIDR
// and an InternalIP, sorted by destination. Nodes with a bad CIDR or
// address, or whose CIDR another node already claims, are left out.
func Desired(self string, nodes []*corev1.Node) []Route {
	byDst := map[netip.Prefix]Route{}
	owner := map[netip.Prefix]string{}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		dst, err := netip.ParsePrefix(n.Spec.PodCIDR)
		via, ok := internalIP(n)
		if err != nil || !ok || !dst.Addr().Is4() {
			continue
		}
		dst = dst.Masked()
		if o, taken := owner[dst]; taken && o < n.Name {
			continue
		}
		owner[dst], byDst[dst] = n.Name, Route{Dst: dst, Via: via}
	}
	out := make([]Route, 0, len(byDst))
	for _, r := range byDst {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dst.String() < out[j].Dst.String() })
	return out
}

func internalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip, err := netip.ParseAddr(a.Address)
			return ip, err == nil && ip.Is4()
		}
	}
	return netip.Addr{}, false
}

// Manager keeps the kernel's routing table in line with the Node objects it
// is told about.
type Manager struct {
	h    *netlink.Handle
	self string
	log  *slog.Logger

	mu     sync.Mutex
	nodes  map[string]*corev1.Node
	listed bool // a full list arrived: before it, nothing is removed
	kick   chan struct{}
}

// New manages routes through h (netlink.Handle{} for the current network
// namespace) for the node named self.
func New(h *netlink.Handle, self string, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{h: h, self: self, log: log, nodes: map[string]*corev1.Node{}, kick: make(chan struct{}, 1)}
}

// Replace sets the whole node list (after a list from the API).
func (m *Manager) Replace(nodes []*corev1.Node) {
	m.mu.Lock()
	m.nodes = make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		m.nodes[n.Name] = n
	}
	m.listed = true
	m.mu.Unlock()
	m.poke()
}

// OnNode records an added or changed node.
func (m *Manager) OnNode(n *corev1.Node) {
	m.mu.Lock()
	m.nodes[n.Name] = n
	m.mu.Unlock()
	m.poke()
}

// OnNodeDelete records a deleted node.
func (m *Manager) OnNodeDelete(name string) {
	m.mu.Lock()
	delete(m.nodes, name)
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Sync makes the kernel's orch routes exactly the desired ones: missing or
// changed routes are replaced, unwanted ones deleted. Until the first full
// list it only adds.
func (m *Manager) Sync() error {
	m.mu.Lock()
	nodes := make([]*corev1.Node, 0, len(m.nodes))
	for _, n := range m.nodes {
		nodes = append(nodes, n)
	}
	listed := m.listed
	m.mu.Unlock()
	want := Desired(m.self, nodes)
	have, err := m.Current()
	if err != nil {
		return err
	}
	haveBy := map[netip.Prefix]Route{}
	for _, r := range have {
		haveBy[r.Dst] = r
	}
	var errs []error
	for _, r := range want {
		if cur, ok := haveBy[r.Dst]; ok && cur == r {
			delete(haveBy, r.Dst)
			continue
		}
		delete(haveBy, r.Dst)
		if err := m.h.RouteReplace(kernelRoute(r)); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r, err))
			continue
		}
		m.log.Info("route added", "route", r.String())
	}
	if listed {
		for _, r := range haveBy {
			if err := m.h.RouteDel(kernelRoute(r)); err != nil {
				errs = append(errs, fmt.Errorf("deleting route %s: %w", r, err))
				continue
			}
			m.log.Info("route removed", "route", r.String())
		}
	}
	return errors.Join(errs...)
}

// Current lists the routes orch installed in the main table.
func (m *Manager) Current() ([]Route, error) {
	rs, err := m.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: Protocol, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var out []Route
	for _, r := range rs {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		dst, ok1 := netip.AddrFromSlice(r.Dst.IP.To4())
		via, ok2 := netip.AddrFromSlice(r.Gw.To4())
		ones, _ := r.Dst.Mask.Size()
		if ok1 && ok2 {
			out = append(out, Route{Dst: netip.PrefixFrom(dst, ones), Via: via})
		}
	}
	return out, nil
}

func kernelRoute(r Route) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Gw:       r.Via.AsSlice(),
		Protocol: Protocol,
		Table:    254,
	}
}

// Run syncs whenever the node set changes, and every resync to repair
// drift (a route deleted by hand, an interface that came back), until ctx
// ends. Failed syncs are retried with backoff.
func (m *Manager) Run(ctx context.Context, resync time.Duration) {
	t := time.NewTicker(resync)
	defer t.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		case <-retry.C:
		}
		if err := m.Sync(); err != nil {
			m.log.Warn("syncing pod network routes", "err", err)
			retry.Reset(backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}
