package testnet

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Services returns n services (TCP port 80 to 8080, cluster IPs from
// 10.96.0.1) with m ready endpoints each (from 10.244.0.1): the data of
// the proxy benchmarks.
func Services(n, m int) ([]*corev1.Service, []*corev1.Endpoints) {
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
// share of a sync (nftables transactions and IPVS netlink requests run in
// the caller's system calls) is most of it, and it is not skewed by other
// work on a busy machine the way wall-clock time is.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUMeter sums CPU time over the measured parts of a benchmark.
type CPUMeter struct {
	total time.Duration
	start time.Duration
}

func (m *CPUMeter) Begin(b testing.TB) { m.start = cpuTime(b) }
func (m *CPUMeter) End(b testing.TB)   { m.total += cpuTime(b) - m.start }

// Report adds the CPU time per operation (n operations) to b's results.
func (m *CPUMeter) Report(b *testing.B, n int) {
	b.ReportMetric(m.total.Seconds()*1000/float64(n), "cpu-ms/op")
}
