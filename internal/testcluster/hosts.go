package testcluster

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// Net is a small multi-host network on one machine, as scripts/demo.sh
// builds it: a bridge in the root network namespace carrying the gateway
// (.1) and the servers' addresses (.11, .12, ...; Options.Prefix), and one
// network namespace per worker host with a veth on the bridge. Every name
// carries the test process's PID (bridge omh<PID>, veths omh<PID>h<N>[p],
// namespaces orchmh<PID>-<host>, directory /run/orch-mh/<PID>), so that a
// run killed before its cleanup is recognised and removed by the next one.
// Needs root, ip and nsenter.
type Net struct {
	// Prefix is the subnet's first three octets with the dot: "10.202.7.".
	Prefix string
	Bridge string
	// Dir is on a tmpfs and private to the run: workers' runtime state
	// (their pods' network namespace mounts) goes here.
	Dir   string
	lock  *os.File
	hosts []string
}

// Host is a network namespace on a Net.
type Host struct {
	Name string
	IP   string
	NS   string // /run/netns/<name>
}

const (
	netRunDir  = "/run/orch-mh"
	netNSStem  = "orchmh"
	netLinkTag = "omh"
)

// NetRequirements says why this machine cannot build a Net ("" if it can).
func NetRequirements() string {
	if os.Geteuid() != 0 {
		return "not root: network namespaces, bridges and veths need root"
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is missing"
		}
	}
	return ""
}

// NewNet removes what dead runs left, picks a free /24 in base (e.g.
// "10.202.", held with a lock file while the run lives) and makes the
// bridge. t's cleanup removes it; call it before anything that runs inside
// the network, so that it is removed after them.
func NewNet(t T, base string) *Net {
	t.Helper()
	if err := os.MkdirAll(netRunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	CleanStaleNets()
	pid := os.Getpid()
	n := &Net{Bridge: fmt.Sprintf("%s%d", netLinkTag, pid), Dir: filepath.Join(netRunDir, strconv.Itoa(pid))}
	for range 100 {
		x := rand.IntN(250)
		if subnetUsed(base, x) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(netRunDir, fmt.Sprintf("%s%d.lock", base, x)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		n.Prefix, n.lock = fmt.Sprintf("%s%d.", base, x), f
		break
	}
	if n.lock == nil {
		t.Fatalf("no free %sX.0/24", base)
	}
	t.Cleanup(n.Close)
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", n.Prefix + "1/24", "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if err := runCmd("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// AddAddrs puts more addresses of the root namespace on the bridge:
// Prefix+last for each; the servers' (11, 12, 13 for three: see
// Options.Prefix), a simulator's.
func (n *Net) AddAddrs(t T, lasts ...int) {
	t.Helper()
	for _, last := range lasts {
		if err := runCmd("ip", "addr", "add", fmt.Sprintf("%s%d/24", n.Prefix, last), "dev", n.Bridge); err != nil {
			t.Fatal(err)
		}
	}
}

// NSName is the name of host's network namespace (orchmh<PID>-<host>),
// known before AddHost makes it. Workers use it for their containerd
// namespace too, so that Close finds what a killed run's containers left.
func (n *Net) NSName(host string) string { return fmt.Sprintf("%s%d-%s", netNSStem, os.Getpid(), host) }

// AddHost makes host name's namespace, with address .<last> on the bridge
// and a default route through the gateway.
func (n *Net) AddHost(t T, name string, last int) *Host {
	t.Helper()
	i := len(n.hosts) + 1
	h := &Host{Name: name, IP: fmt.Sprintf("%s%d", n.Prefix, last), NS: n.NSName(name)}
	n.hosts = append(n.hosts, h.NS)
	veth := fmt.Sprintf("%sh%d", n.Bridge, i)
	for _, args := range [][]string{
		{"netns", "add", h.NS},
		{"link", "add", veth, "type", "veth", "peer", "name", veth + "p"},
		{"link", "set", veth + "p", "netns", h.NS},
		{"link", "set", veth, "master", n.Bridge, "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", veth + "p"},
		{"-n", h.NS, "link", "set", veth + "p", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "route", "add", "default", "via", n.Prefix + "1"},
	} {
		if err := runCmd("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	h.NS = "/run/netns/" + h.NS
	return h
}

// Close removes the namespaces (and with them the veths, and whatever was
// programmed inside), the bridge and the run's directory, unmounting what
// is mounted below it. Processes inside must be gone first.
func (n *Net) Close() {
	cleanNet(os.Getpid())
	if n.lock != nil {
		os.Remove(n.lock.Name())
		n.lock.Close()
		n.lock = nil
	}
	os.Remove(netRunDir) // unless another run uses it
}

// CleanStaleNets removes the Nets of processes that no longer run.
func CleanStaleNets() {
	pids := map[int]bool{}
	re := regexp.MustCompile(`^(?:` + netNSStem + `(\d+)-.+|` + netLinkTag + `(\d+))$`)
	var names []string
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			names = append(names, i.Name)
		}
	}
	if ents, err := os.ReadDir(netRunDir); err == nil {
		for _, e := range ents {
			names = append(names, netLinkTag+e.Name())
		}
	}
	for _, name := range names {
		if m := re.FindStringSubmatch(name); m != nil {
			pid, _ := strconv.Atoi(m[1] + m[2])
			pids[pid] = true
		}
	}
	for pid := range pids {
		if pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			cleanNet(pid)
		}
	}
}

func cleanNet(pid int) {
	dir := filepath.Join(netRunDir, strconv.Itoa(pid))
	unmountUnder(dir)
	os.RemoveAll(dir)
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", netNSStem, pid)) {
				exec.Command("ip", "netns", "del", e.Name()).Run()
			}
		}
	}
	exec.Command("ip", "link", "del", fmt.Sprintf("%s%d", netLinkTag, pid)).Run()
	// The parent cgroups and runc state dirs of containerd namespaces
	// named after the hosts (NSName), once empty.
	stem := fmt.Sprintf("%s%d-", netNSStem, pid)
	for _, pat := range []string{"/sys/fs/cgroup/*/" + stem + "*", "/sys/fs/cgroup/" + stem + "*", "/run/containerd/runc/" + stem + "*"} {
		dirs, _ := filepath.Glob(pat)
		for _, d := range dirs {
			syscall.Rmdir(d)
		}
	}
}

// unmountUnder lazily unmounts everything mounted below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// subnetUsed reports whether base+x.0/24 meets an address or route of the
// root namespace.
func subnetUsed(base string, x int) bool {
	_, mine, err := net.ParseCIDR(fmt.Sprintf("%s%d.0/24", base, x))
	if err != nil {
		return true
	}
	var used []*net.IPNet
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				used = append(used, ipn)
			}
		}
	}
	out, _ := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	for _, line := range strings.Split(string(out), "\n") {
		dst, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if dst == "" || dst == "default" || dst == "local" || dst == "broadcast" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, ipn, err := net.ParseCIDR(dst); err == nil {
			used = append(used, ipn)
		}
	}
	for _, u := range used {
		if u.Contains(mine.IP) || mine.Contains(u.IP) {
			return true
		}
	}
	return false
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// WorkerIn starts a worker, `orch-worker --name name`, inside host h's
// network namespace, with h's address (extra flags appended: containerd
// socket and namespace, runtime state dir...). nsenter enters only the
// network namespace and execs orch-worker (same PID: signals reach it);
// `ip netns exec` would remount /sys and hide the cgroup tree the worker
// needs. It does not wait.
func (c *Cluster) WorkerIn(h *Host, name string, extra ...string) *Server {
	c.t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		c.t.Fatal(errors.New("nsenter is missing"))
	}
	s := &Server{Name: name, IP: h.IP, DataDir: filepath.Join(c.dir, name), LogPath: filepath.Join(c.dir, name+".log"), bin: nsenter}
	s.args = append([]string{"--net=" + h.NS, "--", filepath.Join(c.bin, "orch-worker"), "--name", name,
		"--join", c.prefix + "11", "--bind", h.IP, "--data-dir", s.DataDir, "--log-level", "info"}, extra...)
	if c.opts.Token != "" {
		s.args = append(s.args, "--token", c.opts.Token)
	}
	c.Others = append(c.Others, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	return s
}
