package runtime_test

// The test environment: every `go test` run of this package starts a
// private containerd (root, state, socket, runc root and opt dir under one
// run directory, CRI disabled) and stops it at the end. Each test gets its
// own containerd namespace, CNI network, bridge and /24, state and log
// directories, and removes all of them (containers, sandboxes, network
// namespaces, interfaces, mounts) when it ends, failed or not. A run that
// died without cleaning up (a test timeout) is cleaned up by the next run.

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
)

const runDirPrefix = "orch-runtime-test-"

var env struct {
	skip     string // why the real-containerd tests are skipped
	runDir   string
	socket   string
	images   []imagebuild.Image
	archives map[string][]byte // test image name -> OCI archive
	proc     *exec.Cmd
	netIndex int
	mu       sync.Mutex
}

func TestMain(m *testing.M) {
	testnet.RunHelperIfChild() // masquerade_test's namespaces
	flag.Parse()
	code := func() int {
		if testing.Short() {
			env.skip = "-short: not starting containerd"
			return m.Run()
		}
		if err := setup(); err != nil {
			fmt.Fprintln(os.Stderr, "runtime tests:", err)
			teardown()
			return 1
		}
		defer teardown()
		return m.Run()
	}()
	os.Exit(code)
}

func setup() error {
	if _, err := exec.LookPath("containerd"); err != nil || os.Geteuid() != 0 {
		if os.Geteuid() != 0 {
			env.skip = "not root: containerd, network namespaces and CNI need root"
			return nil
		}
		return errors.New("containerd is not installed: run scripts/deps.sh runtime (make test does)")
	}
	for _, bin := range []string{"runc", "/usr/lib/cni/bridge", "ip", "docker-registry"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is missing: run scripts/deps.sh runtime", bin)
		}
	}
	if err := checkStatic("/bin/busybox"); err != nil {
		return fmt.Errorf("the test images' base layer: %w (install busybox-static: scripts/deps.sh runtime)", err)
	}
	cleanStaleRuns()
	dir, err := os.MkdirTemp("", runDirPrefix)
	if err != nil {
		return err
	}
	env.runDir = dir
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	ctx := context.Background()
	start := time.Now()
	if env.images, err = imagebuild.BuildTestImages(ctx, moduleRoot(), filepath.Join(dir, "images"), "/bin/busybox"); err != nil {
		return err
	}
	for i := range env.images {
		// gzip would take seconds under -race; the registry and docker
		// archive tests cover compressed layers.
		env.images[i].Uncompressed = true
	}
	env.archives = map[string][]byte{}
	for i, img := range env.images {
		var buf bytes.Buffer
		if err := imagebuild.WriteArchive(&buf, img); err != nil {
			return err
		}
		env.archives[imagebuild.TestImages[i]] = buf.Bytes()
	}
	fmt.Fprintf(os.Stderr, "runtime tests: test images built in %v\n", time.Since(start).Round(time.Millisecond))
	return startContainerd(dir)
}

// checkStatic makes sure path is a statically linked program: the images
// hold nothing else, no loader or libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

func moduleRoot() string {
	d, _ := filepath.Abs("../..")
	return d
}

func startContainerd(dir string) error {
	env.socket = filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), env.socket, filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	env.proc = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", env.socket); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited at start; see %s", logf.Name())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not listen on %s", env.socket)
		}
	}
}

func teardown() {
	if env.runDir == "" {
		return
	}
	if env.proc != nil {
		killAllTasks(env.socket)
		env.proc.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { env.proc.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			env.proc.Process.Kill()
		}
	}
	cleanDir(env.runDir)
	// The shims put their sockets in /run/containerd/s whatever the config
	// says. Remove only removes empty directories: another containerd's
	// state stays.
	os.Remove("/run/containerd/s")
	os.Remove("/run/containerd")
}

// killAllTasks kills and deletes every task left in any namespace, so no
// shim outlives the test's containerd.
func killAllTasks(socket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := containerd.New(socket, containerd.WithTimeout(2*time.Second))
	if err != nil {
		return
	}
	defer cl.Close()
	nss, _ := cl.NamespaceService().List(ctx)
	for _, ns := range nss {
		nctx := namespaced(ctx, ns)
		ctrs, _ := cl.Containers(nctx)
		for _, c := range ctrs {
			if t, err := c.Task(nctx, nil); err == nil {
				t.Delete(nctx, containerd.WithProcessKill)
			}
		}
	}
}

// cleanDir kills what a run left (processes whose command line names its
// directory: its containerd, shims and registry), deletes the bridges it
// recorded, unmounts what is mounted under it and removes it.
func cleanDir(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		if pid, err := strconv.Atoi(strings.Split(p, "/")[2]); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bridges")); err == nil {
		for _, br := range strings.Fields(string(b)) {
			exec.Command("ip", "link", "del", br).Run()
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "namespaces")); err == nil {
		for _, ns := range strings.Fields(string(b)) {
			removeCgroups(ns)
		}
	}
	unmountUnder(dir)
	os.RemoveAll(dir)
}

// removeCgroups removes the parent cgroup runc made for a containerd
// namespace (/<ns> in every hierarchy); runc removes only the containers'.
// It fails, harmlessly, where a container cgroup is left inside.
func removeCgroups(ns string) error {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && err != syscall.ENOENT {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- { // deepest (latest) first
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// cleanStaleRuns cleans run directories whose test process is gone.
func cleanStaleRuns() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if pid, perr := strconv.Atoi(string(b)); err == nil && perr == nil && syscall.Kill(pid, 0) == nil {
			continue // a run in progress
		}
		fmt.Fprintf(os.Stderr, "runtime tests: cleaning up after a dead run in %s\n", d)
		killAllTasks(filepath.Join(d, "containerd.sock"))
		cleanDir(d)
	}
}

func namespaced(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

func requireContainerd(t testing.TB) {
	t.Helper()
	if env.skip != "" {
		t.Skip("real containerd tests skipped: " + env.skip)
	}
}

// testEnv is one test's runtime with its private namespace and network.
type testEnv struct {
	t      testing.TB
	rt     *runtime.Containerd
	cfg    runtime.Config
	dir    string
	subnet string // e.g. 10.231.7.0/24
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// newEnv starts a runtime for t with its own containerd namespace, bridge,
// pod CIDR and directories, and registers their removal.
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	requireContainerd(t)
	env.mu.Lock()
	env.netIndex++
	n := env.netIndex
	env.mu.Unlock()
	name := nameRE.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	dir := filepath.Join(env.runDir, fmt.Sprintf("%02d-%s", n, name))
	subnet, bridge := freeSubnet(t, n)
	if err := appendLine(filepath.Join(env.runDir, "bridges"), bridge); err != nil {
		t.Fatal(err)
	}
	// The pid keeps two test runs on one machine (each with its own
	// containerd) out of each other's cgroups, which are named after ns.
	ns := fmt.Sprintf("t%d-%02d-%s", os.Getpid(), n, name)
	if err := appendLine(filepath.Join(env.runDir, "namespaces"), ns); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, dir: dir, subnet: subnet, cfg: runtime.Config{
		Address:   env.socket,
		Namespace: ns,
		StateDir:  filepath.Join(dir, "state"),
		LogDir:    filepath.Join(dir, "logs"),
		RuncRoot:  filepath.Join(env.runDir, "runc"),
		Network:   runtime.NetworkConfig{Name: "orcht" + strconv.Itoa(n), Bridge: bridge, PodCIDR: subnet},
	}}
	t.Cleanup(e.cleanup)
	e.rt = e.connect()
	return e
}

func (e *testEnv) connect() *runtime.Containerd {
	e.t.Helper()
	rt, err := runtime.New(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return rt
}

// restart replaces the runtime by a new one on a new connection, as an
// agent restart does.
func (e *testEnv) restart() {
	e.t.Helper()
	e.rt.Close()
	e.rt = e.connect()
}

func (e *testEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if e.rt == nil {
		e.rt = e.connect()
	}
	var errs []error
	if cs, err := e.rt.ListContainers(ctx); err == nil {
		for _, c := range cs {
			errs = append(errs, e.rt.StopContainer(ctx, c.ID, 0), e.rt.RemoveContainer(ctx, c.ID))
		}
	} else {
		errs = append(errs, err)
	}
	if sbs, err := e.rt.ListSandboxes(ctx); err == nil {
		for _, sb := range sbs {
			errs = append(errs, e.rt.RemoveSandbox(ctx, sb.ID))
		}
	} else {
		errs = append(errs, err)
	}
	errs = append(errs, e.rt.Close())
	if out, err := exec.Command("ip", "link", "del", e.cfg.Network.Bridge).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
		errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", e.cfg.Network.Bridge, err, out))
	}
	errs = append(errs, removeCgroups(e.cfg.Namespace))
	unmountUnder(e.dir)
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		e.t.Errorf("cleanup: %v", err)
	}
}

// appendLine records a name for cleanDir (which a later run uses when this
// one dies without cleaning up).
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// freeSubnet picks a /24 in 10.231.0.0/16 and a bridge name that nothing
// on this machine uses.
func freeSubnet(t testing.TB, n int) (subnet, bridge string) {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for i := 0; i < 250; i++ {
		third := (os.Getpid() + n*7 + i) % 250
		subnet = fmt.Sprintf("10.231.%d.0/24", third)
		_, ipnet, _ := net.ParseCIDR(subnet)
		used := bytes.Contains(out, []byte(fmt.Sprintf("10.231.%d.", third)))
		for _, a := range addrs {
			if in, ok := a.(*net.IPNet); ok && ipnet.Contains(in.IP) {
				used = true
			}
		}
		bridge = fmt.Sprintf("orcht%d", third)
		if _, err := net.InterfaceByName(bridge); err == nil {
			used = true
		}
		if !used {
			return subnet, bridge
		}
	}
	t.Fatal("no free /24 in 10.231.0.0/16")
	return "", ""
}
