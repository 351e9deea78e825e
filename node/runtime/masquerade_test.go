package runtime

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"orch.dev/orch/internal/testnet"
)

// TestMasquerade runs the node's masquerade rule in a throwaway network: a
// "node" namespace routes between a pod on its bridge (10.77.0.0/24), a
// second pod there, and an "outside" host (10.99.0.2). The outside host has
// a route back to the pods, so only the rule can make it see the node's
// address instead of the pod's.
func TestMasquerade(t *testing.T) {
	if why := testnet.Available(); why != "" {
		t.Skip(why)
	}
	node, pod := testnet.New(t, "node", 0), testnet.New(t, "pod", 0)
	pod2, outside := testnet.New(t, "pod2", 9000), testnet.New(t, "outside", 9000)
	testnet.Bridge(t, node, "br0", "10.77.0.1/24")
	testnet.Attach(t, node, "vpod", "br0", "", pod, "10.77.0.2/24", "10.77.0.1")
	testnet.Attach(t, node, "vpod2", "br0", "", pod2, "10.77.0.3/24", "10.77.0.1")
	testnet.Attach(t, node, "vout", "", "10.99.0.1/24", outside, "10.99.0.2/24", "10.99.0.1")
	node.Sysctl(t, "net.ipv4.ip_forward", "1")

	seen := func(addr string) string {
		t.Helper()
		r, err := pod.Dial("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("pod -> %s: %v", addr, err)
		}
		return r.Peer
	}
	inNode := func(fn func() error) {
		t.Helper()
		if err := node.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	if p := seen("10.99.0.2:9000"); p != "10.77.0.2" {
		t.Fatalf("without the rule the outside host saw %s, want the pod's 10.77.0.2", p)
	}
	cidr := netip.MustParsePrefix("10.77.0.0/24")
	inNode(func() error { return ensureMasquerade("br0", cidr) })
	inNode(func() error { return ensureMasquerade("br0", cidr) }) // again: still one rule
	if p := seen("10.99.0.2:9000"); p != "10.99.0.1" {
		t.Errorf("pod -> outside: peer %s, want the node's 10.99.0.1 (masqueraded)", p)
	}
	if p := seen("10.77.0.3:9000"); p != "10.77.0.2" {
		t.Errorf("pod -> pod on the same bridge: peer %s, want 10.77.0.2 (not masqueraded)", p)
	}
	inNode(func() error {
		if n := masqueradeRules(t, "br0"); n != 1 {
			t.Errorf("%d masquerade rules after two runs, want 1", n)
		}
		return nil
	})

	// Another pod CIDR replaces the rule: 10.77.0.0/24 is no longer masqueraded.
	inNode(func() error { return ensureMasquerade("br0", netip.MustParsePrefix("10.78.0.0/24")) })
	if p := seen("10.99.0.2:9000"); p != "10.77.0.2" {
		t.Errorf("after the CIDR changed: peer %s, want 10.77.0.2", p)
	}
	inNode(func() error { return removeMasquerade("br0") })
	inNode(func() error { return removeMasquerade("br0") }) // nothing left: no error
	inNode(func() error {
		if n := masqueradeRules(t, "br0"); n != 0 {
			t.Errorf("%d masquerade rules after RemoveMasquerade, want 0", n)
		}
		return nil
	})
}

// masqueradeRules counts the rules with a masquerade statement in bridge's
// table, in the calling thread's namespace (0 when there is no table).
func masqueradeRules(t *testing.T, bridge string) int {
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Name != masqueradeTable(bridge) {
			continue
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					if _, ok := e.(*expr.Masq); ok {
						n++
					}
				}
			}
		}
	}
	return n
}

// removeMasquerade deletes the masquerade table of the node whose pod
// bridge is bridge, in the caller's network namespace, and succeeds when
// there is none. (A worker never removes its table: its pods keep running
// after it stops; the node's network namespace takes the table along.)
func removeMasquerade(bridge string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: masqueradeTable(bridge)})
	if err := c.Flush(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
