package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// batch collects the kernel messages of one transaction.
type batch struct {
	b         *Backend
	c         *nftables.Conn
	n         int // messages queued, roughly
	commits   int // transactions committed
	committed int // changes committed
}

// Apply makes the changes in one transaction (more only past MaxBatch
// messages); a virtual server's change is never split, so every virtual
// server is always either as before or as after. Only the changed virtual
// servers' chains and map elements are touched.
func (b *Backend) Apply(ctx context.Context, p proxy.Plan) error {
	c, err := b.connect()
	if err != nil {
		return err
	}
	before, genErr := b.genc.Gen()
	bt := &batch{b: b, c: c}
	err = bt.run(p.Changes)
	after, afterErr := b.genc.Gen()
	b.state.applied(p.Changes[:bt.committed], err == nil && genErr == nil && afterErr == nil, before, after, bt.commits)
	return err
}

func (bt *batch) run(changes []proxy.Change) error {
	for i, ch := range changes {
		var err error
		switch ch.Op {
		case proxy.Add:
			err = bt.add(ch.New)
		case proxy.Update:
			err = bt.update(ch.Old, ch.New)
		case proxy.Remove:
			bt.remove(ch.Old)
		}
		if err != nil {
			return fmt.Errorf("nftables: %s %s: %w", ch.Op, ch.Key, err)
		}
		if bt.n >= bt.b.cfg.MaxBatch {
			if err := bt.flush(); err != nil {
				return err
			}
			bt.committed = i + 1
		}
	}
	if err := bt.flush(); err != nil {
		return err
	}
	bt.committed = len(changes)
	return nil
}

func (bt *batch) flush() error {
	if bt.n == 0 {
		return nil
	}
	bt.n = 0
	if err := bt.c.Flush(); err != nil {
		return fmt.Errorf("nftables: transaction: %w", err)
	}
	bt.commits++
	return nil
}

func (bt *batch) element(v *proxy.VirtualServer, data bool) (*nftables.Set, nftables.SetElement) {
	k := v.Key
	e := nftables.SetElement{}
	var s *nftables.Set
	if k.IsNodePort() {
		e.Key = nftx.NodePortKey(uint8(k.Proto), k.Port)
		s = bt.b.set(mapNodePorts)
		if !data {
			s = bt.b.set(setNoEPNodePort)
		}
	} else {
		e.Key = nftx.VIPKey(k.Addr, uint8(k.Proto), k.Port)
		s = bt.b.set(mapServices)
		if !data {
			s = bt.b.set(setNoEPServices)
		}
	}
	if data {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: svcChain(k)}
	}
	return s, e
}

func (bt *batch) setNoEndpoints(v *proxy.VirtualServer, on bool) error {
	s, e := bt.element(v, false)
	bt.n++
	if on {
		return bt.c.SetAddElements(s, []nftables.SetElement{e})
	}
	return bt.c.SetDeleteElements(s, []nftables.SetElement{e})
}

func (bt *batch) add(v *proxy.VirtualServer) error {
	svc := bt.b.chain(svcChain(v.Key))
	bt.c.AddChain(svc)
	bt.n++
	for _, e := range v.Endpoints {
		if err := bt.addEndpoint(v, e); err != nil {
			return err
		}
	}
	if err := bt.writeService(v); err != nil {
		return err
	}
	s, e := bt.element(v, true)
	bt.n++
	if err := bt.c.SetAddElements(s, []nftables.SetElement{e}); err != nil {
		return err
	}
	if v.Ready() == 0 {
		return bt.setNoEndpoints(v, true)
	}
	return nil
}

func (bt *batch) update(old, v *proxy.VirtualServer) error {
	added, removed, _ := proxy.EndpointDiff(old, v)
	if old.Affinity != v.Affinity {
		// Every endpoint chain names its affinity set: new sets, rewritten
		// chains, then the old sets go below.
		for _, e := range old.Endpoints {
			if _, ok := v.Endpoint(e.Addr); ok {
				if err := bt.writeEndpoint(v, e, true); err != nil {
					return err
				}
			}
		}
	}
	for _, e := range added {
		if err := bt.addEndpoint(v, e); err != nil {
			return err
		}
	}
	if err := bt.writeService(v); err != nil {
		return err
	}
	for _, e := range removed {
		bt.delEndpoint(old, e)
	}
	if old.Affinity != v.Affinity && old.Affinity > 0 {
		for _, e := range old.Endpoints {
			if _, ok := v.Endpoint(e.Addr); ok {
				bt.c.DelSet(&nftables.Set{Table: bt.b.table, Name: affSet(old.Key, e.Addr, old.Affinity)})
				bt.n++
			}
		}
	}
	if was, is := old.Ready() == 0, v.Ready() == 0; was != is {
		return bt.setNoEndpoints(v, is)
	}
	return nil
}

func (bt *batch) remove(v *proxy.VirtualServer) {
	s, e := bt.element(v, true)
	bt.c.SetDeleteElements(s, []nftables.SetElement{e})
	if v.Ready() == 0 {
		bt.setNoEndpoints(v, false)
	}
	svc := bt.b.chain(svcChain(v.Key))
	bt.c.FlushChain(svc)
	for _, e := range v.Endpoints {
		bt.delEndpoint(v, e)
	}
	bt.c.DelChain(svc)
	bt.n += 3
}

func (bt *batch) addEndpoint(v *proxy.VirtualServer, e proxy.Endpoint) error {
	bt.c.AddChain(bt.b.chain(epChain(v.Key, e.Addr)))
	bt.n++
	return bt.writeEndpoint(v, e, false)
}

func (bt *batch) delEndpoint(v *proxy.VirtualServer, e proxy.Endpoint) {
	ch := bt.b.chain(epChain(v.Key, e.Addr))
	bt.c.FlushChain(ch)
	bt.c.DelChain(ch)
	bt.n += 2
	if v.Affinity > 0 {
		bt.c.DelSet(&nftables.Set{Table: bt.b.table, Name: affSet(v.Key, e.Addr, v.Affinity)})
		bt.n++
	}
}

// writeEndpoint (re)writes an endpoint chain: mark hairpin traffic for
// masquerading, remember the client for affinity, DNAT.
func (bt *batch) writeEndpoint(v *proxy.VirtualServer, e proxy.Endpoint, flush bool) error {
	ch := bt.b.chain(epChain(v.Key, e.Addr))
	if flush {
		bt.c.FlushChain(ch)
		bt.n++
	}
	rule := func(ex ...[]expr.Any) {
		bt.c.AddRule(&nftables.Rule{Table: bt.b.table, Chain: ch, Exprs: nftx.Join(ex...)})
		bt.n++
	}
	rule(nftx.SaddrIs(e.Addr.Addr()), nftx.SetMark(bt.b.cfg.MasqueradeBit))
	if v.Affinity > 0 {
		set := &nftables.Set{Table: bt.b.table, Name: affSet(v.Key, e.Addr, v.Affinity), KeyType: nftables.TypeIPAddr,
			HasTimeout: true, Timeout: v.Affinity, Dynamic: true}
		if err := bt.c.AddSet(set, nil); err != nil {
			return err
		}
		bt.n++
		rule([]expr.Any{nftx.Saddr(nftx.Reg1), &expr.Dynset{SrcRegKey: nftx.Reg1, SetName: set.Name, SetID: set.ID,
			Operation: uint32(unix.NFT_DYNSET_OP_UPDATE), Timeout: v.Affinity}})
	}
	port := binaryutil.BigEndian.PutUint16(e.Addr.Port())
	rule([]expr.Any{
		&expr.Immediate{Register: nftx.Reg1, Data: e.Addr.Addr().AsSlice()},
		&expr.Immediate{Register: nftx.Reg2, Data: port},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: nftx.Reg1, RegProtoMin: nftx.Reg2, Specified: true},
	})
	return nil
}

// writeService rewrites a service chain: NodePort masquerade mark, affinity
// lookups, then the choice of a ready endpoint: rule i of N is "numgen
// random mod (N-i) == 0 goto endpoint i" (the last one unconditional), which
// picks each with probability 1/N. No set per service: creating thousands of
// anonymous sets in one table is quadratic in the kernel, and reading them
// back needs a dump per set. Draining (weight 0) endpoints keep their chains
// but get no new connections.
func (bt *batch) writeService(v *proxy.VirtualServer) error {
	ch := bt.b.chain(svcChain(v.Key))
	bt.c.FlushChain(ch)
	bt.n++
	rule := func(ex ...[]expr.Any) {
		bt.c.AddRule(&nftables.Rule{Table: bt.b.table, Chain: ch, Exprs: nftx.Join(ex...)})
		bt.n++
	}
	if v.Key.IsNodePort() {
		if cidr := bt.b.cfg.ClusterCIDR; cidr.IsValid() {
			rule(nftx.InPrefix(true, cidr, true), nftx.SetMark(bt.b.cfg.MasqueradeBit))
		} else {
			rule(nftx.SetMark(bt.b.cfg.MasqueradeBit))
		}
	}
	var ready []proxy.Endpoint
	for _, e := range v.Endpoints {
		if e.Weight > 0 {
			ready = append(ready, e)
		}
	}
	if v.Affinity > 0 {
		for _, e := range ready {
			rule([]expr.Any{nftx.Saddr(nftx.Reg1), nftx.Lookup(affSet(v.Key, e.Addr, v.Affinity)),
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: epChain(v.Key, e.Addr)}})
		}
	}
	for i, e := range ready {
		to := &expr.Verdict{Kind: expr.VerdictGoto, Chain: epChain(v.Key, e.Addr)}
		if left := len(ready) - i; left > 1 {
			rule(nftx.NumgenIs(uint32(left), 0), []expr.Any{to})
		} else {
			rule([]expr.Any{to})
		}
	}
	return nil
}
