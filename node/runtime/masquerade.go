package runtime

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"orch.dev/orch/internal/nftx"
)

// The node masquerades its pods' traffic with one nftables rule of its own
// instead of the CNI bridge plugin's ipMasq, which gives every pod an
// iptables chain: eight iptables runs per pod start and five per stop, each
// reading the whole nat table (so every chain left behind by a pod whose
// CNI DEL never ran, a worker killed mid-teardown, made every later pod
// start slower). The rule has the plugin's meaning: traffic from the pod
// CIDR to an address outside it, multicast excepted, leaves with the
// node's address.

// masqueradeTable is the nftables table (family ip) holding the pod
// masquerade rule of the node whose pod bridge is bridge.
func masqueradeTable(bridge string) string { return "orch-masq-" + bridge }

var multicast = netip.MustParsePrefix("224.0.0.0/4")

// ensureMasquerade (re)writes the node's masquerade table for podCIDR in
// one transaction: the table is replaced whole, so running it again, or
// with another CIDR, leaves exactly one rule.
func ensureMasquerade(bridge string, podCIDR netip.Prefix) error {
	if !podCIDR.Addr().Is4() {
		return fmt.Errorf("pod masquerade: %s is not an IPv4 prefix", podCIDR)
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("pod masquerade: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: masqueradeTable(bridge)}
	c.AddTable(t)
	c.DelTable(t) // with the AddTable before it: replace, whether it existed or not
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: nftx.Join(
		nftx.InPrefix(true, podCIDR, false),
		nftx.InPrefix(false, podCIDR, true),
		nftx.InPrefix(false, multicast, true),
		[]expr.Any{&expr.Masq{}})})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("pod masquerade: nftables table %s: %w", t.Name, err)
	}
	return nil
}
