package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is one machine of the cluster: a network namespace with an address
// on the bridge, and the orchd process (server, worker or simulator) that
// runs in it.
type Host struct {
	Name    string
	IP      string
	DataDir string
	LogPath string
	Server  bool
	net     *Net
	bin     string
	args    []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
	// nftReady: the table of drop rules exists in the host's namespace
	// (only the goroutine injecting faults touches it).
	nftReady bool
}

// Start launches the host's process inside its namespace. It runs in a
// process group of its own and dies with the test process (PDEATHSIG).
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return fmt.Errorf("%s is already running", h.Name)
	}
	log, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(h.args, " "))
	// nsenter enters only the network namespace and execs orchd (same
	// PID, so signals reach orchd itself); `ip netns exec` would remount
	// /sys, which a worker needs intact.
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.net.nsName(h.Name), "--", h.bin}, h.args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(done)
	}()
	h.cmd, h.done, h.paused = cmd, done, false
	return nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (h *Host) Kill() { h.signalWait(syscall.SIGKILL, 0) }

// Stop sends SIGTERM (a leader hands leadership over first) and waits, up
// to a minute, then kills.
func (h *Host) Stop() { h.signalWait(syscall.SIGTERM, time.Minute) }

func (h *Host) signalWait(sig syscall.Signal, grace time.Duration) {
	h.mu.Lock()
	cmd, done, paused := h.cmd, h.done, h.paused
	h.cmd, h.paused = nil, false
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	if paused {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	}
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-done
}

// Pause stops the process with SIGSTOP: it keeps its sockets but answers
// nothing, like a machine that hangs.
func (h *Host) Pause() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return fmt.Errorf("%s is not running", h.Name)
	}
	h.paused = true
	return syscall.Kill(-h.cmd.Process.Pid, syscall.SIGSTOP)
}

// Resume continues a paused process.
func (h *Host) Resume() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil || !h.paused {
		return nil
	}
	h.paused = false
	return syscall.Kill(-h.cmd.Process.Pid, syscall.SIGCONT)
}

// Running reports whether the process was started and not stopped by the
// harness (it may have exited on its own: see Exited).
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd != nil
}

// Exited reports whether the process ended on its own.
func (h *Host) Exited() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// URL is the host's API base URL (servers).
func (h *Host) URL() string { return "https://" + h.IP + ":7400" }

// Partition drops every packet between this host and the given addresses,
// both ways, with nftables rules in the host's own namespace.
func (h *Host) Partition(ips ...string) error { return h.drop(true, true, ips) }

// DropFrom drops packets arriving from the given addresses only: this
// host can still send to them (an asymmetric partition).
func (h *Host) DropFrom(ips ...string) error { return h.drop(true, false, ips) }

func (h *Host) drop(in, out bool, ips []string) error {
	var b strings.Builder
	if !h.nftReady {
		fmt.Fprintf(&b, "table inet %s {\n chain in { type filter hook input priority -10; policy accept; }\n chain out { type filter hook output priority -10; policy accept; }\n}\n", nftTable)
	}
	for _, ip := range ips {
		if in {
			fmt.Fprintf(&b, "add rule inet %s in ip saddr %s drop\n", nftTable, ip)
		}
		if out {
			fmt.Fprintf(&b, "add rule inet %s out ip daddr %s drop\n", nftTable, ip)
		}
	}
	if err := h.net.inNS(h.Name, b.String(), "nft", "-f", "-"); err != nil {
		return err
	}
	h.nftReady = true
	return nil
}

// Heal removes every drop rule of this host.
func (h *Host) Heal() error {
	if !h.nftReady {
		return nil
	}
	return h.net.inNS(h.Name, "", "nft", "flush", "table", "inet", nftTable)
}

// LinkDown takes the host's veth on the bridge down: the host is cut off
// from everything, the clients included.
func (h *Host) LinkDown() error { return run("ip", "link", "set", h.net.veth(h.Name), "down") }

// LinkUp brings the host's veth back.
func (h *Host) LinkUp() error { return run("ip", "link", "set", h.net.veth(h.Name), "up") }

// sleepPoll is the interval of every polling loop (never a synchronisation:
// each loop polls for a condition and has its own deadline).
func sleepPoll() { time.Sleep(20 * time.Millisecond) }
