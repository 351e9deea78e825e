package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// cgroupDirs returns the cgroup directory of each controller of a process
// as the host sees it (cgroup v1: per controller; v2: key "").
func cgroupDirs(t *testing.T, pid uint32) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(f[1], ",") {
			switch {
			case ctrl == "" && f[0] == "0":
				dirs[""] = filepath.Join(unifiedRoot(), f[2])
			case ctrl != "":
				dirs[ctrl] = filepath.Join("/sys/fs/cgroup", ctrl, f[2])
			}
		}
	}
	return dirs
}

// cgroupV1 reports whether the memory and cpu controllers are on cgroup v1
// hierarchies (Debian 12 with a hybrid setup) rather than on cgroup v2.
func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	return err == nil
}

func unifiedRoot() string {
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && cgroupV1() {
		return "/sys/fs/cgroup/unified"
	}
	return "/sys/fs/cgroup"
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Resources become the container's cgroup limits: cpu shares from the
// request, a CFS quota from the cpu limit, and a memory limit (with no
// swap on top), seen in the host's cgroup files and inside the container.
func TestCgroupLimits(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	sb := e.sandbox("limits")
	const mem = 64 << 20
	id := e.run(sb, runtime.ContainerConfig{Name: "web", Image: img("web"),
		Resources: runtime.Resources{CPURequestMilli: 250, CPULimitMilli: 500, MemoryLimitBytes: mem}})
	free := e.run(sb, runtime.ContainerConfig{Name: "free", Image: img("web"), Env: []string{"PORT=8081"}})
	e.waitLog(id, "listening", 10*time.Second)
	e.waitLog(free, "listening", 10*time.Second)
	dirs := cgroupDirs(t, e.status(id).PID)
	freeDirs := cgroupDirs(t, e.status(free).PID)

	type check struct{ ctrl, file, want, unlimited string }
	var checks []check
	inside := func(c check) string { return filepath.Join("/sys/fs/cgroup", c.ctrl, c.file) }
	if cgroupV1() {
		checks = []check{
			{"cpu", "cpu.shares", "256", "1024"},
			{"cpu", "cpu.cfs_quota_us", "50000", "-1"},
			{"cpu", "cpu.cfs_period_us", "100000", "100000"},
			{"memory", "memory.limit_in_bytes", fmt.Sprint(mem), ""},
		}
		if _, err := os.Stat(filepath.Join(dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
			checks = append(checks, check{"memory", "memory.memsw.limit_in_bytes", fmt.Sprint(mem), ""})
		}
	} else {
		checks = []check{
			{"", "cpu.weight", "10", "100"},
			{"", "cpu.max", "50000 100000", "max 100000"},
			{"", "memory.max", fmt.Sprint(mem), "max"},
			{"", "memory.swap.max", "0", "max"},
		}
	}
	for _, c := range checks {
		if dirs[c.ctrl] == "" || freeDirs[c.ctrl] == "" {
			t.Fatalf("no %q cgroup in %v / %v", c.ctrl, dirs, freeDirs)
		}
		host := filepath.Join(dirs[c.ctrl], c.file)
		if got := readTrim(t, host); got != c.want {
			t.Errorf("host %s = %s, want %s", host, got, c.want)
		}
		if _, got, _ := e.exec(id, "cat", inside(c)); strings.TrimSpace(got) != c.want {
			t.Errorf("in the container %s = %q, want %s", inside(c), got, c.want)
		}
		// The same file of the container without limits: the checks above
		// are about this container, not the machine's defaults.
		freePath := filepath.Join(freeDirs[c.ctrl], c.file)
		if got := readTrim(t, freePath); (got == c.want && c.unlimited != c.want) || (c.unlimited != "" && got != c.unlimited) {
			t.Errorf("unlimited container: %s = %s", freePath, got)
		}
	}
}

// A process that exceeds its memory limit is killed by the kernel; the
// runtime reports exit code 137 with reason OOMKilled and an OOM event.
func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	e.importImages("crasher")
	sb := e.sandbox("oom")
	ev := e.events()
	id := e.run(sb, runtime.ContainerConfig{Name: "hog", Image: img("crasher"), Args: []string{"-alloc-mb", "256", "-code", "0"},
		Resources: runtime.Resources{MemoryLimitBytes: 32 << 20}})
	st := e.waitExit(ev, id, 30*time.Second)
	if st.ExitCode != runtime.ExitCodeStopped || st.Reason != runtime.ReasonOOMKilled {
		t.Fatalf("status %+v, log %q", st, e.logs(id, runtime.LogOptions{}))
	}
	ev.wait(runtime.EventOOM, id, 5*time.Second)
	if strings.Contains(e.logs(id, runtime.LogOptions{}), "holding") {
		t.Fatal("the process got all its memory")
	}

	// The same program within its limit completes.
	ok := e.run(sb, runtime.ContainerConfig{Name: "fits", Image: img("crasher"), Args: []string{"-alloc-mb", "8", "-code", "0"},
		Resources: runtime.Resources{MemoryLimitBytes: 64 << 20}})
	if st := e.waitExit(ev, ok, 30*time.Second); st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted {
		t.Fatalf("within its limit: %+v", st)
	}
}
