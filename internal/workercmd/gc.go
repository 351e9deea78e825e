package workercmd

import "runtime/debug"

// A worker's live heap is small (a few MB with 50 pods: their objects, its
// watches, the runtime client), and whatever the collector lets it grow
// to is overhead on every machine that runs pods. Collecting when the heap
// has grown by a quarter of what was live, rather than Go's default of all
// of it, keeps about 3.5 MiB less resident with 50 pods (GOGC=50: 2.5 MiB,
// GOGC=25: another 1.1 MiB) for no measurable CPU per pod: the worker's
// CPU per pod start stayed 1.4 times containerd's in the same runs
// (BENCHMARKS.md, "Pod start"). Servers do the opposite (internal/orchd,
// gcflags.go): their heap is the cluster's state.
const defaultGCPercent = 25

// gcPercent is the GOGC a worker runs with, or 0 when GOGC in the
// environment (getenv) decides.
func gcPercent(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return 0
	}
	return defaultGCPercent
}

func setGCPercent(getenv func(string) string) {
	if p := gcPercent(getenv); p > 0 {
		debug.SetGCPercent(p)
	}
}
