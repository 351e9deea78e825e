package workercmd

import "runtime/debug"

// A worker's live heap is small (a few MB with 50 pods: their objects, its
// watches, the runtime client), and whatever the collector lets it grow
// to is overhead on every machine that runs pods. Collecting when the heap
// has grown by half of what was live, rather than Go's default of all of
// it, kept 2.5 MiB less resident with 50 pods for no measurable CPU per pod
// (BENCHMARKS.md, "Pod start"). Servers do the opposite (internal/orchd,
// gcflags.go): their heap is the cluster's state.
const defaultGCPercent = 50

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
