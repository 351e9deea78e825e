// Package testnet builds throwaway networks for tests (the proxy's, the
// worker's pod masquerade): each
// namespace ("node", "pod", "client") is held by a child process of the test
// binary created with CLONE_NEWNET, so the namespace, every interface in it
// and every nft table or IPVS service in it vanish when the child dies. The
// children die with the test (Cleanup) or, if the test binary is killed, by
// PDEATHSIG. Nothing is created in the caller's own namespace, and all
// traffic stays between these namespaces on private addresses.
package testnet

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	pnetns "orch.dev/orch/internal/netns"
)

const helperEnv = "ORCH_TESTNET_HELPER"

// Main runs the tests, or the helper when the binary was started as one.
// Call it from TestMain.
func Main(m *testing.M) {
	RunHelperIfChild()
	os.Exit(m.Run())
}

// RunHelperIfChild runs the namespace holder and never returns when the
// test binary was started as one; otherwise it returns at once. A TestMain
// that does more than Main calls it first.
func RunHelperIfChild() {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode, os.Args[len(os.Args)-1])
		os.Exit(0)
	}
}

// Available reports why real-network tests cannot run here ("" if they can).
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces, nftables)"
	}
	return ""
}

// NS is a network namespace held by a child process.
type NS struct {
	Name string
	Path string // /proc/PID/ns/net
	cmd  *exec.Cmd
}

// New starts a namespace holder. With echo set, the child also runs TCP and
// UDP echo servers on port (see Echo).
func New(t testing.TB, name string, echoPort int) *NS {
	t.Helper()
	mode := "hold"
	if echoPort > 0 {
		mode = fmt.Sprintf("echo:%d", echoPort)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", name)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start namespace %s: %v", name, err)
	}
	ns := &NS{Name: name, Path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), cmd: cmd}
	t.Cleanup(ns.Close)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("helper said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("namespace %s: %v", name, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("namespace %s: helper not ready", name)
	}
	return ns
}

// Close kills the holder; the namespace and everything in it go with it.
func (n *NS) Close() {
	if n.cmd.ProcessState == nil {
		n.cmd.Process.Kill()
		n.cmd.Wait()
	}
}

// Do runs fn inside the namespace.
func (n *NS) Do(fn func() error) error { return pnetns.Do(n.Path, fn) }

// Sysctl sets a sysctl inside the namespace.
func (n *NS) Sysctl(t testing.TB, name, value string) {
	t.Helper()
	if err := pnetns.WriteSysctl(n.Path, name, value); err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", n.Name, name, value, err)
	}
}

// Handle is a rtnetlink handle inside the namespace.
func (n *NS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, syscall.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return nh
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// AddAddr assigns cidr (e.g. "10.244.7.1/24") to link name and brings it up.
func AddAddr(t testing.TB, h *netlink.Handle, name, cidr string) {
	t.Helper()
	l, err := h.LinkByName(name)
	must(t, "link "+name, err)
	if cidr != "" {
		a, err := netlink.ParseAddr(cidr)
		must(t, "parse "+cidr, err)
		must(t, "addr add "+cidr, h.AddrAdd(l, a))
	}
	must(t, "link up "+name, h.LinkSetUp(l))
}

// Bridge creates a bridge with address cidr in the namespace.
func Bridge(t testing.TB, n *NS, name, cidr string) {
	t.Helper()
	h := n.Handle(t)
	must(t, "bridge "+name, h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}))
	AddAddr(t, h, name, cidr)
}

// Attach connects inner (a pod or client) to outer with a veth pair: inner
// gets ifInner with innerCIDR and a default route via gw; outer's end is
// enslaved to bridge (hairpin on, like the CNI bridge plugin) or, with
// bridge "", gets outerCIDR.
func Attach(t testing.TB, outer *NS, ifOuter, bridge, outerCIDR string, inner *NS, innerCIDR, gw string) {
	t.Helper()
	oh, ih := outer.Handle(t), inner.Handle(t)
	fd, err := os.Open(inner.Path)
	must(t, "open ns", err)
	defer fd.Close()
	must(t, "veth "+ifOuter, oh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifOuter},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd.Fd()))}))
	l, err := oh.LinkByName(ifOuter)
	must(t, "veth", err)
	if bridge != "" {
		br, err := oh.LinkByName(bridge)
		must(t, "bridge", err)
		must(t, "enslave", oh.LinkSetMaster(l, br))
		must(t, "hairpin", oh.LinkSetHairpin(l, true))
	}
	AddAddr(t, oh, ifOuter, outerCIDR)
	AddAddr(t, ih, "lo", "")
	AddAddr(t, ih, "eth0", innerCIDR)
	must(t, "default route", ih.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}))
}

// Reply is what an echo server answered: its name and the client address it
// saw (which shows whether the connection was masqueraded).
type Reply struct {
	Name string
	Peer string
}

// Dial connects from inside the namespace to addr ("tcp" or "udp") and
// returns the echo server's reply.
func (n *NS) Dial(network, addr string, timeout time.Duration) (Reply, error) {
	var r Reply
	err := n.Do(func() error {
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if network == "udp" {
			if _, err := c.Write([]byte("hi\n")); err != nil {
				return err
			}
		}
		buf := make([]byte, 256)
		m, err := c.Read(buf)
		if err != nil {
			return err
		}
		f := strings.Fields(string(buf[:m]))
		if len(f) != 2 {
			return fmt.Errorf("bad reply %q", buf[:m])
		}
		r = Reply{Name: f[0], Peer: f[1]}
		return nil
	})
	return r, err
}

// DefaultRoute adds a default route via gw in the namespace.
func DefaultRoute(t testing.TB, n *NS, gw string) {
	t.Helper()
	must(t, "default route", n.Handle(t).RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}))
}
