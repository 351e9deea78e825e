package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// FailoverNamespace holds the failover suite's objects.
const FailoverNamespace = "bench-failover"

// FailoverConfig tunes the failover suite.
type FailoverConfig struct {
	Runs      int
	Kills     int // unplanned failovers (kill -9 of the leader) per run
	Transfers int // planned leadership transfers per run
	Deaths    int // worker deaths per run
	Writers   int // concurrent writers while leaders change
	Replicas  int // pods of the Deployment whose node set dies
	// Recoveries from quorum loss per run, each on a fresh cluster holding
	// RecoverObjects ConfigMaps.
	Recoveries     int
	RecoverObjects int
	// ServerArgs are extra orchd flags (other Raft timings, say); the
	// figures in BENCHMARKS.md use none: the product's defaults.
	ServerArgs []string
}

// UnplannedResult is one run's leader kills: for each, the time from the
// kill -9 to the first acknowledged write that was sent after the kill.
type UnplannedResult struct {
	Run     int       `json:"run"`
	Kills   int       `json:"kills"`
	Samples []float64 `json:"samples_ms"`
	P50Ms   float64   `json:"p50_ms"`
	P99Ms   float64   `json:"p99_ms"`
	MaxMs   float64   `json:"max_ms"`
	// From the kill until a surviving server reports itself leader (its
	// /internal/v1/status, polled every 10 ms): the election's share.
	ElectedMs    []float64 `json:"elected_ms"`
	ElectedP50Ms float64   `json:"elected_p50_ms"`
	ElectedP99Ms float64   `json:"elected_p99_ms"`
	// Writes that failed (the client gave up) during the run's kills.
	Failed  int     `json:"failed_writes"`
	LoadAvg float64 `json:"loadavg_1m"`
}

// PlannedResult is one run's leadership transfers under write load.
type PlannedResult struct {
	Run       int `json:"run"`
	Transfers int `json:"transfers"`
	// Per transfer: the longest time without an acknowledged write, from
	// the transfer request until 2 s after the new leader answered.
	StallsMs   []float64 `json:"stalls_ms"`
	MaxStallMs float64   `json:"max_stall_ms"`
	P50StallMs float64   `json:"p50_stall_ms"`
	// How long the transfer request itself took.
	TransferP50Ms float64 `json:"transfer_p50_ms"`
	Failed        int     `json:"failed_writes"`
	Writes        int     `json:"writes"`
	LoadAvg       float64 `json:"loadavg_1m"`
}

// FailoverResults are the failover suite's figures.
type FailoverResults struct {
	Runs       int                 `json:"runs"`
	ServerArgs []string            `json:"server_args,omitempty"`
	Writers    int                 `json:"writers"`
	Unplanned  []UnplannedResult   `json:"unplanned"`
	Planned    []PlannedResult     `json:"planned"`
	Worker     []WorkerDeathResult `json:"worker_death"`
	Recover    []RecoverResult     `json:"quorum_loss_recovery"`
}

// Failover runs the failover suite: per run a fresh 3-server cluster with
// the product's default Raft timings, first the leader kills, then the
// planned transfers; then, on another fresh cluster, the worker deaths.
func Failover(env *Env, cfg FailoverConfig, progress func(string)) FailoverResults {
	out := FailoverResults{Runs: cfg.Runs, Writers: cfg.Writers, ServerArgs: cfg.ServerArgs}
	for run := 1; run <= cfg.Runs; run++ {
		mark := env.Mark()
		c := startFailoverCluster(env, cfg.ServerArgs)
		cl := OrchClient(env, c)
		if err := CreateNamespace(context.Background(), cl, FailoverNamespace); err != nil {
			env.Fatal(err)
		}
		w := startAckWriters(cl, cfg.Writers, fmt.Sprintf("r%d", run))
		if cfg.Kills > 0 {
			u := unplanned(env, c, w, cfg.Kills)
			u.Run = run
			out.Unplanned = append(out.Unplanned, u)
			progress(fmt.Sprintf("failover run %d: %d leader kills: kill -> first write p50 %.0f ms p99 %.0f ms max %.0f ms, %d failed writes",
				run, u.Kills, u.P50Ms, u.P99Ms, u.MaxMs, u.Failed))
		}
		if cfg.Transfers > 0 {
			p := planned(env, c, cl, w, cfg.Transfers)
			p.Run = run
			out.Planned = append(out.Planned, p)
			progress(fmt.Sprintf("failover run %d: %d transfers: longest write stall %.0f ms (p50 %.0f ms), %d failed of %d writes",
				run, p.Transfers, p.MaxStallMs, p.P50StallMs, p.Failed, p.Writes))
		}
		w.stop()
		env.PopCleanups(mark)
		if cfg.Deaths > 0 {
			mark := env.Mark()
			r := workerDeaths(env, startFailoverCluster(env, cfg.ServerArgs), cfg.Deaths, cfg.Replicas, progress)
			r.Run = run
			out.Worker = append(out.Worker, r)
			env.PopCleanups(mark)
		}
		if cfg.Recoveries > 0 {
			out.Recover = append(out.Recover, recoveries(env, cfg, run, cfg.Recoveries, cfg.RecoverObjects, progress)...)
		}
	}
	return out
}

// startFailoverCluster is StartOrch with extra server flags.
func startFailoverCluster(env *Env, args []string) *testcluster.Cluster {
	return started(testcluster.Start(env, testcluster.Options{Servers: 3, Args: append([]string{"--log-level", "info"}, args...)}))
}

// ackWriters create ConfigMaps in a closed loop and record when each
// write was sent and acknowledged, and which failed.
type ackWriters struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acks   []ack // in acknowledgement order
	failed []time.Time
	total  atomic.Int64
}

type ack struct{ sent, acked time.Time }

func startAckWriters(cl *client.Client, n int, prefix string) *ackWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackWriters{cancel: cancel}
	for g := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				sent := time.Now()
				_, err := cl.Create(ctx, ConfigMap(FailoverNamespace, fmt.Sprintf("%s-%d-%d", prefix, g, i), "x"))
				now := time.Now()
				if ctx.Err() != nil {
					return
				}
				w.mu.Lock()
				if err != nil {
					w.failed = append(w.failed, now)
				} else {
					w.acks = append(w.acks, ack{sent, now})
				}
				w.mu.Unlock()
				w.total.Add(1)
			}
		}()
	}
	return w
}

func (w *ackWriters) stop() {
	w.cancel()
	w.wg.Wait()
}

// firstSentAfter returns when the first write sent after t was
// acknowledged (zero if none yet).
func (w *ackWriters) firstSentAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for i := len(w.acks) - 1; i >= 0 && w.acks[i].acked.After(t); i-- {
		if a := w.acks[i]; a.sent.After(t) && (first.IsZero() || a.acked.Before(first)) {
			first = a.acked
		}
	}
	return first
}

// failedBetween counts failed writes in [from, to].
func (w *ackWriters) failedBetween(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.failed {
		if !f.Before(from) && !f.After(to) {
			n++
		}
	}
	return n
}

// longestStall is the longest time in [from, to] without an
// acknowledgement, and how many writes were acknowledged in it.
func (w *ackWriters) longestStall(from, to time.Time) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, longest, n := from, time.Duration(0), 0
	for _, a := range w.acks {
		if a.acked.Before(from) || a.acked.After(to) {
			continue
		}
		longest = max(longest, a.acked.Sub(last))
		last = a.acked
		n++
	}
	return max(longest, to.Sub(last)), n
}

// waitProgress waits until n more writes were made (acknowledged or not).
func (w *ackWriters) waitProgress(env *Env, n int64) {
	target := w.total.Load() + n
	deadline := time.Now().Add(time.Minute)
	for w.total.Load() < target {
		if time.Now().After(deadline) {
			env.Fatalf("writers made %d of %d writes in a minute", n-(target-w.total.Load()), n)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// unplanned kills the leader `kills` times; after each it restarts the
// server and waits until the cluster is whole again.
func unplanned(env *Env, c *testcluster.Cluster, w *ackWriters, kills int) UnplannedResult {
	r := UnplannedResult{Kills: kills}
	var lat, el Latencies
	began := time.Now()
	for range kills {
		c.WaitVoters(3, time.Minute)
		w.waitProgress(env, 50)
		l := c.Leader()
		if l == nil {
			env.Fatal("no leader")
		}
		killed := time.Now()
		l.Kill()
		elected := make(chan time.Time, 1)
		go func() { elected <- waitNewLeader(c, l, killed.Add(time.Minute)) }()
		var first time.Time
		deadline := killed.Add(time.Minute)
		for first = w.firstSentAfter(killed); first.IsZero(); first = w.firstSentAfter(killed) {
			if time.Now().After(deadline) {
				env.Fatalf("no write acknowledged a minute after the leader %s was killed", l.Name)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		lat = append(lat, first.Sub(killed))
		r.Samples = append(r.Samples, Ms(first.Sub(killed)))
		if e := <-elected; !e.IsZero() {
			el = append(el, e.Sub(killed))
			r.ElectedMs = append(r.ElectedMs, Ms(e.Sub(killed)))
		}
		if err := l.Start(); err != nil {
			env.Fatal(err)
		}
	}
	c.WaitVoters(3, time.Minute)
	r.Failed = w.failedBetween(began, time.Now())
	r.P50Ms, r.P99Ms, r.MaxMs = Ms(lat.Percentile(50)), Ms(lat.Percentile(99)), Ms(lat.Percentile(100))
	r.ElectedP50Ms, r.ElectedP99Ms = Ms(el.Percentile(50)), Ms(el.Percentile(99))
	r.LoadAvg = LoadAvg()
	return r
}

// waitNewLeader polls the servers other than old every 10 ms and returns
// when one first reports itself leader (zero at the deadline).
func waitNewLeader(c *testcluster.Cluster, old *testcluster.Server, deadline time.Time) time.Time {
	hc := orchHTTP(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s == old {
				continue
			}
			var st struct {
				State string `json:"state"`
			}
			resp, err := hc.Get(s.URL() + "/internal/v1/status")
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.State == "Leader" {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	return time.Time{}
}

// planned asks the leader to hand leadership over `n` times while the
// writers run.
func planned(env *Env, c *testcluster.Cluster, cl *client.Client, w *ackWriters, n int) PlannedResult {
	r := PlannedResult{Transfers: n}
	var took Latencies
	for range n {
		c.WaitVoters(3, time.Minute)
		w.waitProgress(env, 50)
		before := c.Leader()
		from := time.Now()
		if _, err := cl.Do(context.Background(), client.Request{Method: http.MethodPost, Path: "/v1/operator/raft/transfer-leader"}); err != nil {
			env.Fatalf("transfer-leader: %v", err)
		}
		answered := time.Now()
		took = append(took, answered.Sub(from))
		if after := c.WaitLeader(before, 30*time.Second); after == before {
			env.Fatal("leadership did not move")
		}
		to := answered.Add(2 * time.Second)
		time.Sleep(time.Until(to)) // the measurement window's end
		stall, writes := w.longestStall(from, to)
		r.StallsMs = append(r.StallsMs, Ms(stall))
		r.Writes += writes
		r.Failed += w.failedBetween(from, to)
	}
	r.MaxStallMs = slices.Max(r.StallsMs)
	stalls := Latencies{}
	for _, s := range r.StallsMs {
		stalls = append(stalls, time.Duration(s*float64(time.Millisecond)))
	}
	r.P50StallMs = Ms(stalls.Percentile(50))
	r.TransferP50Ms = Ms(took.Percentile(50))
	r.LoadAvg = LoadAvg()
	return r
}
