package nft

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/proxy"
)

func TestMain(m *testing.M) { testnet.Main(m) }

func TestNames(t *testing.T) {
	ks := []proxy.Key{
		{Addr: netip.MustParseAddr("10.96.0.10"), Proto: proxy.TCP, Port: 80},
		{Proto: proxy.UDP, Port: 30053},
	}
	ep := netip.MustParseAddrPort("10.244.1.5:8080")
	for _, k := range ks {
		for _, tc := range []struct {
			name string
			want object
		}{
			{svcChain(k), object{kind: 's', key: k}},
			{epChain(k, ep), object{kind: 'e', key: k, ep: ep}},
			{affSet(k, ep, 90*time.Second), object{kind: 'a', key: k, ep: ep, timeout: 90 * time.Second}},
		} {
			got, ok := parseName(tc.name)
			if !ok || got != tc.want {
				t.Errorf("parseName(%q) = %+v, %v; want %+v", tc.name, got, ok, tc.want)
			}
		}
	}
	for _, bad := range []string{"services", "svc-10.96.0.10-tcp", "svc-10.96.0.010-tcp-80", "ep-np-sctp-1-1.2.3.4-5",
		"aff-np-tcp-30000-10.0.0.1-80-0", "svc-::1-tcp-80", "svc-np-tcp-80-extra"} {
		if o, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) = %+v, want not ours", bad, o)
		}
	}
}

func vs(key string, affinity time.Duration, eps ...string) *proxy.VirtualServer {
	v := &proxy.VirtualServer{Affinity: affinity}
	if p, ok := proxy.ParseProtocol(key[:3]); ok {
		var port uint16
		for _, c := range key[4:] {
			port = port*10 + uint16(c-'0')
		}
		v.Key = proxy.Key{Proto: p, Port: port}
	} else {
		ap := netip.MustParseAddrPort(key)
		v.Key = proxy.Key{Addr: ap.Addr(), Proto: proxy.TCP, Port: ap.Port()}
	}
	for _, e := range eps {
		w := 1
		if e[0] == '~' {
			w, e = 0, e[1:]
		}
		v.Endpoints = append(v.Endpoints, proxy.Endpoint{Addr: netip.MustParseAddrPort(e), Weight: w})
	}
	v.Endpoints = proxy.SortEndpoints(v.Endpoints)
	return v
}

func rules(vss ...*proxy.VirtualServer) proxy.RuleSet {
	rs := proxy.RuleSet{}
	for _, v := range vss {
		rs[v.Key] = v
	}
	return rs
}

// TestApplyRead drives the backend through a sequence of rule sets in a
// throwaway namespace and checks that Read returns each one exactly.
func TestApplyRead(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	ns := testnet.New(t, "nft-applyread", 0)
	b := New(Config{NetNS: ns.Path, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")})
	defer b.Close()
	ctx := context.Background()
	if err := b.Init(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []proxy.RuleSet{
		rules(vs("10.96.0.10:80", 0, "10.244.1.5:8080", "10.244.1.6:8080"), vs("tcp/30080", 0, "10.244.1.5:8080")),
		rules(vs("10.96.0.10:80", 0, "10.244.1.5:8080", "~10.244.1.6:8080", "10.244.1.7:8080"), vs("tcp/30080", 0)),
		rules(vs("10.96.0.10:80", time.Minute, "10.244.1.5:8080", "10.244.1.7:8080"), vs("udp/30053", time.Hour, "10.244.2.1:53")),
		rules(vs("10.96.0.10:80", 2*time.Minute, "~10.244.1.5:8080", "10.244.1.9:8080")),
		rules(vs("10.96.0.11:80", 0), vs("10.96.0.10:80", 0, "10.244.1.9:8080")),
		rules(),
	}
	cur := proxy.RuleSet{}
	for i, want := range steps {
		if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(cur, want)}); err != nil {
			t.Fatalf("step %d: apply: %v", i, err)
		}
		got, err := b.Read(ctx)
		if err != nil {
			t.Fatalf("step %d: read: %v", i, err)
		}
		if !got.Equal(want) {
			t.Fatalf("step %d: read back\n%s\nwant\n%s", i, got, want)
		}
		cur = want
	}
	// Nothing but the fixed objects is left.
	c, _ := b.connect()
	chains, _ := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	for _, ch := range chains {
		if ch.Table.Name == b.cfg.Table && ch.Hooknum == nil && !isFixedChain(ch.Name) {
			t.Errorf("chain %s left behind", ch.Name)
		}
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReadRepairs: objects that do not add up (hand edits) are removed by
// Read, and the next Apply from what Read returned restores the rules.
func TestReadRepairs(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	ns := testnet.New(t, "nft-repair", 0)
	b := New(Config{NetNS: ns.Path})
	defer b.Close()
	ctx := context.Background()
	if err := b.Init(ctx); err != nil {
		t.Fatal(err)
	}
	want := rules(vs("10.96.0.10:80", 0, "10.244.1.5:8080"), vs("10.96.0.11:80", 0, "10.244.1.6:8080"))
	if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(proxy.RuleSet{}, want)}); err != nil {
		t.Fatal(err)
	}
	c, _ := b.connect()
	// A stray chain with our prefix and a missing map element.
	c.AddChain(b.chain("ep-garbage"))
	s, e := (&batch{b: b}).element(want[vs("10.96.0.11:80", 0).Key], true)
	c.SetDeleteElements(s, []nftables.SetElement{e})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := b.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("read %s, want only 10.96.0.10", got)
	}
	if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(got, want)}); err != nil {
		t.Fatal(err)
	}
	if got, err = b.Read(ctx); err != nil || !got.Equal(want) {
		t.Fatalf("after repair read %s (%v), want\n%s", got, err, want)
	}
}

// TestCheck: Check answers from the generation when nothing but the backend
// changed the ruleset, compares objects when something else did (another
// table's change is no drift), and reports drift when the table lost a
// chain or a map element or was deleted; a Read then repairs it.
func TestCheck(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	ns := testnet.New(t, "nft-check", 0)
	b := New(Config{NetNS: ns.Path})
	defer b.Close()
	ctx := context.Background()
	if err := b.Init(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() proxy.RuleSet {
		t.Helper()
		rs, err := b.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	check := func(want bool, what string) {
		t.Helper()
		if ok, err := b.Check(ctx); err != nil || ok != want {
			t.Fatalf("%s: Check = %v, %v; want %v", what, ok, err, want)
		}
	}
	want := rules(vs("10.96.0.10:80", time.Minute, "10.244.1.5:8080", "~10.244.1.6:8080"), vs("10.96.0.11:80", 0),
		vs("tcp/30080", 0, "10.244.1.7:8080"))
	cur := read()
	if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(cur, want)}); err != nil {
		t.Fatal(err)
	}
	check(true, "after apply")
	check(true, "generation known")
	if b.state.gen == 0 {
		t.Fatal("a clean check did not record the generation")
	}
	one := rules(want[vs("10.96.0.11:80", 0).Key], want[vs("tcp/30080", 0).Key], vs("10.96.0.10:80", time.Minute, "10.244.1.5:8080"))
	if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(want, one)}); err != nil {
		t.Fatal(err)
	}
	if b.state.gen == 0 {
		t.Fatal("the backend's own apply lost the generation")
	}
	check(true, "after own apply")

	c, _ := b.connect()
	other := c.AddTable(&nftables.Table{Name: "someone-else", Family: nftables.TableFamilyIPv4})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	check(true, "another table changed")

	np := vs("tcp/30080", 0).Key
	s, e := (&batch{b: b}).element(one[np], true)
	c.SetDeleteElements(s, []nftables.SetElement{e})
	c.FlushChain(b.chain(svcChain(np)))
	c.DelChain(b.chain(svcChain(np)))
	ep := b.chain(epChain(np, netip.MustParseAddrPort("10.244.1.7:8080")))
	c.FlushChain(ep)
	c.DelChain(ep)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	check(false, "a virtual server deleted by hand")
	got := read()
	if err := b.Apply(ctx, proxy.Plan{Changes: proxy.Diff(got, one)}); err != nil {
		t.Fatal(err)
	}
	check(true, "after repair")
	if got := read(); !got.Equal(one) {
		t.Fatalf("after repair read\n%s\nwant\n%s", got, one)
	}
	check(true, "after read")

	s, e = (&batch{b: b}).element(one[vs("10.96.0.11:80", 0).Key], false)
	c.SetDeleteElements(s, []nftables.SetElement{e})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	check(false, "a no-endpoint element deleted by hand")
	read()
	if err := DeleteTable(c, b.cfg.Table); err != nil {
		t.Fatal(err)
	}
	check(false, "table deleted")
	c.DelTable(other)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
