package worker

import (
	"bufio"
	"bytes"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// machine is what the node reports about the computer it runs on.
type machine struct {
	cpus     int64
	memory   int64 // bytes
	info     corev1.NodeSystemInfo
	hostname string
}

func readMachine(version string) machine {
	m := machine{cpus: int64(goruntime.NumCPU()), memory: memTotal()}
	m.hostname, _ = os.Hostname()
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		m.info.KernelVersion = string(bytes.TrimRight(uts.Release[:], "\x00"))
	}
	m.info.MachineID = readTrim("/etc/machine-id")
	m.info.BootID = readTrim("/proc/sys/kernel/random/boot_id")
	m.info.SystemUUID = readTrim("/sys/class/dmi/id/product_uuid")
	m.info.OSImage = osImage()
	m.info.OperatingSystem = goruntime.GOOS
	m.info.Architecture = goruntime.GOARCH
	m.info.ContainerRuntimeVersion = "containerd"
	m.info.KubeletVersion = "orch-" + version
	m.info.KubeProxyVersion = "orch-" + version
	return m
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// memTotal reads MemTotal from /proc/meminfo (bytes; 0 when unreadable).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func osImage() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// capacity is what the node offers: cpu and memory of the machine (or as
// configured), pods and GPUs as configured.
func (w *Worker) capacity() corev1.ResourceList {
	cpu := w.cfg.CPU
	if cpu.IsZero() {
		cpu = *resource.NewQuantity(w.machine.cpus, resource.DecimalSI)
	}
	mem := w.cfg.Memory
	if mem.IsZero() {
		mem = *resource.NewQuantity(w.machine.memory, resource.BinarySI)
	}
	out := corev1.ResourceList{
		corev1.ResourceCPU:    cpu,
		corev1.ResourceMemory: mem,
		corev1.ResourcePods:   *resource.NewQuantity(int64(w.cfg.MaxPods), resource.DecimalSI),
	}
	if w.cfg.GPUs > 0 {
		out[GPUResource] = *resource.NewQuantity(w.cfg.GPUs, resource.DecimalSI)
	}
	return out
}

// GPUResource is the extended resource GPUs are advertised as.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"
