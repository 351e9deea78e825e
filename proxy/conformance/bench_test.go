package conformance

import (
	"context"
	"testing"

	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/proxy"
	"orch.dev/orch/proxy/ipvs"
	"orch.dev/orch/proxy/nft"
)

// BenchmarkFullSync10k: the full rule sync figure, per backend: a
// proxy starting on a kernel without its rules programs 10,000 services x
// 3 endpoints (read what is there, compute, diff, apply). Both backends
// run in one process, so under qemu (make ipvs-bench, the only place with
// IPVS here) they are compared on the same emulated machine.
func BenchmarkFullSync10k(b *testing.B) {
	if why := testnet.Available(); why != "" {
		b.Skip(why)
	}
	backends := []struct {
		name      string
		available bool
		new       func(netns string) (proxy.Backend, func(context.Context) error, func())
	}{
		{"nftables", true, func(netns string) (proxy.Backend, func(context.Context) error, func()) {
			be := nft.New(nft.Config{NetNS: netns, ClusterCIDR: cidr})
			return be, be.Cleanup, func() { be.Close() }
		}},
		{"ipvs", ipvs.Available(), func(netns string) (proxy.Backend, func(context.Context) error, func()) {
			be := ipvs.New(ipvs.Config{NetNS: netns, ClusterCIDR: cidr})
			return be, be.Cleanup, func() { be.Close() }
		}},
	}
	const services, endpoints = 10000, 3
	svcs, eps := testnet.Services(services, endpoints)
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			if !bk.available {
				b.Skip("kernel has no IPVS; run `make ipvs-bench` (qemu)")
			}
			ns := testnet.New(b, "bench-"+bk.name, 0)
			ctx := context.Background()
			var cpu testnet.CPUMeter
			n := 0
			for b.Loop() {
				b.StopTimer()
				be, cleanup, closeBackend := bk.new(ns.Path)
				if err := cleanup(ctx); err != nil {
					b.Fatal(err)
				}
				p := proxy.New(proxy.Config{Backend: be, DrainTimeout: -1})
				p.ReplaceServices(svcs)
				p.ReplaceEndpoints(eps)
				b.StartTimer()
				cpu.Begin(b)
				if err := p.Sync(ctx, false); err != nil {
					b.Fatal(err)
				}
				cpu.End(b)
				n++
				b.StopTimer()
				if st := p.Stats(); st.Changes != services {
					b.Fatalf("%d virtual servers programmed, want %d", st.Changes, services)
				}
				if err := cleanup(ctx); err != nil {
					b.Fatal(err)
				}
				closeBackend()
				b.StartTimer()
			}
			cpu.Report(b, n)
		})
	}
}
