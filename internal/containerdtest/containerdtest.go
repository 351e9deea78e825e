// Package containerdtest gives integration tests above the runtime (the
// kubelet, the worker agent) a real containerd: one private daemon per test
// binary (root, state, socket and runc root under one run directory, CRI
// disabled), orch's test images built into OCI archives, and per test a
// runtime configuration with its own containerd namespace, bridge, /24 and
// directories, all removed when the test ends, failed or not. A run that
// died without cleaning up is cleaned up by the next one. It follows the
// setup of node/runtime's own tests (env_test.go).
//
// Only tests may import it.
package containerdtest

import (
	"bytes"
	"context"
	"errors"
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

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
)

const runDirPrefix = "orch-ctrdtest-"

// Env is one test binary's containerd.
type Env struct {
	// Skip, when set, says why tests needing containerd must skip.
	Skip     string
	runDir   string
	socket   string
	archives map[string][]byte
	proc     *exec.Cmd

	mu sync.Mutex
	n  int
}

// Setup starts containerd for a test binary; call it from TestMain and
// Teardown after m.Run. moduleRoot is the orch module's directory (for the
// test images). Without root, Setup returns an Env whose Skip says so.
func Setup(moduleRoot string) (*Env, error) {
	e := &Env{}
	if os.Geteuid() != 0 {
		e.Skip = "not root: containerd, network namespaces and CNI need root"
		return e, nil
	}
	for _, bin := range []string{"containerd", "runc", "ip", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			return e, fmt.Errorf("%s is missing: run scripts/deps.sh runtime", bin)
		}
	}
	cleanStaleRuns()
	dir, err := os.MkdirTemp("", runDirPrefix)
	if err != nil {
		return e, err
	}
	e.runDir = dir
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return e, err
	}
	imgs, err := imagebuild.BuildTestImages(context.Background(), moduleRoot, filepath.Join(dir, "images"), "/bin/busybox")
	if err != nil {
		return e, err
	}
	e.archives = map[string][]byte{}
	for i, img := range imgs {
		img.Uncompressed = true // gzip takes seconds under -race
		var buf bytes.Buffer
		if err := imagebuild.WriteArchive(&buf, img); err != nil {
			return e, err
		}
		e.archives[imagebuild.TestImages[i]] = buf.Bytes()
	}
	return e, e.start()
}

func (e *Env) start() error {
	e.socket = filepath.Join(e.runDir, "containerd.sock")
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
`, filepath.Join(e.runDir, "root"), filepath.Join(e.runDir, "state"), e.socket, filepath.Join(e.runDir, "opt"))
	cfgPath := filepath.Join(e.runDir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.runDir, "containerd.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.proc = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", e.socket); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited at start; see %s", logf.Name())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not listen on %s", e.socket)
		}
	}
}

// Teardown stops containerd and removes everything the run made.
func (e *Env) Teardown() {
	if e.runDir == "" {
		return
	}
	if e.proc != nil {
		killAllTasks(e.socket)
		e.proc.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { e.proc.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			e.proc.Process.Kill()
		}
	}
	cleanDir(e.runDir)
}

// Archive is the OCI archive of a test image (web, crasher, slowstart,
// sigterm), imported as imagebuild.TestImageRef(name).
func (e *Env) Archive(name string) []byte { return e.archives[name] }

// Require skips t when there is no containerd.
func (e *Env) Require(t testing.TB) {
	t.Helper()
	if e.Skip != "" {
		t.Skip("real containerd tests skipped: " + e.Skip)
	}
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// Runtime returns a runtime configuration private to t (containerd
// namespace, bridge, pod CIDR, state and log directories) and registers
// the removal of everything made with it when t ends.
func (e *Env) Runtime(t testing.TB) runtime.Config {
	t.Helper()
	e.Require(t)
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	name := nameRE.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 30 {
		name = name[:30]
	}
	dir := filepath.Join(e.runDir, fmt.Sprintf("%02d-%s", n, name))
	subnet, bridge := freeSubnet(t, n)
	ns := fmt.Sprintf("k%02d-%s", n, name)
	for file, line := range map[string]string{"bridges": bridge, "namespaces": ns} {
		if err := appendLine(filepath.Join(e.runDir, file), line); err != nil {
			t.Fatal(err)
		}
	}
	cfg := runtime.Config{
		Address: e.socket, Namespace: ns,
		StateDir: filepath.Join(dir, "state"), LogDir: filepath.Join(dir, "logs"), RuncRoot: filepath.Join(e.runDir, "runc"),
		Network: runtime.NetworkConfig{Name: "orchk" + strconv.Itoa(n), Bridge: bridge, PodCIDR: subnet},
	}
	t.Cleanup(func() {
		if err := clean(cfg, dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return cfg
}

// clean removes every container and sandbox of cfg's namespace, its
// bridge, cgroups, mounts and directory.
func clean(cfg runtime.Config, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	rt, err := runtime.New(ctx, cfg)
	if err != nil {
		errs = append(errs, err)
	} else {
		if cs, err := rt.ListContainers(ctx); err == nil {
			for _, c := range cs {
				errs = append(errs, rt.StopContainer(ctx, c.ID, 0), rt.RemoveContainer(ctx, c.ID))
			}
		} else {
			errs = append(errs, err)
		}
		if sbs, err := rt.ListSandboxes(ctx); err == nil {
			for _, sb := range sbs {
				errs = append(errs, rt.RemoveSandbox(ctx, sb.ID))
			}
		} else {
			errs = append(errs, err)
		}
		errs = append(errs, rt.Close())
	}
	if out, err := exec.Command("ip", "link", "del", cfg.Network.Bridge).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
		errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", cfg.Network.Bridge, err, out))
	}
	removeCgroups(cfg.Namespace)
	UnmountUnder(dir)
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
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
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, _ := cl.Containers(nctx)
		for _, c := range ctrs {
			if t, err := c.Task(nctx, nil); err == nil {
				t.Delete(nctx, containerd.WithProcessKill)
			}
		}
	}
}

// cleanDir kills the processes whose command line names dir (containerd,
// shims), deletes the bridges and cgroups recorded, unmounts what is
// mounted under dir and removes it.
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
	UnmountUnder(dir)
	os.RemoveAll(dir)
}

// removeCgroups removes the parent cgroup runc made for a containerd
// namespace; it fails, harmlessly, where a container cgroup is left.
func removeCgroups(ns string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	dirs2, _ := filepath.Glob("/sys/fs/cgroup/" + ns)
	for _, d := range append(dirs, dirs2...) {
		syscall.Rmdir(d)
	}
}

// UnmountUnder unmounts everything mounted under dir, deepest first.
func UnmountUnder(dir string) {
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
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// cleanStaleRuns cleans run directories whose test process is gone.
func cleanStaleRuns() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if pid, perr := strconv.Atoi(string(b)); err == nil && perr == nil && syscall.Kill(pid, 0) == nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "containerdtest: cleaning up after a dead run in %s\n", d)
		killAllTasks(filepath.Join(d, "containerd.sock"))
		cleanDir(d)
	}
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

// freeSubnet picks a /24 in 10.232.0.0/16 and a bridge name nothing on
// the machine uses (node/runtime's tests use 10.231.0.0/16).
func freeSubnet(t testing.TB, n int) (subnet, bridge string) {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for i := 0; i < 250; i++ {
		third := (os.Getpid() + n*7 + i) % 250
		subnet = fmt.Sprintf("10.232.%d.0/24", third)
		_, ipnet, _ := net.ParseCIDR(subnet)
		used := bytes.Contains(out, []byte(fmt.Sprintf("10.232.%d.", third)))
		for _, a := range addrs {
			if in, ok := a.(*net.IPNet); ok && ipnet.Contains(in.IP) {
				used = true
			}
		}
		bridge = fmt.Sprintf("orchk%d", third)
		if _, err := net.InterfaceByName(bridge); err == nil {
			used = true
		}
		if !used {
			return subnet, bridge
		}
	}
	t.Fatal("no free /24 in 10.232.0.0/16")
	return "", ""
}
