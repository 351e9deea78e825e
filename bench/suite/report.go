package suite

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Results is everything one invocation measured (written raw as JSON).
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Args     []string  `json:"args"`
	Host     Host      `json:"host"`
	Runs     int       `json:"runs"`
	Suites   []string  `json:"suites"`
	LoadAvgs []float64 `json:"loadavg_samples"`
	// CPU that other work on the machine used while this ran, in cores:
	// the mean, and the highest 10-second mean.
	OtherCores     float64          `json:"other_cores_mean"`
	OtherCoresPeak float64          `json:"other_cores_peak_10s"`
	Write          []WriteResult    `json:"write,omitempty"`
	Idle           []IdleCPU        `json:"idle_cpu,omitempty"`
	SecurityCost   []SecurityCost   `json:"write_security_cost,omitempty"`
	Data           *DataResults     `json:"data,omitempty"`
	InProcInfo     *InProcBuild     `json:"inproc_build,omitempty"`
	InProc         []InProcResult   `json:"inproc_snapshot,omitempty"`
	Sched          *SchedResults    `json:"sched,omitempty"`
	Pods           []PodsResult     `json:"pods,omitempty"`
	Failover       *FailoverResults `json:"failover,omitempty"`
	Proxy          []ProxyResult    `json:"proxy,omitempty"`
}

// Goals from the issue the suite was written for.
const (
	goalListP99Ms  = 100
	goalWatchP99Ms = 50
	goalSnapSecs   = 2
)

func spreadBy[T any](rs []T, keep func(T) bool, val func(T) float64) Spread {
	var v []float64
	for _, r := range rs {
		if keep(r) {
			v = append(v, val(r))
		}
	}
	return SpreadOf(v)
}

func all[T any](T) bool { return true }

// verdictLE says whether a median met a goal where lower is better.
func verdictLE(median, goal float64) string {
	m, g := num(median), num(goal)
	switch {
	case median <= goal:
		return fmt.Sprintf("**met** (%s ≤ %s)", m, g)
	case median >= 2*goal:
		return fmt.Sprintf("**missed**: %s is %.1f× the goal of %s", m, median/goal, g)
	default:
		return fmt.Sprintf("**missed** by %.0f%% (%s > %s)", (median/goal-1)*100, m, g)
	}
}

func num(v float64) string { return fmt.Sprintf("%.*f", digits(v), v) }

// Markdown renders the summary: median (min–max) over runs for every figure.
func (r *Results) Markdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	h := r.Host
	p("# orch benchmark results")
	p("")
	p("- date: %s (%s of measuring)", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))
	p("- command: `orch-bench %s`", strings.Join(r.Args, " "))
	p("- machine: %d cores, %.0f GiB, Linux %s, %s; etcd %s", h.Cores, h.MemGiB, h.Kernel, h.GoVersion, h.Etcd)
	p("- disk: 4 KiB append + fdatasync p50 %.2f ms, p99 %.2f ms", h.FsyncP50Ms, h.FsyncP99Ms)
	p("- other work on the machine (CPU not used by the benchmark or its servers): %.2f cores on average, %.2f at the busiest 10 s",
		r.OtherCores, r.OtherCoresPeak)
	if len(r.LoadAvgs) > 0 {
		p("- 1-minute load average while measuring: %.1f–%.1f (the benchmark's own servers and clients count in it)",
			slices.Min(r.LoadAvgs), slices.Max(r.LoadAvgs))
	}
	p("- every figure: median over %d runs, with (min–max) across runs; a run's percentile is computed from all of that run's samples", r.Runs)
	if len(r.Write) > 0 {
		r.writeTable(p)
	}
	if d := r.Data; d != nil {
		if len(d.List) > 0 {
			r.listTable(p)
		}
		if len(d.Watch) > 0 {
			r.watchTable(p)
		}
		if len(d.RSS) > 0 {
			r.rssTable(p)
		}
	}
	if len(r.InProc) > 0 || (r.Data != nil && len(r.Data.Snapshot) > 0) {
		r.snapshotTable(p)
	}
	if r.Sched != nil {
		r.schedTable(p)
	}
	if len(r.Pods) > 0 {
		r.podsTable(p)
	}
	if r.Failover != nil {
		r.failoverTable(p)
	}
	if len(r.Proxy) > 0 {
		r.proxyTable(p)
	}
	if d := r.Data; d != nil && len(d.Loads) > 0 {
		p("")
		p("### Bulk loads (orch, %d concurrent writers, one client)", d.Loads[0].Writers)
		p("")
		p("| objects | seconds | creates/s |")
		p("|---:|---:|---:|")
		for _, n := range []int{ListObjects, BulkObjects - ListObjects} {
			keep := func(l LoadRecord) bool { return l.Objects == n }
			if s := spreadBy(d.Loads, keep, func(l LoadRecord) float64 { return l.Seconds }); s.N > 0 {
				p("| %d | %s | %s |", n, s.Auto(), spreadBy(d.Loads, keep, func(l LoadRecord) float64 { return l.PerSec }).Format(0))
			}
		}
	}
}

func (r *Results) writeTable(p func(string, ...any)) {
	p("")
	p("## Writes: 1 KB ConfigMap creates (orch, security on and --insecure) and 1 KB puts (etcd), same run")
	p("")
	p("| clients | system | writes/s | p50 ms | p99 ms | server CPU (cores) | server CPU ms per write | client CPU (cores) | errors | leader elections (orch) |")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var clients []int
	for _, w := range r.Write {
		if !slices.Contains(clients, w.Clients) {
			clients = append(clients, w.Clients)
		}
	}
	for _, n := range clients {
		for _, sys := range []string{SysOrch, SysOrchUnbatched, SysOrchInsecure, SysEtcd} {
			keep := func(w WriteResult) bool { return w.Clients == n && w.System == sys }
			if !slices.ContainsFunc(r.Write, keep) {
				continue
			}
			errs, elections := 0, 0
			for _, w := range r.Write {
				if keep(w) {
					errs += w.Errors
					elections += w.Elections
				}
			}
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %d | %d |", n, sys,
				spreadBy(r.Write, keep, func(w WriteResult) float64 { return w.PerSec }).Format(0),
				spreadBy(r.Write, keep, func(w WriteResult) float64 { return w.P50Ms }).Auto(),
				spreadBy(r.Write, keep, func(w WriteResult) float64 { return w.P99Ms }).Auto(),
				spreadBy(r.Write, keep, func(w WriteResult) float64 { return w.ServerCores }).Format(2),
				spreadBy(r.Write, keep, func(w WriteResult) float64 {
					if w.PerSec == 0 {
						return 0
					}
					return w.ServerCores / w.PerSec * 1000
				}).Format(2),
				spreadBy(r.Write, keep, func(w WriteResult) float64 { return w.ClientCores }).Format(2),
				errs, elections)
		}
	}
	if len(r.Idle) > 0 {
		isSys := func(sys string) func(IdleCPU) bool { return func(i IdleCPU) bool { return i.System == sys } }
		cores := func(i IdleCPU) float64 { return i.Cores }
		p("")
		p("With no requests at all the three servers use: orch %s cores, orch-insecure %s cores, etcd %s cores (included in the server CPU above).",
			spreadBy(r.Idle, isSys(SysOrch), cores).Format(3), spreadBy(r.Idle, isSys(SysOrchInsecure), cores).Format(3), spreadBy(r.Idle, isSys(SysEtcd), cores).Format(3))
	}
	if len(r.Write) > 0 {
		waited := func(w WriteResult) float64 { return w.Settled.Seconds }
		extra := func(w WriteResult) float64 { return w.Settled.ExtraCores }
		timeouts := 0
		for _, w := range r.Write {
			if w.Settled.TimedOut {
				timeouts++
			}
		}
		p("")
		p("Before each measurement the machine settled (sync, then every cluster's servers back at their idle CPU for two 0.5 s windows): waited %s s, the servers %s cores above idle when the wait began; %d waits gave up after %s.",
			spreadBy(r.Write, all, waited).Format(1), spreadBy(r.Write, all, extra).Format(2), timeouts, settleLimit)
	}
	top := slices.Max(clients)
	tput, p99 := map[int]float64{}, map[int]float64{}
	for run := 1; run <= r.Runs; run++ {
		var o, e *WriteResult
		for i := range r.Write {
			w := &r.Write[i]
			if w.Run == run && w.Clients == top {
				switch w.System {
				case SysOrch:
					o = w
				case SysEtcd:
					e = w
				}
			}
		}
		if o != nil && e != nil && e.PerSec > 0 && e.P99Ms > 0 {
			tput[run], p99[run] = o.PerSec/e.PerSec, o.P99Ms/e.P99Ms
		}
	}
	if len(tput) > 0 {
		t, l := orderBalanced(tput), orderBalanced(p99)
		p("")
		p("Goal at %d clients: orch throughput ≥ etcd's and orch p99 ≤ etcd's. Per-run ratios orch/etcd: throughput %s, p99 %s.",
			top, t.All.Format(2), l.All.Format(2))
		if t.OrchFirst.N > 0 && t.EtcdFirst.N > 0 {
			p("The goal is judged balanced for order, on the geometric mean of the medians of runs where orch went first and runs where etcd went first: throughput %s and %s: %.2f; p99 %s and %s: %.2f.",
				t.OrchFirst.Format(2), t.EtcdFirst.Format(2), t.Balanced, l.OrchFirst.Format(2), l.EtcdFirst.Format(2), l.Balanced)
		}
		tv, lv := "**met**", "**met**"
		if t.Balanced < 1 {
			tv = fmt.Sprintf("**missed**: orch reaches %.0f%% of etcd's throughput", t.Balanced*100)
		}
		if l.Balanced > 1 {
			lv = fmt.Sprintf("**missed**: orch's p99 is %.0f%% above etcd's", (l.Balanced-1)*100)
		}
		p("Throughput goal %s; p99 goal %s.", tv, lv)
	}
	r.securityTable(p)
	r.batchingLine(p, clients)
}

// batchingLine says, per client count, what the Go client's batches are
// worth: per-run throughput of orch over orch through a client that sends
// every write alone (-write-unbatched), same cluster, same run.
func (r *Results) batchingLine(p func(string, ...any), clients []int) {
	var parts []string
	for _, n := range clients {
		perRun := map[int][2]float64{}
		for _, w := range r.Write {
			if w.Clients != n {
				continue
			}
			v := perRun[w.Run]
			switch w.System {
			case SysOrch:
				v[0] = w.PerSec
			case SysOrchUnbatched:
				v[1] = w.PerSec
			}
			perRun[w.Run] = v
		}
		var ratios []float64
		for _, v := range perRun {
			if v[0] > 0 && v[1] > 0 {
				ratios = append(ratios, v[0]/v[1])
			}
		}
		if len(ratios) > 0 {
			parts = append(parts, fmt.Sprintf("%d clients %s×", n, SpreadOf(ratios).Format(2)))
		}
	}
	if len(parts) > 0 {
		p("")
		p("Batches: orch's throughput over the same cluster's through a client that sends every write alone (orch-unbatched), per run: %s.", strings.Join(parts, ", "))
	}
}

// orderRatios are the per-run orch/etcd ratios of the write suite, apart by
// which system went first: odd runs measure orch first, even runs etcd.
type orderRatios struct {
	All, OrchFirst, EtcdFirst Spread
	// Balanced is the geometric mean of the two orders' medians (the
	// median of all runs when only one order ran).
	Balanced float64
}

func orderBalanced(byRun map[int]float64) orderRatios {
	var all, odd, even []float64
	for run, v := range byRun {
		all = append(all, v)
		if run%2 == 1 {
			odd = append(odd, v)
		} else {
			even = append(even, v)
		}
	}
	o := orderRatios{All: SpreadOf(all), OrchFirst: SpreadOf(odd), EtcdFirst: SpreadOf(even)}
	o.Balanced = o.All.Median
	if len(odd) > 0 && len(even) > 0 {
		o.Balanced = math.Sqrt(o.OrchFirst.Median * o.EtcdFirst.Median)
	}
	return o
}

func (r *Results) listTable(p func(string, ...any)) {
	d := r.Data
	p("")
	p("## List of %d ConfigMaps (1 KB each)", ListObjects)
	p("")
	p("| read | lists per run | p50 ms | p99 ms | max ms | client.List incl. decoding: p50 ms | p99 ms | response MiB |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|")
	var lin Spread
	for _, m := range []string{"linearizable", "stale"} {
		keep := func(l ListResult) bool { return l.Mode == m }
		s99 := spreadBy(d.List, keep, func(l ListResult) float64 { return l.P99Ms })
		if m == "linearizable" {
			lin = s99
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %.1f |", m, d.List[0].Lists,
			spreadBy(d.List, keep, func(l ListResult) float64 { return l.P50Ms }).Auto(), s99.Auto(),
			spreadBy(d.List, keep, func(l ListResult) float64 { return l.MaxMs }).Auto(),
			spreadBy(d.List, keep, func(l ListResult) float64 { return l.TypedP50Ms }).Auto(),
			spreadBy(d.List, keep, func(l ListResult) float64 { return l.TypedP99Ms }).Auto(),
			float64(d.List[0].Bytes)/(1<<20))
	}
	p("")
	p("Goal: p99 ≤ %d ms for the API call (linearizable): %s.", goalListP99Ms, verdictLE(lin.Median, goalListP99Ms))
}

func (r *Results) watchTable(p func(string, ...any)) {
	d := r.Data
	w0 := d.Watch[0]
	p("")
	p("## Watch fan-out: %d watchers over 3 servers, %d writes at %.0f/s", w0.Watchers, w0.Writes, w0.Rate)
	p("")
	p("| watchers read with | delay measured from | p50 ms | p99 ms | max ms | events never delivered |")
	p("|---|---|---:|---:|---:|---:|")
	goal := map[string]Spread{}
	for _, mode := range []string{WatchClient, WatchRaw} {
		keep := func(w WatchResult) bool { return w.Mode == mode }
		send99 := spreadBy(d.Watch, keep, func(w WatchResult) float64 { return w.SendP99Ms })
		if send99.N == 0 {
			continue
		}
		goal[mode] = send99
		missing := 0
		for _, w := range d.Watch {
			if keep(w) {
				missing += w.Missing
			}
		}
		p("| %s | just before the write is sent | %s | %s | %s | %d |", mode, spreadBy(d.Watch, keep, func(w WatchResult) float64 { return w.SendP50Ms }).Auto(), send99.Auto(),
			spreadBy(d.Watch, keep, func(w WatchResult) float64 { return w.SendMaxMs }).Auto(), missing)
		p("| %s | the write's acknowledgement | %s | %s | | |", mode, spreadBy(d.Watch, keep, func(w WatchResult) float64 { return w.AckP50Ms }).Auto(),
			spreadBy(d.Watch, keep, func(w WatchResult) float64 { return w.AckP99Ms }).Auto())
	}
	p("")
	p("The writes themselves took p50 %s ms, p99 %s ms.", spreadBy(d.Watch, all, func(w WatchResult) float64 { return w.WriteP50Ms }).Auto(),
		spreadBy(d.Watch, all, func(w WatchResult) float64 { return w.WriteP99Ms }).Auto())
	for _, mode := range []string{WatchClient, WatchRaw} {
		if s, ok := goal[mode]; ok {
			p("Goal p99 ≤ %d ms from the send, %s: %s.", goalWatchP99Ms, mode, verdictLE(s.Median, goalWatchP99Ms))
		}
	}
}

func (r *Results) rssTable(p func(string, ...any)) {
	d := r.Data
	p("")
	p("## Server memory with 1 KB ConfigMaps")
	p("")
	p("| objects | leader VmRSS MiB | follower VmRSS MiB | leader Go heap in use MiB | follower heap in use MiB |")
	p("|---:|---:|---:|---:|---:|")
	role := func(leader bool, val func(ServerMem) float64) func(RSSResult) float64 {
		return func(r RSSResult) float64 {
			var sum float64
			n := 0
			for _, s := range r.Servers {
				if s.Leader == leader {
					sum += val(s)
					n++
				}
			}
			if n == 0 {
				return 0
			}
			return sum / float64(n)
		}
	}
	rss := func(s ServerMem) float64 { return s.RSSMiB }
	heap := func(s ServerMem) float64 { return s.HeapInuseMi }
	for _, n := range []int{ListObjects, BulkObjects} {
		keep := func(r RSSResult) bool { return r.Objects == n }
		if spreadBy(d.RSS, keep, role(true, rss)).N == 0 {
			continue
		}
		p("| %d | %s | %s | %s | %s |", n,
			spreadBy(d.RSS, keep, role(true, rss)).Format(0), spreadBy(d.RSS, keep, role(false, rss)).Format(0),
			spreadBy(d.RSS, keep, role(true, heap)).Format(0), spreadBy(d.RSS, keep, role(false, heap)).Format(0))
	}
	p("")
	p("Follower figures are the mean of the two followers. Raw data: %d objects × 1 KB ≈ %.0f MiB.", BulkObjects, float64(BulkObjects*ValueSize)/(1<<20))
}

func (r *Results) snapshotTable(p func(string, ...any)) {
	p("")
	p("## Snapshot and restore at %d objects", BulkObjects)
	p("")
	p("| step | seconds | goal ≤ %d s |", goalSnapSecs)
	p("|---|---:|---|")
	row := func(name string, s Spread) {
		if s.N > 0 {
			p("| %s | %s | %s |", name, s.Auto(), verdictLE(s.Median, goalSnapSecs))
		}
	}
	if len(r.InProc) > 0 {
		row("in-process fsm.WriteSnapshot to a file", spreadBy(r.InProc, all, func(x InProcResult) float64 { return x.WriteSecs }))
		row("in-process write + fsync", spreadBy(r.InProc, all, func(x InProcResult) float64 { return x.WriteSecs + x.SyncSecs }))
		row("in-process fsm.ReadSnapshot", spreadBy(r.InProc, all, func(x InProcResult) float64 { return x.ReadSecs }))
		row("in-process FSM.Restore", spreadBy(r.InProc, all, func(x InProcResult) float64 { return x.RestoreSec }))
	}
	if d := r.Data; d != nil {
		row("`GET /v1/operator/snapshot` on the leader (3-server cluster)", spreadBy(d.Snapshot, all, func(x APISnapshot) float64 { return x.Seconds }))
		row("follower restart: start to /readyz 200", spreadBy(d.Restart, all, func(x RestartResult) float64 { return x.Ready }))
		row("follower restart: start to serving the newest object", spreadBy(d.Restart, all, func(x RestartResult) float64 { return x.Serving }))
	}
	if len(r.InProc) > 0 {
		p("")
		b := r.InProcInfo
		p("Snapshot file: %.1f MiB. Building the in-process FSM (%d creates through FSM.ApplyBatch, 512 per batch) took %.2f s (%.0f creates/s); its live heap: %.0f MiB.",
			float64(r.InProc[0].Bytes)/(1<<20), b.Objects, b.ApplySecs, b.PerSec, b.HeapMiB)
	}
	if d := r.Data; d != nil && len(d.Snapshot) > 0 {
		p("API snapshot archive: %.1f MiB.", float64(d.Snapshot[0].Bytes)/(1<<20))
	}
}
