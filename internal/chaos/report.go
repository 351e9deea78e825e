package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Report is what a scenario or a soak did and found.
type Report struct {
	Name     string
	Duration time.Duration
	// Faults counts the faults injected, by name.
	Faults map[string]int
	// Terms is how many Raft terms had a leader (from the servers' logs).
	Terms int
	// WatchResumes counts how often the change stream had to resume on
	// another connection.
	WatchResumes int
	// BatchedWrites counts the updates that reached the servers in
	// batches (POST /v1/batch) rather than alone.
	BatchedWrites uint64
	Check         Result
	// Leaders lists terms with more than one leader.
	Leaders []string
	// Convergence lists how the servers' state machines differ.
	Convergence []string
	// Problems are liveness failures and processes that died.
	Problems []string
}

// AllViolations lists every broken property.
func (r *Report) AllViolations() []string {
	var out []string
	out = append(out, r.Check.Violations...)
	out = append(out, r.Leaders...)
	out = append(out, r.Convergence...)
	out = append(out, r.Problems...)
	return out
}

func (r *Report) String() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	c := r.Check
	p("chaos report: %s, %s", r.Name, r.Duration.Round(time.Second))
	var faults []string
	total := 0
	for _, name := range sortedKeys(r.Faults) {
		faults = append(faults, fmt.Sprintf("%s %d", name, r.Faults[name]))
		total += r.Faults[name]
	}
	p("  faults injected: %d (%s)", total, strings.Join(faults, ", "))
	p("  operations: %d (%d linearizable reads, %d writes: %d acknowledged, %d conflicts, %d unknown, %d refused otherwise)",
		c.Ops, c.Reads, c.Writes, c.Acked, c.Conflicts, c.Unknown, c.Failed)
	p("  unknown outcomes resolved from the final history: %d applied, %d never applied", c.ResolvedApplied, c.ResolvedNotApplied)
	p("  Raft terms with a leader: %d; change stream resumed %d times; %d updates sent in batches", r.Terms, r.WatchResumes, r.BatchedWrites)
	p("  linearizability (porcupine): %s", c.Linearizable)
	p("  lost acknowledged writes: %d", len(c.LostWrites))
	p("  terms with two leaders: %d", len(r.Leaders))
	p("  state machines converged: %t", len(r.Convergence) == 0)
	v := r.AllViolations()
	p("  violations: %d", len(v))
	for _, s := range v {
		p("    - %s", s)
	}
	if c.Visualization != "" {
		p("  porcupine visualization: %s", c.Visualization)
	}
	return b.String()
}
