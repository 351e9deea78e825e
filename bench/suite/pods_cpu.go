package suite

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPU classes of a pod start, in the order they are reported. A process's
// own time and the time of the children it waited for are told apart, so
// short-lived programs are counted without catching them alive: the CNI
// plugins are the worker's children, `containerd-shim-runc-v2 start` is
// containerd's, runc is each shim's.
var podCPUClasses = []string{"worker", "CNI plugins", "containerd", "shim start", "shims", "runc", "containers", "servers"}

// procTimes is one process's CPU time from /proc/PID/stat, in seconds.
type procTimes struct {
	ppid        int
	self, child float64 // utime+stime; cutime+cstime (waited-for children)
	comm        string
}

func readProcTimes(pid int) (procTimes, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procTimes{}, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return procTimes{}, false
	}
	num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
	ppid, _ := strconv.Atoi(f[1])
	return procTimes{ppid: ppid, comm: s[open+1 : end],
		self: (num(11) + num(12)) / clockTick, child: (num(13) + num(14)) / clockTick}, true
}

// podCPUSnapshot is the CPU time of everything a pod start runs, by PID
// and class.
type podCPUSnapshot map[int]podCPUEntry

type podCPUEntry struct {
	self, child       float64
	selfCls, childCls string
}

// takePodCPU reads the worker, the servers, containerd (whose socket is
// sock), its shims (found by that socket on their command line), what the
// shims run (the containers) and the children each of them waited for.
func takePodCPU(worker, containerd int, servers []int, sock string) podCPUSnapshot {
	snap := podCPUSnapshot{}
	add := func(pid int, selfCls, childCls string) {
		if t, ok := readProcTimes(pid); ok {
			snap[pid] = podCPUEntry{self: t.self, child: t.child, selfCls: selfCls, childCls: childCls}
		}
	}
	add(worker, "worker", "CNI plugins")
	add(containerd, "containerd", "shim start")
	for _, p := range servers {
		add(p, "servers", "servers")
	}
	dirs, _ := os.ReadDir("/proc")
	shims := map[int]bool{}
	parent := map[int]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		t, ok := readProcTimes(pid)
		if !ok {
			continue
		}
		parent[pid] = t.ppid
		if !strings.HasPrefix(t.comm, "containerd-shim") {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmd, []byte("-address\x00"+sock+"\x00")) {
			shims[pid] = true
			add(pid, "shims", "runc")
		}
	}
	for pid, pp := range parent {
		if shims[pp] {
			add(pid, "containers", "containers")
		}
	}
	return snap
}

// podCPUDelta is the CPU seconds each class used between two snapshots.
// Processes that ended in between count with what they had at the first
// (their children's times reach a parent only when it waits for them).
func podCPUDelta(before, after podCPUSnapshot) map[string]float64 {
	out := map[string]float64{}
	for pid, a := range after {
		b := before[pid]
		out[a.selfCls] += max(0, a.self-b.self)
		out[a.childCls] += max(0, a.child-b.child)
	}
	return out
}

// formatPodCPU renders CPU milliseconds per pod by class, and the total.
func formatPodCPU(perPod map[string]float64) string {
	var parts []string
	var total float64
	for _, c := range podCPUClasses {
		total += perPod[c]
		parts = append(parts, fmt.Sprintf("%s %.0f", c, perPod[c]))
	}
	return fmt.Sprintf("%s; total %.0f", strings.Join(parts, ", "), total)
}
