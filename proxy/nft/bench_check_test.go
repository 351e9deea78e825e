package nft

import (
	"context"
	"testing"

	"github.com/google/nftables"

	"orch.dev/orch/internal/testnet"
)

// BenchmarkCheck10k: the periodic drift check with 10,000 services x 3
// endpoints programmed, when nothing but the proxy changed the ruleset
// (Generation: one netlink request) and when another table changed
// (Objects: chains, sets and map elements listed and compared).
func BenchmarkCheck10k(b *testing.B) {
	if why := testnet.Available(); why != "" {
		b.Skip(why)
	}
	ns := testnet.New(b, "bench-check", 0)
	svcs, eps := testnet.Services(10000, 3)
	ctx := context.Background()
	p, be := newProxier(b, ns, svcs, eps)
	if err := p.Sync(ctx, false); err != nil {
		b.Fatal(err)
	}
	mustCheck := func() {
		if ok, err := be.Check(ctx); err != nil || !ok {
			b.Fatalf("Check = %v, %v", ok, err)
		}
	}
	b.Run("Generation", func(b *testing.B) {
		mustCheck() // learns the generation
		for b.Loop() {
			mustCheck()
		}
	})
	b.Run("Objects", func(b *testing.B) {
		c, _ := be.connect()
		for b.Loop() {
			b.StopTimer()
			c.AddTable(&nftables.Table{Name: "someone-else", Family: nftables.TableFamilyIPv4})
			if err := c.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			mustCheck()
		}
	})
}
