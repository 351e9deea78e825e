package suite

import (
	"fmt"
	"strings"
	"time"
)

// Goals of the failover suite, from the issue it was written for.
const (
	goalFailoverP99Ms   = 1500
	goalTransferStallMs = 300
	goalWorkerDeathSecs = 15
)

// failoverTable reports the failover suite. Each measurement's samples
// are pooled over the runs: the goals are about the distribution over
// all kills, transfers and deaths.
func (r *Results) failoverTable(p func(string, ...any)) {
	f := r.Failover
	p("")
	timings := "the product's default Raft timings"
	if len(f.ServerArgs) > 0 {
		timings = "servers started with `" + strings.Join(f.ServerArgs, " ") + "`"
	}
	p("## Failover (3 servers, %s; %d concurrent writers; the samples of %d run(s) pooled)", timings, f.Writers, f.Runs)
	p("")
	p("| measurement | samples | p50 | p99 | max | failed writes | goal |")
	p("|---|---:|---:|---:|---:|---:|---|")
	if len(f.Unplanned) > 0 {
		var lat, el Latencies
		failed := 0
		for _, u := range f.Unplanned {
			for _, s := range u.Samples {
				lat = append(lat, msDuration(s))
			}
			for _, s := range u.ElectedMs {
				el = append(el, msDuration(s))
			}
			failed += u.Failed
		}
		p99 := Ms(lat.Percentile(99))
		p("| unplanned: kill -9 of the leader → first acknowledged write sent after it, ms | %d | %.0f | %.0f | %.0f | %d | p99 ≤ %d ms: %s |",
			len(lat), Ms(lat.Percentile(50)), p99, Ms(lat.Percentile(100)), failed, goalFailoverP99Ms, verdictLE(p99, goalFailoverP99Ms))
		p("| — of which: kill -9 → a surviving server reports itself leader, ms | %d | %.0f | %.0f | %.0f | | |",
			len(el), Ms(el.Percentile(50)), Ms(el.Percentile(99)), Ms(el.Percentile(100)))
	}
	if len(f.Planned) > 0 {
		var stalls, took Latencies
		failed, writes := 0, 0
		for _, pl := range f.Planned {
			for _, s := range pl.StallsMs {
				stalls = append(stalls, msDuration(s))
			}
			took = append(took, msDuration(pl.TransferP50Ms))
			failed += pl.Failed
			writes += pl.Writes
		}
		worst := Ms(stalls.Percentile(100))
		verdict := verdictLE(worst, goalTransferStallMs)
		if failed > 0 {
			verdict += fmt.Sprintf("; **%d failed requests**", failed)
		}
		p("| planned: `transfer-leader` under writes, longest write stall, ms | %d | %.0f | %.0f | %.0f | %d of %d | longest ≤ %d ms, none failed: %s |",
			len(stalls), Ms(stalls.Percentile(50)), Ms(stalls.Percentile(99)), worst, failed, writes, goalTransferStallMs, verdict)
	}
	if len(f.Worker) > 0 {
		var secs []float64
		for _, w := range f.Worker {
			secs = append(secs, w.Samples...)
		}
		var lat Latencies
		for _, s := range secs {
			lat = append(lat, msDuration(s*1000))
		}
		worst := lat.Percentile(100).Seconds()
		w0 := f.Worker[0]
		p("| worker death (kill -9 of a simulator of %d nodes) → %d pods Running on the other nodes, s | %d | %.1f | %.1f | %.1f | | ≤ %d s: %s |",
			w0.Nodes, w0.Replicas, len(lat), lat.Percentile(50).Seconds(), lat.Percentile(99).Seconds(), worst, goalWorkerDeathSecs,
			verdictLE(worst, goalWorkerDeathSecs))
	}
	if len(f.Recover) > 0 {
		var cmd, serving Latencies
		for _, r := range f.Recover {
			cmd = append(cmd, msDuration(r.CommandMs))
			serving = append(serving, msDuration(r.ServingMs))
		}
		p("| quorum loss (%d ConfigMaps): `orchd recover` on the survivor, ms | %d | %.0f | %.0f | %.0f | | |",
			f.Recover[0].Objects, len(cmd), Ms(cmd.Percentile(50)), Ms(cmd.Percentile(99)), Ms(cmd.Percentile(100)))
		p("| — from `orchd recover` to the first write acknowledged by the restarted survivor, ms | %d | %.0f | %.0f | %.0f | | every object kept |",
			len(serving), Ms(serving.Percentile(50)), Ms(serving.Percentile(99)), Ms(serving.Percentile(100)))
	}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
