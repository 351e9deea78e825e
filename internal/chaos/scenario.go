package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Scenario is one fault injected into a fresh cluster under client load.
type Scenario struct {
	Fault Fault
	// Hold is how long the fault lasts at least (default 6 s). A fault
	// that leaves a majority up lasts until a write is acknowledged
	// through that majority too, up to ProgressTimeout.
	Hold     time.Duration
	Workload WorkloadConfig
}

// Timeouts of the liveness checks: generous, because the machine is
// shared; a cluster that needs longer is broken, not slow.
const (
	ProgressTimeout = 45 * time.Second // a write acknowledged during an available fault, or after healing
	RecoverTimeout  = 90 * time.Second // a healthy cluster after healing
	CheckTimeout    = 10 * time.Minute // porcupine's search
)

// OptionsFor returns the cluster options the faults need.
func OptionsFor(faults ...Fault) Options {
	var opts Options
	for _, f := range faults {
		if f.NeedsSmallDisk && opts.SmallDisk == nil {
			opts.SmallDisk = map[string]int64{"s1": SmallDiskSize, "s2": SmallDiskSize, "s3": SmallDiskSize}
			opts.Args = append(opts.Args, "--min-free-disk", MinFreeDisk)
		}
	}
	return opts
}

// NeedWorkers reports whether any of the faults needs simulated workers.
func NeedWorkers(faults ...Fault) bool {
	for _, f := range faults {
		if f.NeedsWorkers {
			return true
		}
	}
	return false
}

// Run runs the scenario and fails t if any checked property broke.
func Run(t *testing.T, sc Scenario) *Report {
	t.Helper()
	if sc.Hold == 0 {
		sc.Hold = 6 * time.Second
	}
	c := Start(t, OptionsFor(sc.Fault))
	var workers *Workers
	if sc.Fault.NeedsWorkers {
		workers = StartWorkers(c)
	}
	lw := watchLeaders(c)
	w := StartWorkload(c, sc.Workload)
	rep := &Report{Name: sc.Fault.Name, Faults: map[string]int{}}
	start := time.Now()
	if err := w.WaitAcks(30, ProgressTimeout); err != nil {
		t.Fatalf("before any fault: %v", err)
	}
	rep.Problems = append(rep.Problems, c.InjectHold(w, workers, sc.Fault, sc.Hold)...)
	rep.Faults[sc.Fault.Name]++
	if err := w.WaitAcks(30, ProgressTimeout); err != nil {
		rep.Problems = append(rep.Problems, "after healing "+sc.Fault.Name+": "+err.Error())
	}
	c.Finish(t, w, lw, workers, rep)
	rep.Duration = time.Since(start)
	t.Log("\n" + rep.String())
	for _, v := range rep.AllViolations() {
		t.Error(v)
	}
	return rep
}

// InjectHold injects f, holds it for at least hold (and, if the fault
// leaves a majority up, until a write invoked after the injection is
// acknowledged), heals it, and waits until the cluster is healthy and the
// workers (if any) are back. It returns the properties that broke.
func (c *Cluster) InjectHold(w *Workload, workers *Workers, f Fault, hold time.Duration) []string {
	c.t.Helper()
	var problems []string
	termBefore := c.maxTerm()
	heal, err := f.Inject(c)
	if err != nil {
		c.t.Fatalf("injecting %s: %v", f.Name, err)
	}
	injected := w.Rec.Now()
	if f.NeedsWorkers && workers != nil {
		workers.MarkCut()
	}
	c.t.Logf("%7.3fs fault %s injected", injected.Seconds(), f.Name)
	time.Sleep(hold) // the fault's duration
	if f.Available {
		err := poll(context.Background(), ProgressTimeout, func() bool { return w.AckedAfter(injected) })
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: no write invoked after the injection was acknowledged within %s, though a majority of servers was up",
				f.Name, hold+ProgressTimeout))
		}
	}
	if f.NeedsWorkers && workers != nil {
		problems = append(problems, workers.DuringPartition(f.Name)...)
	}
	if err := heal(); err != nil {
		c.t.Fatalf("healing %s: %v", f.Name, err)
	}
	c.t.Logf("%7.3fs fault %s healed", w.Rec.Now().Seconds(), f.Name)
	if err := poll(context.Background(), RecoverTimeout, c.Healthy); err != nil {
		problems = append(problems, fmt.Sprintf("%s: the cluster was not healthy %s after healing", f.Name, RecoverTimeout))
		c.t.Fatal(problems)
	}
	c.t.Logf("%7.3fs cluster healthy", w.Rec.Now().Seconds())
	if f.Elects && c.maxTerm() <= termBefore {
		problems = append(problems, fmt.Sprintf("%s: no new Raft term began (still %d): the fault had no effect", f.Name, termBefore))
	}
	if workers != nil {
		problems = append(problems, workers.Healed(f.Name)...)
	}
	return problems
}

// Finish stops the clients and the leader sampling, and checks the
// history, the leaders, the state machines' convergence and that no
// process died on its own, into rep.
func (c *Cluster) Finish(t *testing.T, w *Workload, lw *leaderWatch, workers *Workers, rep *Report) {
	t.Helper()
	hist, err := w.Stop()
	sampled := lw.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%7.3fs clients stopped, change stream caught up", w.Rec.Now().Seconds())
	fromLogs, err := LeadersFromLogs(c.Servers)
	if err != nil {
		t.Fatal(err)
	}
	rep.Terms = len(fromLogs)
	rep.Leaders = CheckLeaders(sampled, fromLogs)
	rep.Check = Check(hist, CheckTimeout)
	rep.WatchResumes = hist.WatchResumes
	rep.BatchedWrites = w.BatchedWrites()
	t.Logf("%7.3fs history checked", w.Rec.Now().Seconds())
	rep.Convergence = c.CheckConvergence(30 * time.Second)
	t.Logf("%7.3fs convergence checked", w.Rec.Now().Seconds())
	for _, h := range append(append([]*Host{}, c.Servers...), c.Others...) {
		if h.Exited() {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s exited on its own (see its log)", h.Name))
		}
	}
}

// maxTerm is the highest term any server reports.
func (c *Cluster) maxTerm() uint64 {
	var t uint64
	for _, st := range c.Statuses() {
		t = max(t, st.Term)
	}
	return t
}
