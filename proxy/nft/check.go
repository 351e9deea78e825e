package nft

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/google/nftables"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// tracked is what the table holds as far as the backend knows: the virtual
// servers Read found and Apply changed since, and the ruleset generation at
// which the kernel was last seen to hold exactly them.
type tracked struct {
	mu    sync.Mutex
	known bool
	vss   map[proxy.Key]*proxy.VirtualServer
	// gen is the generation at which the table was last known to match vss
	// (0: not known; the next Check compares objects).
	gen uint32
	// version counts Reads and Applies, so a Check can tell one ran while
	// it was looking.
	version uint64
}

func (t *tracked) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.vss, t.gen = false, nil, 0
	t.version++
}

func (t *tracked) read(rs proxy.RuleSet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.vss, t.gen = true, maps.Clone(rs), 0
	t.version++
}

// applied records committed changes. The generation stays known only if
// it was known before, and the commits were ours alone (the generation
// moved by exactly their number).
func (t *tracked) applied(changes []proxy.Change, clean bool, before, after uint32, commits int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.version++
	if !t.known {
		return
	}
	if !clean {
		t.known, t.vss, t.gen = false, nil, 0 // the Proxier reads again after a failed apply
		return
	}
	for _, c := range changes {
		if c.Op == proxy.Remove {
			delete(t.vss, c.Key)
		} else {
			t.vss[c.Key] = c.New
		}
	}
	if t.gen == 0 || before != t.gen || after != before+uint32(commits) {
		t.gen = 0
		return
	}
	t.gen = after
}

// Check reports whether the table still holds what this backend last read
// and applied. When no transaction but its own ran since it last looked
// (the ruleset generation says so), that costs one netlink request;
// otherwise it lists the table's chains, sets and map elements (not the
// rules) and compares them with what it expects, on sockets of its own, so
// it never holds up an Apply. A hand edit inside a chain that leaves every
// object and map element in place is repaired at the next full Read.
func (b *Backend) Check(ctx context.Context) (bool, error) {
	b.checkMu.Lock()
	defer b.checkMu.Unlock()
	if b.checkConn == nil {
		c, err := nftx.Open(b.cfg.NetNS)
		if err != nil {
			return false, fmt.Errorf("nftables: %w", err)
		}
		g, err := nftx.OpenGen(b.cfg.NetNS)
		if err != nil {
			c.CloseLasting()
			return false, err
		}
		b.checkConn, b.checkGen = c, g
	}
	t := &b.state
	t.mu.Lock()
	known, gen0, version := t.known, t.gen, t.version
	t.mu.Unlock()
	if !known {
		return true, nil // nothing read yet: the Proxier reads anyway
	}
	g, err := b.checkGen.Gen()
	if err != nil {
		return false, err
	}
	if gen0 != 0 && g == gen0 {
		return true, nil
	}
	have, err := b.list(b.checkConn)
	if err != nil {
		return false, err
	}
	g2, err := b.checkGen.Gen()
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	vss := maps.Clone(t.vss)
	same := t.version == version
	t.mu.Unlock()
	if !same || g2 != g {
		return true, nil // changed while we looked: look again next time
	}
	if !have.equal(b.expected(vss)) {
		return false, nil
	}
	t.mu.Lock()
	if t.version == version {
		t.gen = g
	}
	t.mu.Unlock()
	return true, nil
}

// objects is what a table holds, by name: chains, named sets, and the
// fixed maps' and sets' elements (key bytes -> the chain a verdict goes to).
type objects struct {
	chains, sets map[string]bool
	elements     map[string]map[string]string
}

func newObjects() objects {
	o := objects{chains: map[string]bool{}, sets: map[string]bool{}, elements: map[string]map[string]string{}}
	for _, n := range fixedSets {
		o.elements[n] = map[string]string{}
	}
	return o
}

var fixedSets = []string{mapServices, mapNodePorts, setNoEPServices, setNoEPNodePort}

func (o objects) equal(p objects) bool {
	if !maps.Equal(o.chains, p.chains) || !maps.Equal(o.sets, p.sets) {
		return false
	}
	for _, n := range fixedSets {
		if !maps.Equal(o.elements[n], p.elements[n]) {
			return false
		}
	}
	return true
}

// list reads the table's objects (no rules).
func (b *Backend) list(c *nftables.Conn) (objects, error) {
	o := newObjects()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return o, fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == b.cfg.Table {
			o.chains[ch.Name] = true
		}
	}
	if len(o.chains) == 0 {
		return o, nil // no table (listing its sets would fail): drift
	}
	sets, err := c.GetSets(b.table)
	if err != nil {
		return o, fmt.Errorf("nftables: list sets: %w", err)
	}
	for _, s := range sets {
		o.sets[s.Name] = true
	}
	for _, n := range fixedSets {
		if !o.sets[n] {
			continue
		}
		elems, err := c.GetSetElements(b.set(n))
		if err != nil {
			return o, fmt.Errorf("nftables: list %s: %w", n, err)
		}
		for _, e := range elems {
			o.elements[n][string(e.Key)] = nftx.VerdictChain(e)
		}
	}
	return o, nil
}

// baseChains are the chains Init makes that hook into the kernel.
var baseChains = []string{"nat-prerouting", "nat-output", "nat-postrouting", "filter-forward", "filter-output", "filter-input"}

// expected is what the table holds when it holds exactly vss.
func (b *Backend) expected(vss map[proxy.Key]*proxy.VirtualServer) objects {
	o := newObjects()
	for _, n := range append(baseChains, "services", "masquerading", "reject", "endpoints-check", "nodeport-endpoints-check") {
		o.chains[n] = true
	}
	for _, n := range fixedSets {
		o.sets[n] = true
	}
	bt := &batch{b: b}
	for k, v := range vss {
		o.chains[svcChain(k)] = true
		for _, e := range v.Endpoints {
			o.chains[epChain(k, e.Addr)] = true
			if v.Affinity > 0 {
				o.sets[affSet(k, e.Addr, v.Affinity)] = true
			}
		}
		s, e := bt.element(v, true)
		o.elements[s.Name][string(e.Key)] = svcChain(k)
		if v.Ready() == 0 {
			s, e := bt.element(v, false)
			o.elements[s.Name][string(e.Key)] = ""
		}
	}
	return o
}
