package conformance

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	mipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/proxy"
	"orch.dev/orch/proxy/ipvs"
	"orch.dev/orch/proxy/nft"
)

func TestMain(m *testing.M) { testnet.Main(m) }

var cidr = netip.MustParsePrefix(clusterCIDR)

// TestNFTables runs the suite against the nftables backend on this
// machine's kernel.
func TestNFTables(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	run(t, backendKind{
		name: "nftables",
		new: func(t *testing.T, c *cluster) proxy.Backend {
			b := nft.New(nft.Config{NetNS: c.node.Path, ClusterCIDR: cidr})
			t.Cleanup(func() { b.Close() })
			return b
		},
		leftovers: func(t *testing.T, c *cluster) []string {
			return nftLeftovers(t, c, nft.DefaultTable, []string{"service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports"})
		},
	})
}

// TestIPVS runs the suite against the IPVS backend. This machine's kernel
// has no IPVS, so here it skips; `make ipvs-test` boots a stock Debian
// kernel under qemu and runs it there (see proxy/README.md).
func TestIPVS(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	if !ipvs.Available() {
		t.Skip("kernel has no IPVS; run `make ipvs-test` (qemu) for this suite")
	}
	run(t, backendKind{
		name:       "ipvs",
		exactSplit: true,
		new: func(t *testing.T, c *cluster) proxy.Backend {
			b := ipvs.New(ipvs.Config{NetNS: c.node.Path, ClusterCIDR: cidr})
			t.Cleanup(func() { b.Close() })
			return b
		},
		leftovers: func(t *testing.T, c *cluster) []string {
			left := nftLeftovers(t, c, ipvs.DefaultTable, []string{"cluster-ips", "nodeports", "hairpin"})
			h, err := mipvs.New(c.node.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			svcs, err := h.GetServices()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range svcs {
				left = append(left, fmt.Sprintf("ipvs service %s:%d/%d", s.Address, s.Port, s.Protocol))
			}
			nh := c.node.Handle(t)
			l, err := nh.LinkByName(ipvs.DefaultInterface)
			if err != nil {
				t.Fatal(err)
			}
			addrs, _ := nh.AddrList(l, netlink.FAMILY_V4)
			for _, a := range addrs {
				left = append(left, "VIP "+a.IPNet.String())
			}
			return left
		},
	})
}

// nftLeftovers lists what a table holds beyond its fixed chains and empty
// fixed sets.
func nftLeftovers(t *testing.T, c *cluster, table string, fixedSets []string) []string {
	conn, err := nftx.Open(c.node.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	tab := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	var left []string
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		if n := ch.Name; len(n) > 3 && (n[:3] == "svc" || n[:3] == "ep-") {
			left = append(left, "chain "+n)
		}
	}
	sets, err := conn.GetSets(tab)
	if err != nil {
		t.Fatal(err)
	}
	fixed := map[string]bool{}
	for _, n := range fixedSets {
		fixed[n] = true
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		if !fixed[s.Name] {
			left = append(left, "set "+s.Name)
			continue
		}
		elems, err := conn.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(elems) > 0 {
			left = append(left, fmt.Sprintf("%d elements in %s", len(elems), s.Name))
		}
	}
	return left
}
