package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	mipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"orch.dev/orch/proxy"
)

// ownedService is a kernel virtual server and the key it implements.
type ownedService struct {
	key proxy.Key
	svc *mipvs.Service
}

// owned lists the virtual servers that are this backend's: those on a VIP
// bound to the dummy interface, and those on a node address in the NodePort
// range.
func (b *Backend) owned() ([]ownedService, error) {
	return ownedBy(b.h, b.nl, b.cfg, b.nodeIPs)
}

func ownedBy(h *mipvs.Handle, nl *netlink.Handle, cfg Config, nodeIPs []netip.Addr) ([]ownedService, error) {
	vips, _, err := vipAddrsOf(nl, cfg.Interface)
	if err != nil {
		vips = map[netip.Addr]bool{}
	}
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	var out []ownedService
	for _, s := range svcs {
		a, ok := netip.AddrFromSlice(s.Address.To4())
		if !ok || s.AddressFamily != syscall.AF_INET || s.FWMark != 0 {
			continue
		}
		if s.Protocol != unix.IPPROTO_TCP && s.Protocol != unix.IPPROTO_UDP {
			continue
		}
		k := proxy.Key{Proto: proxy.Protocol(s.Protocol), Port: s.Port}
		switch {
		case vips[a]:
			k.Addr = a
		case slices.Contains(nodeIPs, a) && s.Port >= cfg.NodePortMin && s.Port <= cfg.NodePortMax:
		default:
			continue
		}
		out = append(out, ownedService{k, s})
	}
	return out, nil
}

// Read returns the virtual servers this backend owns (and rewrites the
// masquerading sets to match them). A NodePort whose
// virtual servers differ between node addresses (or are missing on some)
// is returned with Affinity -1, which no desired state has, so the next
// Apply rewrites it on every address.
func (b *Backend) Read(ctx context.Context) (proxy.RuleSet, error) {
	if err := b.open(); err != nil {
		return nil, err
	}
	owned, err := b.owned()
	if err != nil {
		return nil, err
	}
	rs := proxy.RuleSet{}
	seen := map[proxy.Key]int{}
	for _, o := range owned {
		v, err := b.readOne(o)
		if err != nil {
			return nil, err
		}
		seen[o.key]++
		if prev, ok := rs[o.key]; ok && !prev.Equal(v) {
			prev.Affinity = -1
			continue
		}
		if _, ok := rs[o.key]; !ok {
			rs[o.key] = v
		}
	}
	for k, n := range seen {
		if k.IsNodePort() && n != len(b.nodeIPs) {
			rs[k].Affinity = -1
		}
	}
	// The VIP addresses and the masquerading sets are derived state: make
	// them match what IPVS holds, so later syncs can change them one by one.
	if err := b.syncVIPs(rs); err != nil {
		return nil, err
	}
	if err := b.resyncSets(rs); err != nil {
		return nil, err
	}
	b.state.read(rs, b.nodeIPs)
	b.vipRefs, b.epRefs = map[netip.Addr]int{}, map[netip.Addr]int{}
	for k, v := range rs {
		if !k.IsNodePort() {
			b.vipRefs[k.Addr]++
		}
		for _, e := range v.Endpoints {
			b.epRefs[e.Addr.Addr()]++
		}
	}
	return rs, nil
}

func (b *Backend) readOne(o ownedService) (*proxy.VirtualServer, error) {
	v := &proxy.VirtualServer{Key: o.key}
	if o.svc.Flags&flagPersistent != 0 {
		v.Affinity = time.Duration(o.svc.Timeout) * time.Second
	}
	if o.svc.SchedName != b.cfg.Scheduler {
		v.Affinity = -1 // not as we make it: rewrite
	}
	ds, err := b.h.GetDestinations(o.svc)
	if err != nil {
		return nil, fmt.Errorf("ipvs: destinations of %s: %w", o.key, err)
	}
	for _, d := range ds {
		a, ok := netip.AddrFromSlice(d.Address.To4())
		if !ok {
			continue
		}
		w := d.Weight
		if d.ConnectionFlags&mipvs.ConnectionFlagFwdMask != mipvs.ConnectionFlagMasq {
			w = -1 // not NAT: rewrite
		}
		v.Endpoints = append(v.Endpoints, proxy.Endpoint{Addr: netip.AddrPortFrom(a, d.Port), Weight: w})
	}
	v.Endpoints = proxy.SortEndpoints(v.Endpoints)
	return v, nil
}

// addresses are the kernel addresses a key is programmed on.
func (b *Backend) addresses(k proxy.Key) []netip.Addr {
	if k.IsNodePort() {
		return b.nodeIPs
	}
	return []netip.Addr{k.Addr}
}

func (b *Backend) service(a netip.Addr, v *proxy.VirtualServer) *mipvs.Service {
	s := &mipvs.Service{
		AddressFamily: syscall.AF_INET,
		Address:       a.AsSlice(),
		Protocol:      uint16(v.Key.Proto),
		Port:          v.Key.Port,
		SchedName:     b.cfg.Scheduler,
		Netmask:       0xffffffff,
	}
	if v.Affinity > 0 {
		s.Flags = flagPersistent
		s.Timeout = uint32(v.Affinity / time.Second)
	}
	return s
}

func destination(e proxy.Endpoint) *mipvs.Destination {
	return &mipvs.Destination{
		AddressFamily:   syscall.AF_INET,
		Address:         e.Addr.Addr().AsSlice(),
		Port:            e.Addr.Port(),
		Weight:          e.Weight,
		ConnectionFlags: mipvs.ConnectionFlagMasq,
	}
}

// Apply makes the changes virtual server by virtual server, binding a VIP
// before its first virtual server and unbinding it after its last, then
// updates the masquerading sets. Its work is proportional to the changes
// (the VIPs and endpoint addresses in use are reference-counted).
func (b *Backend) Apply(ctx context.Context, p proxy.Plan) error {
	if err := b.open(); err != nil {
		return err
	}
	err := b.apply(p)
	b.state.applied(p.Changes, err == nil)
	return err
}

func (b *Backend) apply(p proxy.Plan) error {
	if b.vipRefs == nil {
		b.vipRefs, b.epRefs = map[netip.Addr]int{}, map[netip.Addr]int{}
	}
	for _, ch := range p.Changes {
		if ch.Op == proxy.Add && !ch.Key.IsNodePort() {
			if b.vipRefs[ch.Key.Addr] == 0 {
				if err := b.bindVIP(ch.Key.Addr, true); err != nil {
					return err
				}
			}
			b.vipRefs[ch.Key.Addr]++
		}
	}
	for _, ch := range p.Changes {
		var err error
		for _, a := range b.addresses(ch.Key) {
			switch ch.Op {
			case proxy.Add, proxy.Update:
				err = b.ensure(a, ch.Old, ch.New)
			case proxy.Remove:
				if err = b.h.DelService(b.service(a, ch.Old)); notFound(err) {
					err = nil
				}
			}
			if err != nil {
				return fmt.Errorf("ipvs: %s %s on %s: %w", ch.Op, ch.Key, a, err)
			}
		}
	}
	for _, ch := range p.Changes {
		if ch.Op == proxy.Remove && !ch.Key.IsNodePort() {
			if b.vipRefs[ch.Key.Addr]--; b.vipRefs[ch.Key.Addr] <= 0 {
				delete(b.vipRefs, ch.Key.Addr)
				if err := b.bindVIP(ch.Key.Addr, false); err != nil {
					return err
				}
			}
		}
	}
	return b.syncSets(p.Changes)
}

// ensure creates or updates one kernel virtual server. old (nil for a new
// one) says which destinations exist, so only the difference is sent; if
// the kernel disagrees (EEXIST/ENOENT), it falls back to what the kernel
// reports.
func (b *Backend) ensure(a netip.Addr, old, v *proxy.VirtualServer) error {
	s := b.service(a, v)
	if old == nil || old.Affinity != v.Affinity {
		err := b.h.NewService(s)
		if errors.Is(err, unix.EEXIST) {
			err = b.h.UpdateService(s)
		}
		if err != nil {
			return err
		}
	}
	added, removed, reweighted := proxy.EndpointDiff(old, v)
	if old != nil && old.Affinity < 0 {
		// Read could not vouch for this one: take the kernel's word.
		cur, err := b.readOne(ownedService{v.Key, s})
		if err != nil {
			return err
		}
		added, removed, reweighted = proxy.EndpointDiff(cur, v)
	}
	for _, e := range added {
		err := b.h.NewDestination(s, destination(e))
		if errors.Is(err, unix.EEXIST) {
			err = b.h.UpdateDestination(s, destination(e))
		}
		if err != nil {
			return fmt.Errorf("add %s: %w", e.Addr, err)
		}
	}
	for _, e := range reweighted {
		if err := b.h.UpdateDestination(s, destination(e)); err != nil {
			return fmt.Errorf("weight %s: %w", e.Addr, err)
		}
	}
	for _, e := range removed {
		if err := b.h.DelDestination(s, destination(e)); err != nil && !notFound(err) {
			return fmt.Errorf("delete %s: %w", e.Addr, err)
		}
	}
	return nil
}
