package dns

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

const (
	noerror  = mdns.RcodeSuccess
	nxdomain = mdns.RcodeNameError
	servfail = mdns.RcodeServerFailure
)

// shop is the fixture: a ClusterIP Service web with two named ports and an
// unnamed one, and a headless Service db with two ready endpoints (one with
// a hostname) and one not ready.
func shop() ([]*corev1.Service, []*corev1.Endpoints) {
	web := svc("shop", "web", "10.96.0.10", port("http", corev1.ProtocolTCP, 80), port("dns", corev1.ProtocolUDP, 53),
		port("", corev1.ProtocolTCP, 8443))
	db := svc("shop", "db", corev1.ClusterIPNone)
	pg := []corev1.EndpointPort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}
	return []*corev1.Service{web, db}, []*corev1.Endpoints{
		eps("shop", "web", []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}, "10.244.1.20"),
		eps("shop", "db", pg, "db-0=10.244.1.5", "10.244.2.7", "|", "10.244.3.9"),
	}
}

var cidrs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("10.244.0.0/16")}

// TestRecords: every kind of name the zone answers, and every way a name
// can be missing, over UDP and over TCP.
func TestRecords(t *testing.T) {
	svcs, eps := shop()
	s := listed(t, Config{ReverseCIDRs: cidrs}, svcs, eps)
	const (
		web = "web.shop.svc.cluster.local."
		db  = "db.shop.svc.cluster.local."
	)
	dbExtra := []string{"db-0." + db + " A 10.244.1.5", "10-244-2-7." + db + " A 10.244.2.7"}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		ans   []string
		extra []string
	}{
		// A ClusterIP Service: its ClusterIP, and nothing for other types.
		{web, mdns.TypeA, noerror, []string{web + " A 10.96.0.10"}, nil},
		{"WEB.Shop.SVC.cluster.LOCAL.", mdns.TypeA, noerror, []string{"WEB.Shop.SVC.cluster.LOCAL. A 10.96.0.10"}, nil},
		{web, mdns.TypeAAAA, noerror, nil, nil},
		{web, mdns.TypeTXT, noerror, nil, nil},
		{web, mdns.TypeANY, noerror, []string{web + " A 10.96.0.10"}, nil},
		// Its named ports, pointing at the Service name.
		{"_http._tcp." + web, mdns.TypeSRV, noerror, []string{"_http._tcp." + web + " SRV 0 100 80 " + web}, []string{web + " A 10.96.0.10"}},
		{"_dns._udp." + web, mdns.TypeSRV, noerror, []string{"_dns._udp." + web + " SRV 0 100 53 " + web}, []string{web + " A 10.96.0.10"}},
		{"_http._tcp." + web, mdns.TypeA, noerror, nil, nil},
		{"_tcp." + web, mdns.TypeSRV, noerror, nil, nil},
		{"_http._udp." + web, mdns.TypeSRV, nxdomain, nil, nil},
		{"_sctp." + web, mdns.TypeSRV, nxdomain, nil, nil},
		// A ClusterIP Service has no endpoint names, whatever its Endpoints.
		{"10-244-1-20." + web, mdns.TypeA, nxdomain, nil, nil},
		// A headless Service: its ready endpoints, each also by name.
		{db, mdns.TypeA, noerror, []string{db + " A 10.244.1.5", db + " A 10.244.2.7"}, nil},
		{db, mdns.TypeAAAA, noerror, nil, nil},
		{"db-0." + db, mdns.TypeA, noerror, []string{"db-0." + db + " A 10.244.1.5"}, nil},
		{"10-244-2-7." + db, mdns.TypeA, noerror, []string{"10-244-2-7." + db + " A 10.244.2.7"}, nil},
		{"10-244-1-5." + db, mdns.TypeA, nxdomain, nil, nil}, // it has a hostname
		{"10-244-3-9." + db, mdns.TypeA, nxdomain, nil, nil}, // not ready
		{"db-0." + db, mdns.TypeAAAA, noerror, nil, nil},
		{"_pg._tcp." + db, mdns.TypeSRV, noerror, []string{
			"_pg._tcp." + db + " SRV 0 50 5432 db-0." + db, "_pg._tcp." + db + " SRV 0 50 5432 10-244-2-7." + db}, dbExtra},
		// Pods by address.
		{"10-244-7-1.shop.pod.cluster.local.", mdns.TypeA, noerror, []string{"10-244-7-1.shop.pod.cluster.local. A 10.244.7.1"}, nil},
		{"10-244-7.shop.pod.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		{"10-244-7-256.shop.pod.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		// Reverse names of ClusterIPs and headless endpoints.
		{"10.0.96.10.in-addr.arpa.", mdns.TypePTR, noerror, []string{"10.0.96.10.in-addr.arpa. PTR " + web}, nil},
		{"5.1.244.10.in-addr.arpa.", mdns.TypePTR, noerror, []string{"5.1.244.10.in-addr.arpa. PTR db-0." + db}, nil},
		{"7.2.244.10.in-addr.arpa.", mdns.TypePTR, noerror, []string{"7.2.244.10.in-addr.arpa. PTR 10-244-2-7." + db}, nil},
		{"10.0.96.10.in-addr.arpa.", mdns.TypeA, noerror, nil, nil},
		{"11.0.96.10.in-addr.arpa.", mdns.TypePTR, nxdomain, nil, nil},  // in the service CIDR, unknown
		{"20.1.244.10.in-addr.arpa.", mdns.TypePTR, nxdomain, nil, nil}, // a ClusterIP Service's endpoint
		// Names that exist without records, the apex, the spec version.
		{"shop.svc.cluster.local.", mdns.TypeA, noerror, nil, nil},
		{"svc.cluster.local.", mdns.TypeA, noerror, nil, nil},
		{"cluster.local.", mdns.TypeA, noerror, nil, nil},
		{"dns-version.cluster.local.", mdns.TypeTXT, noerror, []string{`dns-version.cluster.local. TXT "1.1.0"`}, nil},
		// Names that do not exist.
		{"nope.shop.svc.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		{"web.other.svc.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		{"other.svc.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		{"web.shop.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
		{"x.y._http._tcp." + web, mdns.TypeA, nxdomain, nil, nil},
		{"example.com.shop.svc.cluster.local.", mdns.TypeA, nxdomain, nil, nil}, // a search-list expansion
		{"example.com.cluster.local.", mdns.TypeA, nxdomain, nil, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(fmt.Sprintf("%s/%s/%s", tc.name, mdns.TypeToString[tc.qtype], network), func(t *testing.T) {
				r := askOver(t, s, network, tc.name, tc.qtype)
				expect(t, r, tc.rcode, tc.ans, tc.extra...)
				if !r.Authoritative || !r.RecursionAvailable {
					t.Errorf("aa=%v ra=%v, want both", r.Authoritative, r.RecursionAvailable)
				}
			})
		}
	}
}

// TestNegativeAnswerSOA: NXDOMAIN and empty answers carry the zone's SOA,
// whose TTL and minimum bound how long resolvers cache the absence.
func TestNegativeAnswerSOA(t *testing.T) {
	s := listed(t, Config{Zone: "Corp.Example", ReverseCIDRs: cidrs}, nil, nil)
	r := ask(t, s, "nope.ns.svc.corp.example.", mdns.TypeA)
	expect(t, r, nxdomain, nil)
	soa := r.Ns[0].(*mdns.SOA)
	if soa.Hdr.Name != "corp.example." || soa.Hdr.Ttl != 5 || soa.Minttl != 5 || soa.Ns != "ns.dns.corp.example." {
		t.Fatalf("SOA %v", soa)
	}
	r = ask(t, s, "1.0.96.10.in-addr.arpa.", mdns.TypePTR)
	expect(t, r, nxdomain, nil)
	if n := r.Ns[0].Header().Name; n != "96.10.in-addr.arpa." {
		t.Fatalf("reverse SOA owner %s", n)
	}
	// cluster.local is not this server's zone: with no upstream, SERVFAIL.
	expect(t, ask(t, s, "web.ns.svc.cluster.local.", mdns.TypeA), servfail, nil)
}

// TestUpdates: changes and deletions of Services and Endpoints show in the
// next answer, reverse names included.
func TestUpdates(t *testing.T) {
	svcs, eps := shop()
	s := listed(t, Config{ReverseCIDRs: cidrs}, svcs, eps)
	const db = "db.shop.svc.cluster.local."

	s.OnEndpoints(eps1("db-0=10.244.1.5", "10.244.4.4"))
	expect(t, ask(t, s, db, mdns.TypeA), noerror, []string{db + " A 10.244.1.5", db + " A 10.244.4.4"})
	expect(t, ask(t, s, "10-244-2-7."+db, mdns.TypeA), nxdomain, nil)
	expect(t, ask(t, s, "7.2.244.10.in-addr.arpa.", mdns.TypePTR), nxdomain, nil)
	expect(t, ask(t, s, "4.4.244.10.in-addr.arpa.", mdns.TypePTR), noerror, []string{"4.4.244.10.in-addr.arpa. PTR 10-244-4-4." + db})

	// Publishing not-ready addresses adds them.
	pub := svc("shop", "db", corev1.ClusterIPNone)
	pub.Spec.PublishNotReadyAddresses = true
	s.OnService(pub)
	s.OnEndpoints(eps1("db-0=10.244.1.5", "|", "10.244.3.9"))
	expect(t, ask(t, s, db, mdns.TypeA), noerror, []string{db + " A 10.244.1.5", db + " A 10.244.3.9"})

	// Endpoints gone: the Service still exists, with no addresses.
	s.OnEndpointsDelete("shop", "db")
	expect(t, ask(t, s, db, mdns.TypeA), noerror, nil)
	expect(t, ask(t, s, "db-0."+db, mdns.TypeA), nxdomain, nil)
	expect(t, ask(t, s, "5.1.244.10.in-addr.arpa.", mdns.TypePTR), nxdomain, nil)

	// A new Service, then both deleted: names, namespace and PTR go.
	s.OnService(svc("shop", "api", "10.96.0.20", port("grpc", corev1.ProtocolTCP, 9090)))
	expect(t, ask(t, s, "api.shop.svc.cluster.local.", mdns.TypeA), noerror, []string{"api.shop.svc.cluster.local. A 10.96.0.20"})
	for _, name := range []string{"web", "db", "api"} {
		s.OnServiceDelete("shop", name)
	}
	expect(t, ask(t, s, "web.shop.svc.cluster.local.", mdns.TypeA), nxdomain, nil)
	expect(t, ask(t, s, "_grpc._tcp.api.shop.svc.cluster.local.", mdns.TypeSRV), nxdomain, nil)
	expect(t, ask(t, s, "shop.svc.cluster.local.", mdns.TypeA), nxdomain, nil)
	expect(t, ask(t, s, "20.0.96.10.in-addr.arpa.", mdns.TypePTR), nxdomain, nil)

	// A relist replaces everything.
	s.ReplaceServices([]*corev1.Service{svc("blog", "web", "10.96.0.30")})
	expect(t, ask(t, s, "web.blog.svc.cluster.local.", mdns.TypeA), noerror, []string{"web.blog.svc.cluster.local. A 10.96.0.30"})
	expect(t, ask(t, s, "30.0.96.10.in-addr.arpa.", mdns.TypePTR), noerror, []string{"30.0.96.10.in-addr.arpa. PTR web.blog.svc.cluster.local."})
	s.ReplaceServices(nil)
	expect(t, ask(t, s, "web.blog.svc.cluster.local.", mdns.TypeA), nxdomain, nil)
}

func eps1(addrs ...string) *corev1.Endpoints {
	return eps("shop", "db", []corev1.EndpointPort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}, addrs...)
}

// TestPTRSharedAddress: a pod behind two headless Services has a PTR record
// for each, and keeps the other when one Service goes.
func TestPTRSharedAddress(t *testing.T) {
	s := listed(t, Config{}, []*corev1.Service{svc("ns", "a", "None"), svc("ns", "b", "None")},
		[]*corev1.Endpoints{eps("ns", "a", nil, "10.244.0.9"), eps("ns", "b", nil, "10.244.0.9")})
	const q = "9.0.244.10.in-addr.arpa."
	expect(t, ask(t, s, q, mdns.TypePTR), noerror, []string{q + " PTR 10-244-0-9.a.ns.svc.cluster.local.", q + " PTR 10-244-0-9.b.ns.svc.cluster.local."})
	s.OnServiceDelete("ns", "a")
	expect(t, ask(t, s, q, mdns.TypePTR), noerror, []string{q + " PTR 10-244-0-9.b.ns.svc.cluster.local."})
}

// TestNotListed: until Services and Endpoints are both listed, the zone is
// answered SERVFAIL (a resolver retries; it would cache an NXDOMAIN), and
// never forwarded.
func TestNotListed(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", answerA("192.0.2.1"))
	s := startServer(t, Config{Upstreams: []string{up.addr}, ReverseCIDRs: cidrs})
	const web = "web.shop.svc.cluster.local."
	expect(t, ask(t, s, web, mdns.TypeA), servfail, nil)
	expect(t, ask(t, s, "10.0.96.10.in-addr.arpa.", mdns.TypePTR), servfail, nil)
	svcs, eps := shop()
	s.ReplaceServices(svcs)
	expect(t, ask(t, s, web, mdns.TypeA), servfail, nil)
	s.ReplaceEndpoints(eps)
	expect(t, ask(t, s, web, mdns.TypeA), noerror, []string{web + " A 10.96.0.10"})
	expect(t, ask(t, s, "nope.cluster.local.", mdns.TypeA), nxdomain, nil)
	if q := up.queries(); len(q) != 0 {
		t.Fatalf("cluster names forwarded: %v", q)
	}
	if st := s.Stats(); st.ServFail != 3 || st.Forwarded != 0 || st.Queries != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTruncation: a headless Service with more endpoints than fit in 512
// bytes is truncated over UDP (TC set, so the client retries over TCP),
// complete over TCP and over UDP with a large EDNS0 buffer.
func TestTruncation(t *testing.T) {
	var addrs []string
	for i := range 100 {
		addrs = append(addrs, fmt.Sprintf("10.244.%d.%d", i/50, 1+i%50))
	}
	s := listed(t, Config{}, []*corev1.Service{svc("ns", "big", "None")}, []*corev1.Endpoints{eps("ns", "big", nil, addrs...)})
	const name = "big.ns.svc.cluster.local."
	r := ask(t, s, name, mdns.TypeA)
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 100 {
		t.Fatalf("UDP: truncated=%v with %d answers", r.Truncated, len(r.Answer))
	}
	r = askOver(t, s, "tcp", name, mdns.TypeA)
	if r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("TCP: truncated=%v with %d answers", r.Truncated, len(r.Answer))
	}
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	m.SetEdns0(4096, false)
	r = exchange(t, s.Addr(), "udp", m)
	if r.Truncated || len(r.Answer) != 100 || r.IsEdns0() == nil {
		t.Fatalf("UDP with EDNS0: truncated=%v with %d answers, opt %v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
}

// TestRotation: clients that take the first address of a headless Service
// do not all get the same one.
func TestRotation(t *testing.T) {
	s := listed(t, Config{}, []*corev1.Service{svc("ns", "h", "None")},
		[]*corev1.Endpoints{eps("ns", "h", nil, "10.244.0.1", "10.244.0.2", "10.244.0.3")})
	first := map[string]bool{}
	for range 3 {
		r := ask(t, s, "h.ns.svc.cluster.local.", mdns.TypeA)
		first[r.Answer[0].(*mdns.A).A.String()] = true
	}
	if len(first) != 3 {
		t.Fatalf("first addresses of three answers: %v", first)
	}
}

// TestMalformed: what is not one plain query gets an error, not a crash.
func TestMalformed(t *testing.T) {
	s := listed(t, Config{}, nil, nil)
	m := new(mdns.Msg)
	m.SetQuestion("web.ns.svc.cluster.local.", mdns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	if r := exchange(t, s.Addr(), "udp", m); r.Rcode != mdns.RcodeFormatError {
		t.Fatalf("two questions: %s", mdns.RcodeToString[r.Rcode])
	}
	m = new(mdns.Msg)
	m.SetQuestion("web.ns.svc.cluster.local.", mdns.TypeA)
	m.Question[0].Qclass = mdns.ClassCHAOS
	if r := exchange(t, s.Addr(), "udp", m); r.Rcode != mdns.RcodeRefused {
		t.Fatalf("class CH: %s", mdns.RcodeToString[r.Rcode])
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"1-2-3-4", true}, {"255-255-255-255", true}, {"1-2-3", false}, {"1-2-3-4-5", false},
		{"01-2-3-4", false}, {"256-1-1-1", false}, {"+1-2-3-4", false}, {"a-b-c-d", false}} {
		if _, ok := undashed(tc.in); ok != tc.ok {
			t.Errorf("undashed(%q) ok=%v", tc.in, ok)
		}
		if _, ok := reverseIPv4(strings.ReplaceAll(tc.in, "-", ".") + ".in-addr.arpa."); ok != tc.ok {
			t.Errorf("reverseIPv4(%q) ok=%v", tc.in, ok)
		}
	}
	if ip, _ := reverseIPv4("4.3.2.1.in-addr.arpa."); ip.String() != "1.2.3.4" {
		t.Errorf("reverseIPv4 gave %s", ip)
	}
	if z := reverseZone(netip.MustParsePrefix("10.96.0.0/12")); z != "10.in-addr.arpa." {
		t.Errorf("reverseZone /12 = %s", z)
	}
}
