package dns

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

const benchServices = 1000

// benchServer serves 1,000 ClusterIP Services in 10 namespaces.
func benchServer(b *testing.B) (*Server, []string) {
	var svcs []*corev1.Service
	var names []string
	for i := range benchServices {
		ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
		svcs = append(svcs, svc(ns, name, fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250), port("http", corev1.ProtocolTCP, 80)))
		names = append(names, name+"."+ns+".svc.cluster.local.")
	}
	return listed(b, Config{}, svcs, nil), names
}

// BenchmarkQueryA measures A lookups of one of 1,000 Services over UDP on
// loopback: 4 clients per core, each on its own socket, one query in
// flight each. It reports the throughput and the latency a client sees.
func BenchmarkQueryA(b *testing.B) {
	s, names := benchServer(b)
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := mdns.Dial("udp", s.Addr())
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		mine := make([]time.Duration, 0, 1024)
		m := new(mdns.Msg)
		for i := 0; pb.Next(); i++ {
			m.SetQuestion(names[(i*7919)%len(names)], mdns.TypeA)
			t0 := time.Now()
			conn.SetDeadline(t0.Add(5 * time.Second))
			if err := conn.WriteMsg(m); err != nil {
				b.Error(err)
				return
			}
			r, err := conn.ReadMsg()
			if err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
			if r.Id != m.Id || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
				b.Errorf("answer %v", r)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "queries/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkAnswerA is the server's own work for one A lookup of one of
// 1,000 Services, without the sockets.
func BenchmarkAnswerA(b *testing.B) {
	s, names := benchServer(b)
	qs := make([]*mdns.Msg, len(names))
	for i, n := range names {
		qs[i] = new(mdns.Msg).SetQuestion(n, mdns.TypeA)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if r := s.answer(qs[(i*7919)%len(qs)]); len(r.Answer) != 1 {
				b.Errorf("answer %v", r)
				return
			}
		}
	})
}
