package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Names of what the harness creates, all carrying the run's number X (the
// third octet of its subnet 10.201.X.0/24), so that leftovers of a crashed
// run are recognised and no other tool's objects are ever touched.
const (
	nsPrefix     = "orchchaos" // network namespaces: orchchaos<X>-<host>
	linkPrefix   = "occ"       // bridge occ<X>, veths occ<X><host> and occ<X><host>p
	lockDir      = "/run/orch-chaos"
	nftTable     = "orchchaos"   // the table of partition rules in a host's namespace
	subnetPrefix = "10.201."     // 10.201.X.0/24
	runDirPrefix = "orch-chaos-" // os.TempDir()/orch-chaos-<X>: data dirs, logs, mounts
)

// Net is one run's network: a bridge in the root namespace with the
// address 10.201.X.1, and one namespace per host with a veth on the bridge.
type Net struct {
	X      int
	Bridge string
	Dir    string // the run's directory (data dirs, logs, mount points)
	lock   *os.File
	hosts  []string // namespaces made, for cleanup
}

// GatewayIP is the root namespace's address on the bridge (the clients').
func (n *Net) GatewayIP() string { return fmt.Sprintf("%s%d.1", subnetPrefix, n.X) }

// IP returns the address of host number i (1-254) on the bridge.
func (n *Net) IP(i int) string { return fmt.Sprintf("%s%d.%d", subnetPrefix, n.X, i) }

func (n *Net) nsName(host string) string { return fmt.Sprintf("%s%d-%s", nsPrefix, n.X, host) }
func (n *Net) veth(host string) string   { return fmt.Sprintf("%s%d%s", linkPrefix, n.X, host) }

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS runs a command in a host's network namespace.
func (n *Net) inNS(host string, stdin string, name string, args ...string) error {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.nsName(host), "--", name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("in %s: %s %s: %v: %s", host, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Requirements reports why this machine cannot run the suite ("" if it can).
func Requirements() string {
	if os.Geteuid() != 0 {
		return "the chaos suite needs root (network namespaces, nftables, mounts)"
	}
	for _, tool := range []string{"ip", "nft", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "the chaos suite needs " + tool
		}
	}
	return ""
}

// NewNet removes the leftovers of crashed runs, then picks a free run
// number (one whose lock no live process holds and whose subnet this
// machine does not use) and makes the bridge.
func NewNet() (*Net, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	CleanStale()
	used := usedNets()
	for range 100 {
		x := 10 + rand.IntN(240)
		if overlaps(used, x) {
			continue
		}
		lock, ok := tryLock(x)
		if !ok {
			continue
		}
		n := &Net{X: x, Bridge: fmt.Sprintf("%s%d", linkPrefix, x), lock: lock}
		activeMu.Lock()
		active[x] = true
		activeMu.Unlock()
		n.Dir = filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", runDirPrefix, x))
		// Another run with this number crashed after CleanStale looked.
		cleanRun(x)
		if err := n.up(); err != nil {
			n.Close()
			return nil, err
		}
		return n, nil
	}
	return nil, errors.New("no free 10.201.X.0/24 run number")
}

func (n *Net) up() error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", n.GatewayIP() + "/24", "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// AddHost makes a namespace for host with address ip on the bridge.
func (n *Net) AddHost(host, ip string) error {
	ns, veth := n.nsName(host), n.veth(host)
	n.hosts = append(n.hosts, host)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", veth + "p"},
		{"link", "set", veth + "p", "netns", ns},
		{"link", "set", veth, "master", n.Bridge, "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", veth + "p"},
		{"-n", ns, "link", "set", veth + "p", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// active are the runs of this process, cleaned up by HandleSignals.
var (
	activeMu sync.Mutex
	active   = map[int]bool{}
)

// HandleSignals makes SIGINT and SIGTERM remove everything the runs of this
// process made before it exits (t.Cleanup does not run then). A test
// binary killed otherwise (SIGKILL, a -timeout panic) leaves leftovers that
// the next run removes (CleanStale); its processes die with it (PDEATHSIG).
func HandleSignals() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "chaos: %v: removing the clusters' processes, namespaces, links and mounts\n", s)
		activeMu.Lock()
		for x := range active {
			cleanRun(x)
		}
		activeMu.Unlock()
		os.Exit(1)
	}()
}

// Close removes the namespaces, links and the run's directory (callers
// have killed the processes and unmounted the mounts), and releases the
// run number.
func (n *Net) Close() {
	cleanRun(n.X)
	activeMu.Lock()
	delete(active, n.X)
	activeMu.Unlock()
	if n.lock != nil {
		n.lock.Close()
		n.lock = nil
	}
}

// tryLock takes run number x's lock; the kernel drops it when the holder
// dies, so a lock that can be taken means no live run uses x.
func tryLock(x int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("%d.lock", x)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// usedNets lists the networks of the root namespace's addresses and routes.
func usedNets() []*net.IPNet {
	var used []*net.IPNet
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			used = append(used, ipn)
		}
	}
	out, _ := exec.Command("ip", "-4", "-o", "route", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		dst, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if dst == "" || dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, ipn, err := net.ParseCIDR(dst); err == nil {
			used = append(used, ipn)
		}
	}
	return used
}

// overlaps reports whether 10.201.x.0/24 meets any of the networks.
func overlaps(used []*net.IPNet, x int) bool {
	_, mine, _ := net.ParseCIDR(fmt.Sprintf("%s%d.0/24", subnetPrefix, x))
	for _, u := range used {
		if u.Contains(mine.IP) || mine.Contains(u.IP) {
			return true
		}
	}
	return false
}
