package chaos

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

var (
	nsRe     = regexp.MustCompile(`^` + nsPrefix + `(\d+)-`)
	linkRe   = regexp.MustCompile(`^` + linkPrefix + `(\d+)([a-z][a-z0-9]*)?$`)
	runDirRe = regexp.MustCompile(`^` + runDirPrefix + `(\d+)$`)
)

// CleanStale removes what crashed runs left behind: the objects of every
// run number whose lock no live process holds.
func CleanStale() {
	seen := map[int]bool{}
	for _, ns := range netnsList() {
		if m := nsRe.FindStringSubmatch(ns); m != nil {
			x, _ := strconv.Atoi(m[1])
			seen[x] = true
		}
	}
	for _, l := range linkList() {
		if m := linkRe.FindStringSubmatch(l); m != nil {
			x, _ := strconv.Atoi(m[1])
			seen[x] = true
		}
	}
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		if m := runDirRe.FindStringSubmatch(e.Name()); m != nil {
			x, _ := strconv.Atoi(m[1])
			seen[x] = true
		}
	}
	for x := range seen {
		if lock, ok := tryLock(x); ok {
			cleanRun(x)
			lock.Close()
		}
	}
}

// cleanRun removes every object of run number x: its processes, mounts,
// namespaces, links and directory. It is idempotent.
func cleanRun(x int) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", runDirPrefix, x))
	prefix := fmt.Sprintf("%s%d-", nsPrefix, x)
	var nss []string
	for _, ns := range netnsList() {
		if strings.HasPrefix(ns, prefix) {
			nss = append(nss, ns)
		}
	}
	// Processes: those in the run's namespaces, and any whose command line
	// names the run's directory.
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				killWait(pid)
			}
		}
	}
	for _, pid := range pidsMentioning(dir + "/") {
		killWait(pid)
	}
	// Mounts under the run's directory, deepest first.
	mounts := mountsUnder(dir)
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	for _, ns := range nss {
		run("ip", "netns", "del", ns)
	}
	for _, l := range linkList() {
		if m := linkRe.FindStringSubmatch(l); m != nil && m[1] == strconv.Itoa(x) {
			run("ip", "link", "del", l)
		}
	}
	os.RemoveAll(dir)
}

func netnsList() []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// linkList names the root namespace's links ("name@peer" trimmed).
func linkList() []string {
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// pidsMentioning lists processes whose command line contains s.
func pidsMentioning(s string) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// killWait sends SIGKILL (and SIGCONT, for a stopped process) and waits a
// little for the process to go.
func killWait(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGCONT)
	for range 100 {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if bytes.Contains(st, []byte(") Z ")) {
			return // a zombie: its parent reaps it
		}
		sleepPoll()
	}
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		m := strings.ReplaceAll(fields[1], `\040`, " ")
		if m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}
