package dns

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// Every socket in these tests is on 127.0.0.0/8: the server on 127.0.0.1,
// fake upstream resolvers on 127.0.0.2 and up. Nothing is ever sent
// elsewhere (addresses such as 192.0.2.1 below are only record data).

// startServer runs a Server on 127.0.0.1 (a free port) until the test ends.
// Without Upstreams or ResolvConf it has no upstream at all.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if len(cfg.Upstreams) == 0 && cfg.ResolvConf == "" {
		cfg.ResolvConf = filepath.Join(t.TempDir(), "missing-resolv.conf")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Bound before Serve: queries sent from here on wait in the socket
	// buffers, so tests need no wait for the server to start.
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// listed starts a server whose store has listed svcs and eps.
func listed(t testing.TB, cfg Config, svcs []*corev1.Service, eps []*corev1.Endpoints) *Server {
	t.Helper()
	s := startServer(t, cfg)
	s.ReplaceServices(svcs)
	s.ReplaceEndpoints(eps)
	return s
}

func exchange(t testing.TB, addr, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], network, err)
	}
	return r
}

// ask sends one question over UDP.
func ask(t testing.TB, s *Server, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	return askOver(t, s, "udp", name, qtype)
}

func askOver(t testing.TB, s *Server, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return exchange(t, s.Addr(), network, m)
}

// records is a section as sorted "name TYPE rdata" lines, without TTLs.
func records(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		out = append(out, f[0]+" "+strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

// expect checks a reply's rcode, answer and additional sections, and that
// a reply without records carries an SOA (negative caching needs it).
func expect(t testing.TB, r *mdns.Msg, rcode int, answer []string, extra ...string) {
	t.Helper()
	q := r.Question[0]
	what := q.Name + " " + mdns.TypeToString[q.Qtype]
	if r.Rcode != rcode {
		t.Fatalf("%s: rcode %s, want %s\n%v", what, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[rcode], r)
	}
	slices.Sort(answer)
	if got := records(r.Answer); !slices.Equal(got, answer) {
		t.Fatalf("%s: answer\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(answer, "\n"))
	}
	slices.Sort(extra)
	if got := records(r.Extra); !slices.Equal(got, extra) {
		t.Fatalf("%s: additional\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(extra, "\n"))
	}
	if len(answer) == 0 && rcode != mdns.RcodeServerFailure {
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA {
			t.Fatalf("%s: authority %v, want one SOA", what, r.Ns)
		}
	}
}

func svc(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{}
	s.Namespace, s.Name = ns, name
	s.Spec.ClusterIP = clusterIP
	s.Spec.Ports = ports
	return s
}

func port(name string, proto corev1.Protocol, n int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: n}
}

// addr is an endpoint address "ip" or "hostname=ip".
func addr(s string) corev1.EndpointAddress {
	if h, ip, ok := strings.Cut(s, "="); ok {
		return corev1.EndpointAddress{IP: ip, Hostname: h}
	}
	return corev1.EndpointAddress{IP: s}
}

// eps builds Endpoints with one subset: ready addresses, then after a "|"
// the not-ready ones.
func eps(ns, name string, ports []corev1.EndpointPort, addrs ...string) *corev1.Endpoints {
	e := &corev1.Endpoints{}
	e.Namespace, e.Name = ns, name
	sub := corev1.EndpointSubset{Ports: ports}
	notReady := false
	for _, a := range addrs {
		switch {
		case a == "|":
			notReady = true
		case notReady:
			sub.NotReadyAddresses = append(sub.NotReadyAddresses, addr(a))
		default:
			sub.Addresses = append(sub.Addresses, addr(a))
		}
	}
	e.Subsets = []corev1.EndpointSubset{sub}
	return e
}

// upstream is a fake resolver on a loopback address, UDP and TCP on one
// port, answering with reply (which sees the transport); a nil reply sends
// nothing.
type upstream struct {
	addr  string
	mu    sync.Mutex
	seen  []string // "udp name" / "tcp name"
	reply func(network string, r *mdns.Msg) *mdns.Msg
}

func startUpstream(t testing.TB, ip string, reply func(network string, r *mdns.Msg) *mdns.Msg) *upstream {
	t.Helper()
	u := &upstream{reply: reply}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", ip+":0"); err != nil {
			t.Fatal(err)
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		if ln, err = net.Listen("tcp", ip+":"+p); err == nil {
			break
		}
		pc.Close()
	}
	if ln == nil {
		t.Fatal("no free port for a fake upstream")
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *upstream) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	network := "udp"
	if isTCP(w) {
		network = "tcp"
	}
	u.mu.Lock()
	u.seen = append(u.seen, network+" "+r.Question[0].Name)
	u.mu.Unlock()
	if m := u.reply(network, r); m != nil {
		w.WriteMsg(m)
	}
}

func (u *upstream) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// answerA is an upstream reply: an A record for every question.
func answerA(ip string) func(string, *mdns.Msg) *mdns.Msg {
	return func(_ string, r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetReply(r)
		rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
		m.Answer = []mdns.RR{rr}
		return m
	}
}
