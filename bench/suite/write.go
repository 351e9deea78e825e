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
	// same run (on a cluster of its own): what the client's batches are
	// worth.
	Unbatched bool
	// BatchAfter, when set, is the orch clients' client.Config.BatchAfter.
	BatchAfter int
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
// 1 KB puts on etcd, one system at a time. For each system a run starts a
// fresh cluster (so that state left by earlier runs, or by another
// system's writes, cannot slow it), measures its idle CPU, then each
// client count, and stops it before the next system starts: no system is
// measured beside another's idle servers. Odd runs go orch, orch-insecure,
// etcd and even runs the reverse, so that no system always gets the
// cooler machine and secure and insecure orch each go first half the
// time. Before each measurement the machine settles (see settle).
func Write(env *Env, cfg WriteConfig, progress func(string)) ([]WriteResult, []IdleCPU) {
	var out []WriteResult
	var idle []IdleCPU
	for run := 1; run <= cfg.Runs; run++ {
		systems := []string{SysOrch}
		if cfg.Unbatched {
			systems = append(systems, SysOrchUnbatched)
		}
		systems = append(systems, SysOrchInsecure, SysEtcd)
		if run%2 == 0 {
			slices.Reverse(systems)
		}
		for _, sys := range systems {
			mark := env.Mark()
			ws := startWriteSystem(env, cfg, sys, run)
			c0 := cpuSeconds(ws.pids)
			time.Sleep(idleWindow) // a measurement window, not synchronisation
			idleCores := (cpuSeconds(ws.pids) - c0) / idleWindow.Seconds()
			idle = append(idle, IdleCPU{System: sys, Run: run, Cores: idleCores})
			progress(fmt.Sprintf("write run %d: %s idle: %.3f cores", run, sys, idleCores))
			for _, n := range cfg.Clients {
				st := settle(ws.pids, idleCores)
				before := elections(ws.cluster)
				var wait func()
				if ws.profile != nil && cfg.ProfileDir != "" && run == 1 && n == cfg.Clients[len(cfg.Clients)-1] {
					wait = ws.profile(n)
				}
				r := RunLoad(context.Background(), n, cfg.Warmup, cfg.Duration, ws.pids, ws.sender(n))
				if wait != nil {
					wait()
				}
				el := elections(ws.cluster) - before
				out = append(out, WriteResult{System: sys, Clients: n, Run: run, LoadAvg: LoadAvg(), Elections: el, Settled: st, LoadRun: r})
				progress(fmt.Sprintf("write run %d: %-14s %3d clients: %8.0f/s p50 %6.2f ms p99 %6.2f ms errors %d elections %d (settled in %.1f s: sync %.1f s, %.2f cores above idle at first)",
					run, sys, n, r.PerSec, r.P50Ms, r.P99Ms, r.Errors, el, st.Seconds, st.SyncSeconds, st.ExtraCores))
			}
			env.PopCleanups(mark)
		}
	}
	return out, idle
}

// writeSystem is one system's fresh cluster, ready for load.
type writeSystem struct {
	pids    []int
	cluster *testcluster.Cluster // nil for etcd
	sender  func(clients int) Sender
	profile func(clients int) func() // nil: not profiled
}

func startWriteSystem(env *Env, cfg WriteConfig, sys string, run int) writeSystem {
	if sys == SysEtcd {
		ec := StartEtcd(env)
		ecl, err := ec.Client()
		if err != nil {
			env.Fatal(err)
		}
		env.Cleanup(func() { ecl.Close() })
		return writeSystem{pids: ec.PIDs(), sender: func(n int) Sender { return etcdSender(ecl, run, n) }}
	}
	var c *testcluster.Cluster
	tune := func(cc *client.Config) { cc.BatchAfter = cfg.BatchAfter }
	suffix := ""
	switch sys {
	case SysOrchInsecure:
		c, suffix = StartOrchInsecure(env), "-insecure"
	case SysOrchUnbatched:
		c, suffix = StartOrch(env), "-unbatched"
		tune = func(cc *client.Config) { cc.NoBatching = true }
	default:
		c = StartOrch(env)
	}
	cl := OrchClient(env, c, tune)
	if err := CreateNamespace(context.Background(), cl, writeNamespace); err != nil {
		env.Fatal(err)
	}
	return writeSystem{pids: orchPIDs(env, c), cluster: c,
		sender:  func(n int) Sender { return orchSender(cl, run, n) },
		profile: func(n int) func() { return profileLeader(c, cfg, suffix, n) }}
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
