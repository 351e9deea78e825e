package routes

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testNode(name, cidr, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestDesired(t *testing.T) {
	nodes := []*corev1.Node{
		testNode("w1", "10.244.1.0/24", "192.168.77.1"), // self
		testNode("w3", "10.244.3.0/24", "192.168.77.3"),
		testNode("w2", "10.244.2.0/24", "192.168.77.2"),
		testNode("sim", "", "198.18.0.1"),                  // no pod network
		testNode("noip", "10.244.4.0/24", ""),              // no address yet
		testNode("bad", "10.244.5.0/33", "192.168.77.5"),   // unparsable CIDR
		testNode("dup-b", "10.244.2.0/24", "192.168.77.9"), // claims w2's range: w2 wins by name
	}
	got := fmt.Sprint(Desired("w1", nodes))
	want := "[10.244.2.0/24 via 192.168.77.9 10.244.3.0/24 via 192.168.77.3]"
	// "dup-b" < "w2": the lower name keeps a contested range.
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// testNetns creates a network namespace with a veth interface (this
// kernel has no dummy driver) on
// 192.168.77.1/24 and returns a netlink handle into it; everything is
// removed when the test ends.
func testNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	name := fmt.Sprintf("orch-routes-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "node0"}, PeerName: "node1"}); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("node0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("192.168.77.1/24")
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node1", "node0"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// In a real network namespace: routes follow the nodes (added, moved to a
// new gateway, removed), a route someone else installed is left alone, and
// a new manager (an agent restart) removes the orch routes it no longer
// wants once it has the full node list, but not before.
func TestManagerProgramsTheKernel(t *testing.T) {
	h := testNetns(t)
	foreign := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 250, 0, 0), Mask: net.CIDRMask(16, 32)}, Gw: net.IPv4(192, 168, 77, 254), Protocol: netlink.RouteProtocol(4)}
	if err := h.RouteAdd(foreign); err != nil {
		t.Fatal(err)
	}
	m := New(h, "w1", nil)
	check := func(want string) {
		t.Helper()
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		have, err := m.Current()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(have); got != want {
			t.Fatalf("kernel has %s, want %s", got, want)
		}
	}
	m.Replace([]*corev1.Node{testNode("w1", "10.244.1.0/24", "192.168.77.1"), testNode("w2", "10.244.2.0/24", "192.168.77.2")})
	check("[10.244.2.0/24 via 192.168.77.2]")
	m.OnNode(testNode("w3", "10.244.3.0/24", "192.168.77.3"))
	check("[10.244.2.0/24 via 192.168.77.2 10.244.3.0/24 via 192.168.77.3]")
	m.OnNode(testNode("w2", "10.244.2.0/24", "192.168.77.22")) // new address
	check("[10.244.2.0/24 via 192.168.77.22 10.244.3.0/24 via 192.168.77.3]")
	m.OnNodeDelete("w3")
	check("[10.244.2.0/24 via 192.168.77.22]")

	restarted := New(h, "w1", nil)
	restarted.OnNode(testNode("w4", "10.244.4.0/24", "192.168.77.4"))
	if err := restarted.Sync(); err != nil {
		t.Fatal(err)
	}
	if have, _ := restarted.Current(); len(have) != 2 {
		t.Fatalf("before its first full list a restarted manager removed routes: %v", have)
	}
	restarted.Replace([]*corev1.Node{testNode("w4", "10.244.4.0/24", "192.168.77.4")})
	m = restarted
	check("[10.244.4.0/24 via 192.168.77.4]")

	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(4)}, netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(rs) != 1 {
		t.Fatalf("the foreign route is gone or changed: %v %v", rs, err)
	}
	if _, ok := netip.AddrFromSlice(rs[0].Gw.To4()); !ok {
		t.Fatal("foreign route lost its gateway")
	}
}
