package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs one cluster (three servers, two simulated workers) under
// client load for $DURATION, injecting random named faults one after
// another, each held 2-10 s, with a few seconds of calm between them, and
// checks everything at the end. It prints a report (operations, faults by
// type, violations, lost writes). `make chaos DURATION=30m` runs it;
// ORCH_CHAOS_FAULTS=a,b limits the faults, ORCH_CHAOS_SEED repeats a run.
func TestSoak(t *testing.T) {
	d := os.Getenv("DURATION")
	if d == "" {
		t.Skip("set DURATION (e.g. DURATION=30m make chaos) to run the soak")
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur <= 0 {
		t.Fatalf("DURATION=%q: not a duration such as 30m", d)
	}
	names := Names()
	if only := os.Getenv("ORCH_CHAOS_FAULTS"); only != "" {
		names = strings.Split(only, ",")
	}
	var faults []Fault
	for _, n := range names {
		f, ok := Faults[strings.TrimSpace(n)]
		if !ok {
			t.Fatalf("no fault %q (have %s)", n, strings.Join(Names(), ", "))
		}
		faults = append(faults, f)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ORCH_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ORCH_CHAOS_SEED=%q: not a number", s)
		}
	}
	t.Logf("soak of %s, seed %d (ORCH_CHAOS_SEED), faults %s", dur, seed, strings.Join(names, ", "))
	r := rand.New(rand.NewPCG(seed, seed))

	c := Start(t, OptionsFor(faults...))
	var workers *Workers
	if NeedWorkers(faults...) {
		workers = StartWorkers(c)
	}
	lw := watchLeaders(c)
	// A little think time keeps the rate (and the history) moderate on a
	// shared machine.
	w := StartWorkload(c, WorkloadConfig{Think: 20 * time.Millisecond})
	rep := &Report{Name: "soak", Faults: map[string]int{}}
	start := time.Now()
	if err := w.WaitAcks(30, ProgressTimeout); err != nil {
		t.Fatalf("before any fault: %v", err)
	}
	for time.Since(start) < dur {
		f := faults[r.IntN(len(faults))]
		hold := 2*time.Second + time.Duration(r.Int64N(int64(8*time.Second)))
		rep.Problems = append(rep.Problems, c.InjectHold(w, workers, f, hold)...)
		rep.Faults[f.Name]++
		if err := w.WaitAcks(10, ProgressTimeout); err != nil {
			rep.Problems = append(rep.Problems, "after healing "+f.Name+": "+err.Error())
		}
		// Calm between faults: a duration, not a synchronisation.
		time.Sleep(time.Second + time.Duration(r.Int64N(int64(3*time.Second))))
		if err := w.Quiesce(RecoverTimeout); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
		if n := len(rep.Problems); n > 0 {
			t.Logf("%s: %d problems so far, the last: %s", time.Since(start).Round(time.Second), n, rep.Problems[n-1])
		}
	}
	c.Finish(t, w, lw, workers, rep)
	rep.Duration = time.Since(start)
	// Printed, not only logged, so that `make chaos` shows it as it is.
	fmt.Println(rep.String())
	for _, v := range rep.AllViolations() {
		t.Error(v)
	}
}
