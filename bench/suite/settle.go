package suite

import (
	"syscall"
	"time"
)

// Settled is how long the machine took to come back to rest before a
// write measurement: the dirty pages that earlier measurements left behind
// written out, and every cluster's servers back at their idle CPU.
type Settled struct {
	Seconds     float64 `json:"seconds"`      // the whole wait
	SyncSeconds float64 `json:"sync_seconds"` // of which sync(2)
	// ExtraCores is the servers' CPU above their idle figure in the first
	// sample: what the previous measurement left running (0 when nothing).
	ExtraCores float64 `json:"extra_cores"`
	TimedOut   bool    `json:"timed_out,omitempty"`
}

// Settling parameters: the servers count as at rest when, over two
// consecutive sample windows, they use no more than their idle CPU plus
// settleMargin.
const (
	settleWindow = 500 * time.Millisecond
	settleMargin = 0.05 // cores
	settleLimit  = 60 * time.Second
)

// settle waits until the work that earlier measurements caused has ended,
// so that no system is measured beside another's leftovers: a Raft
// snapshot, a garbage collection of a large heap, the kernel writing back
// pages of files that are not fsynced (orch's audit log, etcd's snapshot
// files). It calls sync(2), then samples the CPU of every server of every
// cluster until they are back at idleCores (their sum measured with
// the fresh clusters at rest) for two windows in a row, or settleLimit
// passes.
func settle(pids []int, idleCores float64) Settled {
	start := time.Now()
	syscall.Sync()
	out := Settled{SyncSeconds: time.Since(start).Seconds(), ExtraCores: -1}
	calm := 0
	for calm < 2 {
		if time.Since(start) > settleLimit {
			out.TimedOut = true
			break
		}
		c0 := cpuSeconds(pids)
		time.Sleep(settleWindow) // a CPU sampling window, not synchronisation
		extra := max(0, (cpuSeconds(pids)-c0)/settleWindow.Seconds()-idleCores)
		if out.ExtraCores < 0 {
			out.ExtraCores = extra
		}
		if extra <= settleMargin {
			calm++
		} else {
			calm = 0
		}
	}
	out.Seconds = time.Since(start).Seconds()
	return out
}
