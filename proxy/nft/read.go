package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// found is what the table holds for one virtual server.
type found struct {
	svc      bool
	elem     string // chain the map element points to
	noEP     bool
	epChains []object
	affSets  []object
	active   map[string]bool // endpoint chains in the numgen map
}

// Read rebuilds the rule set from the table: chain and set names say which
// virtual server and endpoint they belong to, the service chains' numgen
// rules say which endpoints are ready (one rule dump per service chain,
// each a hash lookup in the kernel). The Proxier reads at start, after a
// failed apply and when Check found drift, not periodically. A virtual server whose objects do not add up (someone
// edited the table by hand) is deleted here, so the next Apply recreates it
// whole; so are objects with names this package would not produce.
func (b *Backend) Read(ctx context.Context) (proxy.RuleSet, error) {
	c, err := b.connect()
	if err != nil {
		return nil, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	byKey := map[proxy.Key]*found{}
	get := func(k proxy.Key) *found {
		f := byKey[k]
		if f == nil {
			f = &found{active: map[string]bool{}}
			byKey[k] = f
		}
		return f
	}
	var junkChains, junkSets []string
	for _, ch := range chains {
		if ch.Table.Name != b.cfg.Table || ch.Hooknum != nil || isFixedChain(ch.Name) {
			continue
		}
		o, ok := parseName(ch.Name)
		switch {
		case !ok || o.kind == 'a':
			junkChains = append(junkChains, ch.Name)
		case o.kind == 's':
			get(o.key).svc = true
		default:
			f := get(o.key)
			f.epChains = append(f.epChains, o)
		}
	}
	sets, err := c.GetSets(b.table)
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous || isFixedSet(s.Name) {
			continue
		}
		o, ok := parseName(s.Name)
		if !ok || o.kind != 'a' {
			junkSets = append(junkSets, s.Name)
			continue
		}
		f := get(o.key)
		f.affSets = append(f.affSets, o)
	}
	if err := b.readElements(c, get); err != nil {
		return nil, err
	}
	rs := proxy.RuleSet{}
	var broken []proxy.Key
	for k, f := range byKey {
		if f.svc {
			if err := b.readActive(c, k, f); err != nil {
				return nil, err
			}
		}
		v, ok := f.virtualServer(k)
		if !ok {
			broken = append(broken, k)
			continue
		}
		rs[k] = v
	}
	if len(broken) > 0 || len(junkChains) > 0 || len(junkSets) > 0 {
		if err := b.repair(c, byKey, broken, junkChains, junkSets); err != nil {
			b.state.forget()
			return nil, err
		}
	}
	b.state.read(rs)
	return rs, nil
}

func isFixedChain(n string) bool {
	switch n {
	case "services", "masquerading", "reject", "endpoints-check", "nodeport-endpoints-check":
		return true
	}
	return false
}

func isFixedSet(n string) bool {
	switch n {
	case mapServices, mapNodePorts, setNoEPServices, setNoEPNodePort:
		return true
	}
	return false
}

func (b *Backend) readElements(c *nftables.Conn, get func(proxy.Key) *found) error {
	for _, name := range []string{mapServices, mapNodePorts, setNoEPServices, setNoEPNodePort} {
		elems, err := c.GetSetElements(b.set(name))
		if err != nil {
			return fmt.Errorf("nftables: list %s: %w", name, err)
		}
		for _, e := range elems {
			var k proxy.Key
			if name == mapServices || name == setNoEPServices {
				a, proto, port, ok := nftx.ParseVIPKey(e.Key)
				if !ok {
					continue
				}
				k = proxy.Key{Addr: a, Proto: proxy.Protocol(proto), Port: port}
			} else {
				proto, port, ok := nftx.ParseNodePortKey(e.Key)
				if !ok {
					continue
				}
				k = proxy.Key{Proto: proxy.Protocol(proto), Port: port}
			}
			f := get(k)
			switch {
			case name == setNoEPServices || name == setNoEPNodePort:
				f.noEP = true
			default:
				f.elem = nftx.VerdictChain(e)
			}
		}
	}
	return nil
}

// readActive finds the endpoint chains the service chain chooses from: the
// rules that go to an endpoint chain without a set lookup (the numgen
// cascade; the affinity rules look their set up first).
func (b *Backend) readActive(c *nftables.Conn, k proxy.Key, f *found) error {
	rules, err := c.GetRules(b.table, b.chain(svcChain(k)))
	if err != nil {
		return fmt.Errorf("nftables: rules of %s: %w", svcChain(k), err)
	}
	for _, r := range rules {
		lookup, to := false, ""
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Lookup:
				lookup = true
			case *expr.Verdict:
				if e.Kind == expr.VerdictGoto {
					to = e.Chain
				}
			}
		}
		if to != "" && !lookup {
			f.active[to] = true
		}
	}
	return nil
}

// virtualServer assembles what was found, or reports it inconsistent.
func (f *found) virtualServer(k proxy.Key) (*proxy.VirtualServer, bool) {
	if !f.svc || f.elem != svcChain(k) {
		return nil, false
	}
	v := &proxy.VirtualServer{Key: k}
	aff := map[any]bool{}
	for _, a := range f.affSets {
		if v.Affinity != 0 && v.Affinity != a.timeout {
			return nil, false
		}
		v.Affinity = a.timeout
		aff[a.ep] = true
	}
	for _, o := range f.epChains {
		w := 0
		if f.active[epChain(k, o.ep)] {
			w = 1
		}
		v.Endpoints = append(v.Endpoints, proxy.Endpoint{Addr: o.ep, Weight: w})
		if v.Affinity > 0 && !aff[o.ep] {
			return nil, false
		}
	}
	if len(aff) != 0 && len(aff) != len(f.epChains) {
		return nil, false
	}
	if len(f.active) != v.Ready() {
		return nil, false // a rule goes to a chain that is not an endpoint chain
	}
	v.Endpoints = proxy.SortEndpoints(v.Endpoints)
	if f.noEP != (v.Ready() == 0) {
		return nil, false
	}
	return v, true
}

// repair deletes, in one transaction, everything belonging to inconsistent
// virtual servers and every object with a name this package would not make.
func (b *Backend) repair(c *nftables.Conn, byKey map[proxy.Key]*found, broken []proxy.Key, junkChains, junkSets []string) error {
	var later []func()
	for _, k := range broken {
		f := byKey[k]
		v := &proxy.VirtualServer{Key: k}
		if f.elem != "" {
			s, e := (&batch{b: b}).element(v, true)
			c.SetDeleteElements(s, []nftables.SetElement{e})
		}
		if f.noEP {
			s, e := (&batch{b: b}).element(v, false)
			c.SetDeleteElements(s, []nftables.SetElement{e})
		}
		if f.svc {
			c.FlushChain(b.chain(svcChain(k)))
			later = append(later, func() { c.DelChain(b.chain(svcChain(k))) })
		}
		for _, o := range f.epChains {
			c.FlushChain(b.chain(epChain(k, o.ep)))
			later = append(later, func() { c.DelChain(b.chain(epChain(k, o.ep))) })
		}
		for _, o := range f.affSets {
			later = append(later, func() { c.DelSet(&nftables.Set{Table: b.table, Name: affSet(k, o.ep, o.timeout)}) })
		}
	}
	for _, n := range junkChains {
		c.FlushChain(b.chain(n))
		later = append(later, func() { c.DelChain(b.chain(n)) })
	}
	for _, n := range junkSets {
		later = append(later, func() { c.DelSet(&nftables.Set{Table: b.table, Name: n}) })
	}
	for _, f := range later {
		f()
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove inconsistent objects: %w", err)
	}
	return nil
}
