package rafttls

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// BenchmarkHandshake is the cost of opening one Raft connection: TCP
// connect, mutual TLS 1.3 handshake with both chains verified, and the
// acceptance byte. Raft pools its connections, so this is paid rarely.
func BenchmarkHandshake(b *testing.B) {
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte{accepted})
				c.Close()
			}
		}()
		buf := make([]byte, 1)
		cpu := cpuTime()
		for b.Loop() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.Read(buf)
			c.Close()
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("mtls", func(b *testing.B) {
		ca := pkitest.NewCA(b, "c")
		server := benchLayer(b, ca, "s1")
		client := benchLayer(b, ca, "s2")
		go func() {
			for {
				c, err := server.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		addr := raft.ServerAddress(server.Addr().String())
		cpu := cpuTime()
		for b.Loop() {
			c, err := client.Dial(addr, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

func benchLayer(b *testing.B, ca *pki.CA, name string) *StreamLayer {
	s, err := Listen(Config{Bind: "127.0.0.1:0", CA: ca.Cert, Certs: pkitest.Node(b, ca, pki.RoleServer, name).Certs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkRaftApply is committed writes on a three-server cluster over
// loopback, plain TCP against mutual TLS: one at a time (latency) and 64 in
// flight (throughput). Entries are 1 KiB, about a small object.
func BenchmarkRaftApply(b *testing.B) {
	for _, tr := range []struct {
		name string
		mk   func(b *testing.B) transportFunc
	}{
		{"tcp", func(*testing.B) transportFunc { return tcpTransports }},
		{"tls", func(b *testing.B) transportFunc { return tlsTransports(pkitest.NewCA(b, "c")) }},
	} {
		for _, inflight := range []int{1, 64} {
			b.Run(tr.name+"/inflight="+strconv.Itoa(inflight), func(b *testing.B) {
				c := newRaftCluster(b, 3, tr.mk(b), agentTiming)
				leader := c.leader(b)
				data := make([]byte, 1024)
				futures := make([]raft.ApplyFuture, 0, inflight)
				b.SetBytes(int64(len(data)))
				cpu := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; {
					futures = futures[:0]
					for ; len(futures) < inflight && i < b.N; i++ {
						futures = append(futures, leader.Apply(data, 10*time.Second))
					}
					for _, f := range futures {
						if err := f.Error(); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				// CPU per write (all three servers run in this process)
				// is steadier than wall time on a shared machine.
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the user and system CPU time this process has used, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
