package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/proxy"
)

// The masquerading table. IPVS does the load balancing; this marks service
// traffic from outside the cluster CIDR before IPVS sees it (prerouting and
// output run before IPVS's LOCAL_IN and LOCAL_OUT hooks) and masquerades
// marked and hairpin connections on the way out (net.ipv4.vs.conntrack=1
// makes IPVS connections visible to nftables NAT).
const (
	setClusterIPs = "cluster-ips" // VIP . proto . port
	setNodePorts  = "nodeports"   // proto . port
	setHairpin    = "hairpin"     // endpoint IP . endpoint IP
)

func (b *Backend) set(name string) *nftables.Set {
	s := &nftables.Set{Table: b.table, Name: name, Concatenation: true}
	switch name {
	case setClusterIPs:
		s.KeyType = nftx.VIPKeyType
	case setNodePorts:
		s.KeyType = nftx.NodePortKeyType
	case setHairpin:
		s.KeyType = nftx.PairKeyType
	}
	return s
}

func (b *Backend) initTable() error {
	c := b.nft
	c.AddTable(b.table)
	for _, n := range []string{setClusterIPs, setNodePorts, setHairpin} {
		if err := c.AddSet(b.set(n), nil); err != nil {
			return err
		}
	}
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio int32) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: b.table}
		if hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = typ, hook, nftx.Priority(prio)
		}
		c.AddChain(ch)
		c.FlushChain(ch)
		return ch
	}
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: nftx.Join(e...)})
	}
	bit := b.cfg.MasqueradeBit
	outside := []expr.Any(nil)
	if cidr := b.cfg.ClusterCIDR; cidr.IsValid() {
		outside = nftx.InPrefix(true, cidr, true)
	}
	mark := chain("mark", "", nil, 0)
	rule(mark, nftx.VIPTuple(), []expr.Any{nftx.Lookup(setClusterIPs)}, outside, nftx.SetMark(bit))
	rule(mark, nftx.DaddrLocal(), nftx.NotLoopback(), nftx.PortTuple(), []expr.Any{nftx.Lookup(setNodePorts)}, outside, nftx.SetMark(bit))
	masq := chain("masquerading", "", nil, 0)
	rule(masq, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: nftx.Reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: nftx.Reg1, Data: binaryutil.NativeEndian.PutUint32(1)}, // not lo
		nftx.Saddr(nftx.Reg1), nftx.Daddr(nftx.Reg1w1), nftx.Lookup(setHairpin), nftx.Masquerade()})
	rule(masq, nftx.MarkUnsetReturn(bit))
	rule(masq, nftx.ClearMark(bit), []expr.Any{nftx.Masquerade()})
	jump := func(to string) []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: to}} }
	rule(chain("mark-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, -110), jump("mark"))
	rule(chain("mark-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, -150), jump("mark"))
	rule(chain("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100), jump("masquerading"))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("ipvs: nftables table %s: %w", b.cfg.Table, err)
	}
	return nil
}

func keyElem(k proxy.Key) (string, nftables.SetElement) {
	if k.IsNodePort() {
		return setNodePorts, nftables.SetElement{Key: nftx.NodePortKey(uint8(k.Proto), k.Port)}
	}
	return setClusterIPs, nftables.SetElement{Key: nftx.VIPKey(k.Addr, uint8(k.Proto), k.Port)}
}

// endpointIPs are the endpoint addresses rs uses.
func endpointIPs(rs proxy.RuleSet) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, v := range rs {
		for _, e := range v.Endpoints {
			m[e.Addr.Addr()] = true
		}
	}
	return m
}

// syncSets updates the service and hairpin sets from the changes. The
// service sets follow the added and removed keys; the hairpin set (endpoint
// IPs, shared between services) follows the reference counts in epRefs.
// A failed delete (state drift) falls back to rewriting the sets from what
// IPVS holds (Read).
func (b *Backend) syncSets(changes []proxy.Change) error {
	add := map[string][]nftables.SetElement{}
	del := map[string][]nftables.SetElement{}
	delta := map[netip.Addr]int{}
	for _, ch := range changes {
		n, e := keyElem(ch.Key)
		switch ch.Op {
		case proxy.Add:
			add[n] = append(add[n], e)
		case proxy.Remove:
			del[n] = append(del[n], e)
		}
		if ch.Old != nil {
			for _, e := range ch.Old.Endpoints {
				delta[e.Addr.Addr()]--
			}
		}
		if ch.New != nil {
			for _, e := range ch.New.Endpoints {
				delta[e.Addr.Addr()]++
			}
		}
	}
	for a, d := range delta {
		before := b.epRefs[a]
		after := before + d
		switch {
		case before <= 0 && after > 0:
			add[setHairpin] = append(add[setHairpin], nftables.SetElement{Key: nftx.PairKey(a, a)})
		case before > 0 && after <= 0:
			del[setHairpin] = append(del[setHairpin], nftables.SetElement{Key: nftx.PairKey(a, a)})
		}
		if after > 0 {
			b.epRefs[a] = after
		} else {
			delete(b.epRefs, a)
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	for n, es := range add {
		if err := nftx.AddElements(b.nft, b.set(n), es); err != nil {
			return err
		}
	}
	for n, es := range del {
		if err := nftx.DeleteElements(b.nft, b.set(n), es); err != nil {
			return err
		}
	}
	if err := b.nft.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			_, err := b.Read(context.Background())
			return err
		}
		return fmt.Errorf("ipvs: masquerade sets: %w", err)
	}
	return nil
}

// resyncSets rewrites the three sets from scratch in one transaction
// (repair only; a normal sync changes elements).
func (b *Backend) resyncSets(rs proxy.RuleSet) error {
	elems := map[string][]nftables.SetElement{}
	for k := range rs {
		n, e := keyElem(k)
		elems[n] = append(elems[n], e)
	}
	for a := range endpointIPs(rs) {
		elems[setHairpin] = append(elems[setHairpin], nftables.SetElement{Key: nftx.PairKey(a, a)})
	}
	for _, n := range []string{setClusterIPs, setNodePorts, setHairpin} {
		b.nft.FlushSet(b.set(n))
		if len(elems[n]) > 0 {
			if err := nftx.AddElements(b.nft, b.set(n), elems[n]); err != nil {
				return err
			}
		}
	}
	if err := b.nft.Flush(); err != nil {
		return fmt.Errorf("ipvs: rewrite masquerade sets: %w", err)
	}
	return nil
}

func deleteTable(c *nftables.Conn, name string) error {
	tabs, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	for _, t := range tabs {
		if t.Name == name {
			c.DelTable(t)
			return c.Flush()
		}
	}
	return nil
}
