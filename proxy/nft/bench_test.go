package nft

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/proxy"
)

func newProxier(b testing.TB, ns *testnet.NS, svcs []*corev1.Service, eps []*corev1.Endpoints) (*proxy.Proxier, *Backend) {
	be := New(Config{NetNS: ns.Path})
	b.Cleanup(func() { be.Close() })
	p := proxy.New(proxy.Config{Backend: be, DrainTimeout: -1})
	p.ReplaceServices(svcs)
	p.ReplaceEndpoints(eps)
	return p, be
}

// BenchmarkSyncFull: a proxy starting on an empty kernel programs 1,000
// services x 10 endpoints (Init, Read, Compute, Diff, Apply).
func BenchmarkSyncFull(b *testing.B) { benchSyncFull(b, 1000, 10) }

// BenchmarkSyncFull10k: the same for 10,000 services x 3 endpoints, the
// issue's full-sync figure (about 40,000 chains and map elements).
func BenchmarkSyncFull10k(b *testing.B) { benchSyncFull(b, 10000, 3) }

func benchSyncFull(b *testing.B, services, endpoints int) {
	if why := testnet.Available(); why != "" {
		b.Skip(why)
	}
	ns := testnet.New(b, fmt.Sprintf("bench-full-%d", services), 0)
	svcs, eps := testnet.Services(services, endpoints)
	ctx := context.Background()
	var cpu testnet.CPUMeter
	n := 0
	for b.Loop() {
		b.StopTimer()
		p, be := newProxier(b, ns, svcs, eps)
		if err := be.Cleanup(ctx); err != nil {
			b.Fatal(err)
		}
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
		b.StartTimer()
	}
	cpu.Report(b, n)
}

// BenchmarkSyncOneEndpoint: with 1,000 services x 10 endpoints programmed,
// one service loses (or regains) one endpoint.
func BenchmarkSyncOneEndpoint(b *testing.B) { benchSyncOne(b, 1000, 10) }

// BenchmarkSyncOneEndpoint10k: the same with 10,000 services x 3 endpoints:
// the proxy's share of the endpoint propagation figure at 10,000 Services.
func BenchmarkSyncOneEndpoint10k(b *testing.B) { benchSyncOne(b, 10000, 3) }

func benchSyncOne(b *testing.B, services, endpoints int) {
	if why := testnet.Available(); why != "" {
		b.Skip(why)
	}
	ns := testnet.New(b, fmt.Sprintf("bench-one-%d", services), 0)
	svcs, eps := testnet.Services(services, endpoints)
	ctx := context.Background()
	p, _ := newProxier(b, ns, svcs, eps)
	if err := p.Sync(ctx, false); err != nil {
		b.Fatal(err)
	}
	full := eps[services/2]
	short := full.DeepCopy()
	short.Subsets[0].Addresses = short.Subsets[0].Addresses[1:]
	i := 0
	var cpu testnet.CPUMeter
	cpu.Begin(b)
	for b.Loop() {
		if i%2 == 0 {
			p.OnEndpoints(short)
		} else {
			p.OnEndpoints(full)
		}
		i++
		if err := p.Sync(ctx, false); err != nil {
			b.Fatal(err)
		}
	}
	cpu.End(b)
	cpu.Report(b, i)
	// The first sync programmed every service; each later one a single
	// virtual server.
	if st := p.Stats(); st.Changes-services != st.Syncs-1 {
		b.Fatalf("%d changes in %d syncs: want one virtual server per sync", st.Changes-services, st.Syncs-1)
	}
}

// BenchmarkRead: what a restarted proxy reads back from a kernel holding
// 1,000 services x 10 endpoints.
func BenchmarkRead(b *testing.B) { benchRead(b, 1000, 10) }

// BenchmarkRead10k: the same for 10,000 services x 3 endpoints.
func BenchmarkRead10k(b *testing.B) { benchRead(b, 10000, 3) }

func benchRead(b *testing.B, services, endpoints int) {
	if why := testnet.Available(); why != "" {
		b.Skip(why)
	}
	ns := testnet.New(b, fmt.Sprintf("bench-read-%d", services), 0)
	svcs, eps := testnet.Services(services, endpoints)
	ctx := context.Background()
	p, be := newProxier(b, ns, svcs, eps)
	if err := p.Sync(ctx, false); err != nil {
		b.Fatal(err)
	}
	var cpu testnet.CPUMeter
	n := 0
	cpu.Begin(b)
	for b.Loop() {
		rs, err := be.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) != services {
			b.Fatalf("read %d virtual servers", len(rs))
		}
		n++
	}
	cpu.End(b)
	cpu.Report(b, n)
}
