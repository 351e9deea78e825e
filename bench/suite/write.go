package suite

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// WriteResult is one run of the write benchmark for one system and one
// number of concurrent clients.
type WriteResult struct {
	System  string  `json:"system"` // "orch" or "etcd"
	Clients int     `json:"clients"`
	Run     int     `json:"run"`
	LoadAvg float64 `json:"loadavg_1m"`
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

// Write measures 1 KB creates on orch and 1 KB puts on etcd, side by side.
// Each run starts a fresh orch cluster and a fresh etcd cluster (so state
// left by earlier runs cannot slow later ones) and, for each client count,
// runs one system then the other; which goes first alternates between runs
// so neither always gets the cooler machine.
func Write(env *Env, cfg WriteConfig, progress func(string)) ([]WriteResult, []IdleCPU) {
	var out []WriteResult
	var idle []IdleCPU
	for run := 1; run <= cfg.Runs; run++ {
		mark := env.Mark()
		oc := StartOrch(env)
		ocl := OrchClient(env, oc)
		ctx := context.Background()
		if err := CreateNamespace(ctx, ocl, writeNamespace); err != nil {
			env.Fatal(err)
		}
		opids := orchPIDs(env, oc)
		ec := StartEtcd(env)
		ecl, err := ec.Client()
		if err != nil {
			env.Fatal(err)
		}
		env.Cleanup(func() { ecl.Close() })
		epids := ec.PIDs()

		// Both clusters idle, side by side: their fixed cost, which the
		// per-write CPU figures include.
		o0, e0 := cpuSeconds(opids), cpuSeconds(epids)
		time.Sleep(idleWindow) // a measurement window, not synchronisation
		oi, ei := (cpuSeconds(opids)-o0)/idleWindow.Seconds(), (cpuSeconds(epids)-e0)/idleWindow.Seconds()
		idle = append(idle, IdleCPU{System: "orch", Run: run, Cores: oi}, IdleCPU{System: "etcd", Run: run, Cores: ei})
		progress(fmt.Sprintf("write run %d: idle clusters: orch %.3f cores, etcd %.3f cores", run, oi, ei))

		for _, n := range cfg.Clients {
			orchRun := func() {
				var prof func()
				if cfg.ProfileDir != "" && run == 1 && n == cfg.Clients[len(cfg.Clients)-1] {
					prof = profileLeader(oc, cfg, n)
				}
				r := RunLoad(ctx, n, cfg.Warmup, cfg.Duration, opids, orchSender(ocl, run, n))
				if prof != nil {
					prof()
				}
				out = append(out, WriteResult{System: "orch", Clients: n, Run: run, LoadAvg: LoadAvg(), LoadRun: r})
				progress(fmt.Sprintf("write run %d: orch %3d clients: %8.0f/s p50 %6.2f ms p99 %6.2f ms errors %d", run, n, r.PerSec, r.P50Ms, r.P99Ms, r.Errors))
			}
			etcdRun := func() {
				r := RunLoad(ctx, n, cfg.Warmup, cfg.Duration, epids, etcdSender(ecl, run, n))
				out = append(out, WriteResult{System: "etcd", Clients: n, Run: run, LoadAvg: LoadAvg(), LoadRun: r})
				progress(fmt.Sprintf("write run %d: etcd %3d clients: %8.0f/s p50 %6.2f ms p99 %6.2f ms errors %d", run, n, r.PerSec, r.P50Ms, r.P99Ms, r.Errors))
			}
			if run%2 == 1 {
				orchRun()
				etcdRun()
			} else {
				etcdRun()
				orchRun()
			}
		}
		env.PopCleanups(mark)
	}
	return out, idle
}

func orchSender(cl *client.Client, run, clients int) Sender {
	return func(ctx context.Context, worker, seq int, v string) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := cl.Create(ctx, ConfigMap(writeNamespace, fmt.Sprintf("r%d-c%d-w%d-%d", run, clients, worker, seq), v))
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

// profileLeader starts a CPU profile of the leader covering the
// measurement window and returns a function that waits for it.
func profileLeader(c *testcluster.Cluster, cfg WriteConfig, clients int) func() {
	return profile(c.Leader(), cfg.ProfileDir, fmt.Sprintf("orch-leader-write-c%d.pprof", clients), cfg.Warmup, cfg.Duration)
}
