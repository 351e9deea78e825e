package dns

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestForward: names outside the zone are answered by the upstream (asked
// over UDP whichever transport the client used), with the client's ID.
func TestForward(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", answerA("192.0.2.1"))
	s := listed(t, Config{Upstreams: []string{up.addr}}, nil, nil)
	for _, network := range []string{"udp", "tcp"} {
		m := new(mdns.Msg)
		m.SetQuestion("Example.ORG.", mdns.TypeA)
		m.Id = 4242
		r := exchange(t, s.Addr(), network, m)
		expect(t, r, noerror, []string{"Example.ORG. A 192.0.2.1"})
		if r.Id != 4242 || r.Authoritative {
			t.Fatalf("%s: id %d aa %v", network, r.Id, r.Authoritative)
		}
	}
	if q := up.queries(); !slices.Equal(q, []string{"udp Example.ORG.", "udp Example.ORG."}) {
		t.Fatalf("upstream saw %v", q)
	}
	if st := s.Stats(); st.Forwarded != 2 || st.ServFail != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestForwardTruncated: an upstream answer truncated over UDP is asked
// again over TCP, and the client gets the whole answer.
func TestForwardTruncated(t *testing.T) {
	full := answerA("192.0.2.7")
	up := startUpstream(t, "127.0.0.2", func(network string, r *mdns.Msg) *mdns.Msg {
		if network == "tcp" {
			return full(network, r)
		}
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Truncated = true
		return m
	})
	s := listed(t, Config{Upstreams: []string{up.addr}}, nil, nil)
	expect(t, ask(t, s, "big.example.org.", mdns.TypeA), noerror, []string{"big.example.org. A 192.0.2.7"})
	if q := up.queries(); !slices.Equal(q, []string{"udp big.example.org.", "tcp big.example.org."}) {
		t.Fatalf("upstream saw %v", q)
	}
}

// TestForwardFailover: upstreams that refuse, fail or are not there are
// skipped for the next one.
func TestForwardFailover(t *testing.T) {
	failing := startUpstream(t, "127.0.0.2", func(_ string, r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		return m.SetRcode(r, mdns.RcodeServerFailure)
	})
	good := startUpstream(t, "127.0.0.3", answerA("192.0.2.9"))
	s := listed(t, Config{Upstreams: []string{closedPort(t, "127.0.0.4"), failing.addr, good.addr}}, nil, nil)
	expect(t, ask(t, s, "example.net.", mdns.TypeA), noerror, []string{"example.net. A 192.0.2.9"})
	if len(failing.queries()) != 1 || len(good.queries()) != 1 {
		t.Fatalf("failing saw %v, good saw %v", failing.queries(), good.queries())
	}
}

// TestForwardNXDOMAIN: an upstream's negative answer is an answer, passed
// on as it is, not a reason to ask the next upstream.
func TestForwardNXDOMAIN(t *testing.T) {
	nx := startUpstream(t, "127.0.0.2", func(_ string, r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		return m.SetRcode(r, mdns.RcodeNameError)
	})
	other := startUpstream(t, "127.0.0.3", answerA("192.0.2.9"))
	s := listed(t, Config{Upstreams: []string{nx.addr, other.addr}}, nil, nil)
	if r := ask(t, s, "nope.example.", mdns.TypeA); r.Rcode != nxdomain {
		t.Fatalf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	if q := other.queries(); len(q) != 0 {
		t.Fatalf("second upstream asked: %v", q)
	}
}

// TestForwardFailure: when no upstream answers (silent, failing or none
// configured), the client gets SERVFAIL, within the forward timeout.
func TestForwardFailure(t *testing.T) {
	silent := startUpstream(t, "127.0.0.2", func(string, *mdns.Msg) *mdns.Msg { return nil })
	failing := startUpstream(t, "127.0.0.3", func(_ string, r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		return m.SetRcode(r, mdns.RcodeRefused)
	})
	s := listed(t, Config{Upstreams: []string{silent.addr, failing.addr}, ForwardTimeout: 200 * time.Millisecond}, nil, nil)
	start := time.Now()
	r := ask(t, s, "example.com.", mdns.TypeA)
	if r.Rcode != servfail {
		t.Fatalf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("SERVFAIL after %s", d)
	}
	if len(silent.queries()) != 1 || len(failing.queries()) != 1 {
		t.Fatalf("silent saw %v, failing saw %v", silent.queries(), failing.queries())
	}

	none := listed(t, Config{}, nil, nil)
	if r := ask(t, none, "example.com.", mdns.TypeA); r.Rcode != servfail {
		t.Fatalf("no upstream: rcode %s", mdns.RcodeToString[r.Rcode])
	}
	if st := none.Stats(); st.ServFail != 1 || st.Forwarded != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestForwardUnknownPTR: reverse names of addresses outside the cluster's
// prefixes are the node's resolvers' business.
func TestForwardUnknownPTR(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", func(_ string, r *mdns.Msg) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetReply(r)
		rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN PTR host.example.")
		m.Answer = []mdns.RR{rr}
		return m
	})
	s := listed(t, Config{Upstreams: []string{up.addr}, ReverseCIDRs: cidrs}, nil, nil)
	const q = "1.2.0.192.in-addr.arpa."
	expect(t, ask(t, s, q, mdns.TypePTR), noerror, []string{q + " PTR host.example."})
	expect(t, ask(t, s, "1.0.96.10.in-addr.arpa.", mdns.TypePTR), nxdomain, nil)
	if n := len(up.queries()); n != 1 {
		t.Fatalf("upstream asked %d times", n)
	}
}

// TestUpstreamsFromResolvConf: the node's resolv.conf gives the upstreams,
// read again on ReloadUpstreams; Config.Upstreams overrides it.
func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# generated\nsearch corp.example\nnameserver 127.0.0.53\nnameserver 127.0.0.54 ; second\noptions edns0\n")
	s, err := New(Config{Addr: "127.0.0.1:0", ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"127.0.0.53:53", "127.0.0.54:53"}) {
		t.Fatalf("upstreams %v", got)
	}
	write("nameserver 127.0.0.55\n")
	if err := s.ReloadUpstreams(); err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"127.0.0.55:53"}) {
		t.Fatalf("after reload: %v", got)
	}
	s, err = New(Config{Addr: "127.0.0.1:0", ResolvConf: path, Upstreams: []string{"127.0.0.9:5353"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{"127.0.0.9:5353"}) {
		t.Fatalf("override: %v", got)
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{"resolver.example"}}); err == nil {
		t.Fatal("a host name as upstream was accepted")
	}
}

// TestNoForwardingLoop: the server's own address is never an upstream.
func TestNoForwardingLoop(t *testing.T) {
	for _, tc := range []struct {
		self string
		in   []string
		want []string
	}{
		{"127.0.0.1:53", []string{"127.0.0.1", "127.0.0.2", "127.0.0.1:5353"}, []string{"127.0.0.2:53", "127.0.0.1:5353"}},
		{"0.0.0.0:53", []string{"127.0.0.53", "10.0.0.2", "[::1]:53"}, []string{"10.0.0.2:53"}},
		{"", []string{"::1", "127.0.0.1", "127.0.0.1:53"}, []string{"[::1]:53", "127.0.0.1:53"}},
	} {
		got, err := upstreamAddrs(tc.in, tc.self)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("upstreamAddrs(%v, %q) = %v, %v; want %v", tc.in, tc.self, got, err, tc.want)
		}
	}
	// End to end: a server with itself as the first upstream asks only the
	// other one.
	up := startUpstream(t, "127.0.0.2", answerA("192.0.2.3"))
	s, err := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{up.addr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.cfg.Upstreams = []string{s.Addr(), up.addr} // before Serve: nothing reads it concurrently
	if err := s.ReloadUpstreams(); err != nil {
		t.Fatal(err)
	}
	if got := s.Upstreams(); !slices.Equal(got, []string{up.addr}) {
		t.Fatalf("upstreams %v, want only %s", got, up.addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	s.ReplaceServices(nil)
	s.ReplaceEndpoints(nil)
	expect(t, ask(t, s, "example.com.", mdns.TypeA), noerror, []string{"example.com. A 192.0.2.3"})
}

// closedPort is an address on ip where nothing listens: a query there is
// refused at once (ICMP port unreachable).
func closedPort(t *testing.T, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

// TestListenAndShutdown: a second server cannot take an address in use;
// once the first one's Serve returns, both its sockets are free again.
func TestListenAndShutdown(t *testing.T) {
	a, err := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{"127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	b, err := New(Config{Addr: a.Addr(), Upstreams: []string{"127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err == nil {
		t.Fatal("second Listen on an address in use succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := b.Run(canceled()); err != nil {
		t.Fatalf("Run on the freed address: %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
