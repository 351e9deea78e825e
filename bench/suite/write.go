package suite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// WriteResult is one run of the write benchmark for one system and one
// number of concurrent clients.
type WriteResult struct {
	System  string  `json:"system"` // SysOrch, SysOrchInsecure or SysEtcd
	Clients int     `json:"clients"`
	Run     int     `json:"run"`
	LoadAvg float64 `json:"loadavg_1m"`
	// Leader elections won during the warm-up and the window (orch: from
	// the servers' logs), which explain a stall if there is one.
	Elections int `json:"elections"`
	// Settled is the wait before the measurement for the machine to come
	// back to rest (see settle).
	Settled Settled `json:"settled"`
	LoadRun
}

// WriteConfig tunes the write suite.
type WriteConfig struct {
	Runs     int
	Clients  []int
	Warmup   time.Duration
	Duration time.Duration
	// ProfileDir, when set, receives a CPU profile of the orch leader taken
	// during the first run's measurement at the highest client count.
	ProfileDir string
	// Unbatched also measures the secure orch cluster through a client
	// that sends every write alone (client.Config.NoBatching), in the
	// same run: what the client's batches are worth.
	Unbatched bool
}

const writeNamespace = "bench-write"

// IdleCPU is what a cluster's three servers use with no requests at all.
type IdleCPU struct {
	System string  `json:"system"`
	Run    int     `json:"run"`
	Cores  float64 `json:"cores"`
}

// idleWindow is how long idle CPU is sampled.
const idleWindow = 5 * time.Second

// Systems of the write suite: orch with security on (as shipped), orch
// with --insecure (plain-HTTP API, no authentication: what security costs
// is the difference) and etcd.
const (
	SysOrch          = "orch"
	SysOrchUnbatched = "orch-unbatched"
	SysOrchInsecure  = "orch-insecure"
	SysEtcd          = "etcd"
)

// Write measures 1 KB creates on orch (security on, and --insecure) and
// 1 KB puts on etcd, side by side. Each run starts fresh clusters of each
// (so state left by earlier runs cannot slow later ones) and, for each
// client count, runs one system after the other; odd runs go orch,
// orch-insecure, etcd and even runs the reverse, so that no system always
// gets the cooler machine and secure and insecure orch each go first half
// the time. Before each measurement the machine settles (see settle), so
// that no system runs beside the leftovers of the one measured before it.
func Write(env *Env, cfg WriteConfig, progress func(string)) ([]WriteResult, []IdleCPU) {
	var out []WriteResult
	var idle []IdleCPU
	for run := 1; run <= cfg.Runs; run++ {
		mark := env.Mark()
		ctx := context.Background()
		ic := StartOrchInsecure(env)
		icl := OrchClient(env, ic)
		if err := CreateNamespace(ctx, icl, writeNamespace); err != nil {
			env.Fatal(err)
		}
		ipids := orchPIDs(env, ic)
		oc := StartOrch(env)
		ocl := OrchClient(env, oc)
		if err := CreateNamespace(ctx, ocl, writeNamespace); err != nil {
			env.Fatal(err)
		}
		opids := orchPIDs(env, oc)
		var ucl *client.Client
		if cfg.Unbatched {
			ucl = OrchClient(env, oc, func(c *client.Config) { c.NoBatching = true })
		}
		ec := StartEtcd(env)
		ecl, err := ec.Client()
		if err != nil {
			env.Fatal(err)
		}
		env.Cleanup(func() { ecl.Close() })
		epids := ec.PIDs()

		// The clusters idle, side by side: their fixed cost, which the
		// per-write CPU figures include.
		o0, i0, e0 := cpuSeconds(opids), cpuSeconds(ipids), cpuSeconds(epids)
		time.Sleep(idleWindow) // a measurement window, not synchronisation
		w := idleWindow.Seconds()
		oi, ii, ei := (cpuSeconds(opids)-o0)/w, (cpuSeconds(ipids)-i0)/w, (cpuSeconds(epids)-e0)/w
		idle = append(idle, IdleCPU{System: SysOrch, Run: run, Cores: oi}, IdleCPU{System: SysOrchInsecure, Run: run, Cores: ii}, IdleCPU{System: SysEtcd, Run: run, Cores: ei})
		progress(fmt.Sprintf("write run %d: idle clusters: orch %.3f cores, orch-insecure %.3f cores, etcd %.3f cores", run, oi, ii, ei))
		everyServer := slices.Concat(opids, ipids, epids)

		for _, n := range cfg.Clients {
			measure := func(sys string, c *testcluster.Cluster, pids []int, send Sender, prof func() func()) {
				st := settle(everyServer, oi+ii+ei)
				before := elections(c)
				var wait func()
				if prof != nil && cfg.ProfileDir != "" && run == 1 && n == cfg.Clients[len(cfg.Clients)-1] {
					wait = prof()
				}
				r := RunLoad(ctx, n, cfg.Warmup, cfg.Duration, pids, send)
				if wait != nil {
					wait()
				}
				el := elections(c) - before
				out = append(out, WriteResult{System: sys, Clients: n, Run: run, LoadAvg: LoadAvg(), Elections: el, Settled: st, LoadRun: r})
				progress(fmt.Sprintf("write run %d: %-13s %3d clients: %8.0f/s p50 %6.2f ms p99 %6.2f ms errors %d elections %d (settled in %.1f s: sync %.1f s, %.2f cores above idle at first)",
					run, sys, n, r.PerSec, r.P50Ms, r.P99Ms, r.Errors, el, st.Seconds, st.SyncSeconds, st.ExtraCores))
			}
			order := []func(){
				func() {
					measure(SysOrch, oc, opids, orchSender(ocl, "r", run, n), func() func() { return profileLeader(oc, cfg, "", n) })
				},
			}
			if ucl != nil {
				order = append(order, func() { measure(SysOrchUnbatched, oc, opids, orchSender(ucl, "u", run, n), nil) })
			}
			order = append(order,
				func() {
					measure(SysOrchInsecure, ic, ipids, orchSender(icl, "r", run, n), func() func() { return profileLeader(ic, cfg, "-insecure", n) })
				},
				func() { measure(SysEtcd, nil, epids, etcdSender(ecl, run, n), nil) })
			if run%2 == 0 {
				slices.Reverse(order)
			}
			for _, f := range order {
				f()
			}
		}
		env.PopCleanups(mark)
	}
	return out, idle
}

// elections counts the leader elections the servers of c have logged
// winning (0 for nil: etcd's are not counted).
func elections(c *testcluster.Cluster) int {
	if c == nil {
		return 0
	}
	n := 0
	for _, s := range c.Servers {
		b, err := os.ReadFile(s.LogPath)
		if err != nil {
			continue
		}
		n += bytes.Count(b, []byte(`msg="became leader"`))
	}
	return n
}

// orchSender creates ConfigMaps named prefix, run, clients, worker, seq.
func orchSender(cl *client.Client, prefix string, run, clients int) Sender {
	return func(ctx context.Context, worker, seq int, v string) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := cl.Create(ctx, ConfigMap(writeNamespace, fmt.Sprintf("%s%d-c%d-w%d-%d", prefix, run, clients, worker, seq), v))
		return err
	}
}

func etcdSender(cl *clientv3.Client, run, clients int) Sender {
	return func(ctx context.Context, worker, seq int, v string) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := cl.Put(ctx, fmt.Sprintf("/bench/r%d/c%d/w%d/%d", run, clients, worker, seq), v)
		return err
	}
}

// PIDs are the members' process IDs.
func (e *Etcd) PIDs() []int {
	var out []int
	for _, p := range e.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}

func orchPIDs(env *Env, c *testcluster.Cluster) []int {
	var out []int
	for _, s := range c.Servers {
		pid, err := ServerPID(s)
		if err != nil {
			env.Fatal(err)
		}
		out = append(out, pid)
	}
	return out
}

// profileLeader starts CPU profiles of the leader and of one follower
// covering the measurement window and returns a function that waits for
// them.
func profileLeader(c *testcluster.Cluster, cfg WriteConfig, suffix string, clients int) func() {
	leader := c.Leader()
	waitLeader := profile(leader, cfg.ProfileDir, fmt.Sprintf("orch%s-leader-write-c%d.pprof", suffix, clients), cfg.Warmup, cfg.Duration)
	var follower *testcluster.Server
	for _, s := range c.Servers {
		if s != leader && s.Running() {
			follower = s
			break
		}
	}
	waitFollower := profile(follower, cfg.ProfileDir, fmt.Sprintf("orch%s-follower-write-c%d.pprof", suffix, clients), cfg.Warmup, cfg.Duration)
	return func() {
		waitLeader()
		waitFollower()
	}
}
