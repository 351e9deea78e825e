package nft

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/proxy"
	"orch.dev/orch/proxy/internal/testnet"
)

// cluster returns n services with m ready endpoints each.
func cluster(n, m int) ([]*corev1.Service, []*corev1.Endpoints) {
	var svcs []*corev1.Service
	var eps []*corev1.Endpoints
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc%d", i)
		meta := metav1.ObjectMeta{Namespace: "bench", Name: name}
		svcs = append(svcs, &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{
			ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250),
			Ports:     []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}}})
		ss := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Port: 8080, Protocol: corev1.ProtocolTCP}}}
		for j := 0; j < m; j++ {
			k := i*m + j
			ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: fmt.Sprintf("10.244.%d.%d", k/250, 1+k%250)})
		}
		eps = append(eps, &corev1.Endpoints{ObjectMeta: meta, Subsets: []corev1.EndpointSubset{ss}})
	}
	return svcs, eps
}

// cpuTime is the process's user plus system CPU time so far: the kernel's
// share of a sync (nftables transactions run in the caller's syscall) is
// most of it, and it is not skewed by other work on a busy machine the way
// wall-clock time is.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter sums CPU time over the measured parts of a benchmark.
type cpuMeter struct {
	total time.Duration
	start time.Duration
}

func (m *cpuMeter) begin(b testing.TB) { m.start = cpuTime(b) }
func (m *cpuMeter) end(b testing.TB)   { m.total += cpuTime(b) - m.start }
func (m *cpuMeter) report(b *testing.B, n int) {
	b.ReportMetric(m.total.Seconds()*1000/float64(n), "cpu-ms/op")
}

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
	svcs, eps := cluster(services, endpoints)
	ctx := context.Background()
	var cpu cpuMeter
	n := 0
	for b.Loop() {
		b.StopTimer()
		p, be := newProxier(b, ns, svcs, eps)
		if err := be.Cleanup(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.begin(b)
		if err := p.Sync(ctx, false); err != nil {
			b.Fatal(err)
		}
		cpu.end(b)
		n++
		b.StopTimer()
		if st := p.Stats(); st.Changes != services {
			b.Fatalf("%d virtual servers programmed, want %d", st.Changes, services)
		}
		b.StartTimer()
	}
	cpu.report(b, n)
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
	svcs, eps := cluster(services, endpoints)
	ctx := context.Background()
	p, _ := newProxier(b, ns, svcs, eps)
	if err := p.Sync(ctx, false); err != nil {
		b.Fatal(err)
	}
	full := eps[services/2]
	short := full.DeepCopy()
	short.Subsets[0].Addresses = short.Subsets[0].Addresses[1:]
	i := 0
	var cpu cpuMeter
	cpu.begin(b)
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
	cpu.end(b)
	cpu.report(b, i)
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
	svcs, eps := cluster(services, endpoints)
	ctx := context.Background()
	p, be := newProxier(b, ns, svcs, eps)
	if err := p.Sync(ctx, false); err != nil {
		b.Fatal(err)
	}
	var cpu cpuMeter
	n := 0
	cpu.begin(b)
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
	cpu.end(b)
	cpu.report(b, n)
}
