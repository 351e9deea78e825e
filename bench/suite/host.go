package suite

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host describes the machine a result came from.
type Host struct {
	Cores     int     `json:"cores"`
	MemGiB    float64 `json:"mem_gib"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"go_version"`
	Etcd      string  `json:"etcd_version"`
	// An append of 4 KiB followed by fdatasync in the benchmark's
	// directory, as a Raft or etcd WAL commit does: the floor under every
	// write's latency.
	FsyncP50Ms float64 `json:"fsync_p50_ms"`
	FsyncP99Ms float64 `json:"fsync_p99_ms"`
}

// DescribeHost measures and describes the machine.
func DescribeHost(env *Env) Host {
	h := Host{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Etcd: EtcdVersion()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				h.MemGiB = kb / (1 << 20)
			}
		}
		f.Close()
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		b := make([]byte, 0, len(u.Release))
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		h.Kernel = string(b)
	}
	h.FsyncP50Ms, h.FsyncP99Ms = fsyncLatency(env.TempDir())
	return h
}

func fsyncLatency(dir string) (p50, p99 float64) {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		return 0, 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	var lat Latencies
	for range 200 {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return 0, 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0
		}
		lat = append(lat, time.Since(t))
	}
	return Ms(lat.Percentile(50)), Ms(lat.Percentile(99))
}
