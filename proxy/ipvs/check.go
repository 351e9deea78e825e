package ipvs

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"orch.dev/orch/proxy"
)

// tracked is what IPVS holds as far as the backend knows: the virtual
// servers Read found and Apply changed since, and the node addresses
// NodePorts are on.
type tracked struct {
	mu      sync.Mutex
	known   bool
	vss     map[proxy.Key]*proxy.VirtualServer
	nodeIPs []netip.Addr
	version uint64 // counts Reads and Applies
}

func (t *tracked) read(rs proxy.RuleSet, nodeIPs []netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.vss, t.nodeIPs = true, maps.Clone(rs), slices.Clone(nodeIPs)
	t.version++
}

func (t *tracked) applied(changes []proxy.Change, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.version++
	if !t.known {
		return
	}
	if !ok {
		t.known, t.vss = false, nil // the Proxier reads again after a failed apply
		return
	}
	for _, c := range changes {
		if c.Op == proxy.Remove {
			delete(t.vss, c.Key)
		} else {
			t.vss[c.Key] = c.New
		}
	}
}

// Check reports whether IPVS still holds the virtual servers this backend
// last read and applied (each key on every address it belongs on, with its
// scheduler and persistence; not the destinations) and the dummy interface
// their VIPs. It lists the virtual servers and the dummy's addresses (one
// dump each, no per-service request) on handles of its own, so it never
// waits for an Apply; if an Apply ran meanwhile it reports no drift and is
// asked again next time.
func (b *Backend) Check(ctx context.Context) (bool, error) {
	b.checkMu.Lock()
	defer b.checkMu.Unlock()
	t := &b.state
	t.mu.Lock()
	known, version, nodeIPs := t.known, t.version, t.nodeIPs
	t.mu.Unlock()
	if !known {
		return true, nil // nothing read yet: the Proxier reads anyway
	}
	if b.checkH == nil {
		h, nl, err := openHandles(b.cfg.NetNS)
		if err != nil {
			return false, err
		}
		b.checkH, b.checkNL = h, nl
	}
	owned, err := ownedBy(b.checkH, b.checkNL, b.cfg, nodeIPs)
	if err != nil {
		return false, err
	}
	vips, _, err := vipAddrsOf(b.checkNL, b.cfg.Interface)
	if err != nil {
		return false, nil // no dummy interface: drift
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.version != version {
		return true, nil // an Apply ran while we looked: look again next time
	}
	seen := map[proxy.Key]int{}
	for _, o := range owned {
		v, ok := t.vss[o.key]
		if !ok || o.svc.SchedName != b.cfg.Scheduler || !sameAffinity(o, v) {
			return false, nil
		}
		seen[o.key]++
	}
	want := map[netip.Addr]bool{}
	for k := range t.vss {
		n := 1
		if k.IsNodePort() {
			n = len(nodeIPs)
		} else {
			want[k.Addr] = true
		}
		if seen[k] != n {
			return false, nil
		}
	}
	return maps.Equal(vips, want), nil
}

func sameAffinity(o ownedService, v *proxy.VirtualServer) bool {
	persistent := o.svc.Flags&flagPersistent != 0
	if v.Affinity <= 0 {
		return !persistent && v.Affinity == 0
	}
	return persistent && int64(o.svc.Timeout) == int64(v.Affinity.Seconds())
}
