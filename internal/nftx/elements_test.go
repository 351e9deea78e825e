package nftx_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"orch.dev/orch/internal/nftx"
	"orch.dev/orch/internal/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// 10,000 elements added in one transaction all reach the kernel and can be
// removed again: in a single message they would overflow the attribute's
// 16-bit length (the IPVS backend failed at 10,000 services that way).
func TestManyElementsInOneTransaction(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	ns := testnet.New(t, "nftx-elements", 0)
	c, err := nftx.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "orch-nftx-test"})
	set := &nftables.Set{Table: table, Name: "vips", KeyType: nftx.VIPKeyType, Concatenation: true}
	if err := c.AddSet(set, nil); err != nil {
		t.Fatal(err)
	}
	const n = 10000
	var es []nftables.SetElement
	for i := range n {
		a := netip.MustParseAddr(fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250))
		es = append(es, nftables.SetElement{Key: nftx.VIPKey(a, 6, 80)})
	}
	if err := nftx.AddElements(c, set, es); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("adding %d elements: %v", n, err)
	}
	if got, err := c.GetSetElements(set); err != nil || len(got) != n {
		t.Fatalf("the set holds %d elements (%v), want %d", len(got), err, n)
	}
	if err := nftx.DeleteElements(c, set, es[:n-1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("deleting %d elements: %v", n-1, err)
	}
	if got, err := c.GetSetElements(set); err != nil || len(got) != 1 {
		t.Fatalf("after deleting all but one the set holds %d elements (%v)", len(got), err)
	}
}
