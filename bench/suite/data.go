package suite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// DataConfig selects what the data-cluster runs measure.
type DataConfig struct {
	Runs          int
	List, Watch   bool
	RSS, Snapshot bool
	Lists         int // raw lists per mode per run
	TypedLists    int // decoded lists per mode per run
	WatchCfg      WatchConfig
	Writers       int // concurrent writers for bulk loads
	Snapshots     int // API snapshot saves per run
	// ProfileDir, when set, receives (first run only) heap profiles of the
	// leader and a follower at 100,000 objects and a CPU profile of the
	// leader during the first API snapshot save.
	ProfileDir string
}

// DataResults are everything measured on the data clusters.
type DataResults struct {
	Loads     []LoadRecord    `json:"loads"`
	RSS       []RSSResult     `json:"rss"`
	List      []ListResult    `json:"list"`
	Watch     []WatchResult   `json:"watch"`
	Snapshot  []APISnapshot   `json:"snapshot_api"`
	Restart   []RestartResult `json:"restart"`
	BulkTotal int             `json:"bulk_total"`
}

// LoadRecord is one bulk load of a run.
type LoadRecord struct {
	Run int `json:"run"`
	LoadResult
}

// ServerMem is one server's memory.
type ServerMem struct {
	Name        string  `json:"name"`
	Leader      bool    `json:"leader"`
	RSSMiB      float64 `json:"rss_mib"`
	HeapInuseMi float64 `json:"heap_inuse_mib"`
	HeapAllocMi float64 `json:"heap_alloc_mib"`
}

// RSSResult is the servers' memory at one object count.
type RSSResult struct {
	Run     int         `json:"run"`
	Objects int         `json:"objects"`
	Servers []ServerMem `json:"servers"`
	LoadAvg float64     `json:"loadavg_1m"`
}

// APISnapshot is one GET /v1/operator/snapshot on the leader.
type APISnapshot struct {
	Run     int     `json:"run"`
	Objects int     `json:"objects"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
}

// RestartResult is one follower restart.
type RestartResult struct {
	Run     int     `json:"run"`
	Objects int     `json:"objects"`
	Server  string  `json:"server"`
	Ready   float64 `json:"ready_seconds"`   // start to /readyz 200
	Serving float64 `json:"serving_seconds"` // start to ready AND serving the newest object
}

const (
	bulkNamespace  = "bench-bulk"
	markNamespace  = "bench-marks"
	bulkLoadPrefix = "bulk"
)

// Data runs, on a fresh orch cluster per run: load 10,000 ConfigMaps;
// memory at 10,000; list latencies; load to 100,000; memory at 100,000;
// snapshot saves through the API; a follower restart; watch fan-out.
func Data(env *Env, cfg DataConfig, progress func(string)) DataResults {
	var out DataResults
	ctx := context.Background()
	big := cfg.RSS || cfg.Snapshot
	for run := 1; run <= cfg.Runs; run++ {
		mark := env.Mark()
		c := StartOrch(env)
		cl := OrchClient(env, c)
		if err := CreateNamespace(ctx, cl, markNamespace); err != nil {
			env.Fatal(err)
		}
		marks := 0
		settle := func() string {
			marks++
			name := fmt.Sprintf("mark-%d", marks)
			if err := Settle(ctx, cl, c, markNamespace, name); err != nil {
				env.Fatal(err)
			}
			return name
		}
		if cfg.List || big {
			lr, err := Load(ctx, cl, ListNamespace, "list", ListObjects, cfg.Writers)
			if err != nil {
				env.Fatal(err)
			}
			out.Loads = append(out.Loads, LoadRecord{Run: run, LoadResult: lr})
			progress(fmt.Sprintf("data run %d: loaded %d ConfigMaps in %.1f s (%.0f/s, %d writers)", run, lr.Objects, lr.Seconds, lr.PerSec, lr.Writers))
			settle()
		}
		if cfg.RSS {
			r := memory(env, c, run, ListObjects)
			out.RSS = append(out.RSS, r)
			progress(fmt.Sprintf("data run %d: memory at %d objects: %s", run, r.Objects, memSummary(r)))
		}
		if cfg.List {
			rs := List(env, run, c, cl, cfg.Lists, cfg.TypedLists)
			out.List = append(out.List, rs...)
			progress(fmt.Sprintf("data run %d: lists of %d:%s", run, ListObjects, ListSummary(rs)))
		}
		if big {
			lr, err := Load(ctx, cl, bulkNamespace, bulkLoadPrefix, BulkObjects-ListObjects, cfg.Writers)
			if err != nil {
				env.Fatal(err)
			}
			out.Loads = append(out.Loads, LoadRecord{Run: run, LoadResult: lr})
			progress(fmt.Sprintf("data run %d: loaded %d more ConfigMaps in %.1f s (%.0f/s)", run, lr.Objects, lr.Seconds, lr.PerSec))
			settle()
		}
		if cfg.RSS {
			r := memory(env, c, run, BulkObjects)
			out.RSS = append(out.RSS, r)
			progress(fmt.Sprintf("data run %d: memory at %d objects: %s", run, r.Objects, memSummary(r)))
			if cfg.ProfileDir != "" && run == 1 {
				heapProfiles(c, cfg.ProfileDir)
			}
		}
		if cfg.Snapshot {
			for i := range cfg.Snapshots {
				settle() // something new, so the server takes a fresh snapshot
				var prof func()
				if cfg.ProfileDir != "" && run == 1 && i == 0 {
					prof = profile(c.Leader(), cfg.ProfileDir, "orch-leader-snapshot-save.pprof", 0, 10*time.Second)
				}
				s := apiSnapshot(env, c, run)
				if prof != nil {
					prof()
				}
				out.Snapshot = append(out.Snapshot, s)
				progress(fmt.Sprintf("data run %d: API snapshot save: %.2f s, %.1f MiB", run, s.Seconds, float64(s.Bytes)/(1<<20)))
			}
			r := restart(env, c, cl, run, settle)
			out.Restart = append(out.Restart, r)
			progress(fmt.Sprintf("data run %d: follower %s restart: ready %.2f s, serving newest object %.2f s", run, r.Server, r.Ready, r.Serving))
		}
		if cfg.Watch {
			modes := []string{WatchClient, WatchRaw}
			if run%2 == 0 {
				modes[0], modes[1] = modes[1], modes[0]
			}
			for _, mode := range modes {
				r := Watch(env, run, mode, c, cl, cfg.WatchCfg)
				out.Watch = append(out.Watch, r)
				progress(fmt.Sprintf("data run %d: watch (%s) %d watchers x %d writes: from send p50 %.1f ms p99 %.1f ms; from ack p99 %.1f ms; missing %d",
					run, mode, r.Watchers, r.Writes, r.SendP50Ms, r.SendP99Ms, r.AckP99Ms, r.Missing))
			}
		}
		env.PopCleanups(mark)
	}
	if big {
		out.BulkTotal = BulkObjects
	}
	return out
}

func memory(env *Env, c *testcluster.Cluster, run, objects int) RSSResult {
	leader := c.Leader()
	r := RSSResult{Run: run, Objects: objects, LoadAvg: LoadAvg()}
	for _, s := range c.Servers {
		pid, err := ServerPID(s)
		if err != nil {
			env.Fatal(err)
		}
		rss, err := RSSBytes(pid)
		if err != nil {
			env.Fatal(err)
		}
		m, err := GoMemStats(s.URL())
		if err != nil {
			env.Fatal(err)
		}
		r.Servers = append(r.Servers, ServerMem{Name: s.Name, Leader: s == leader, RSSMiB: float64(rss) / (1 << 20),
			HeapInuseMi: m["go_memstats_heap_inuse_bytes"] / (1 << 20), HeapAllocMi: m["go_memstats_heap_alloc_bytes"] / (1 << 20)})
	}
	return r
}

func memSummary(r RSSResult) string {
	s := ""
	for _, m := range r.Servers {
		role := "follower"
		if m.Leader {
			role = "leader"
		}
		s += fmt.Sprintf(" %s(%s) RSS %.0f MiB heap %.0f MiB;", m.Name, role, m.RSSMiB, m.HeapInuseMi)
	}
	return s
}

// apiSnapshot times GET /v1/operator/snapshot on the leader, from the
// request to the archive's last byte. It uses plain net/http: client.Do's
// streaming responses are cut off when Do returns (see BENCHMARKS.md).
func apiSnapshot(env *Env, c *testcluster.Cluster, run int) APISnapshot {
	leader := c.WaitLeader(nil, 30*time.Second)
	t0 := time.Now()
	resp, err := orchHTTP(5 * time.Minute).Get(leader.URL() + "/v1/operator/snapshot")
	if err != nil {
		env.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		env.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		env.Fatalf("snapshot save: %s", resp.Status)
	}
	return APISnapshot{Run: run, Objects: BulkObjects, Seconds: time.Since(t0).Seconds(), Bytes: n}
}

// restart kills a follower, writes an object it has not seen, starts it
// again and times how long it takes to answer /readyz and to serve that
// object from its own state.
func restart(env *Env, c *testcluster.Cluster, cl *client.Client, run int, settle func() string) RestartResult {
	leader := c.WaitLeader(nil, 30*time.Second)
	var f *testcluster.Server
	for _, s := range c.Servers {
		if s != leader {
			f = s
			break
		}
	}
	f.Kill()
	newest := settle() // served by the two others; f must catch up
	ctx := context.Background()
	t0 := time.Now()
	if err := f.Start(); err != nil {
		env.Fatal(err)
	}
	var ready time.Duration
	deadline := t0.Add(5 * time.Minute)
	for ready == 0 {
		if Ready(f.URL()) {
			ready = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			env.Fatalf("%s not ready %s after restart", f.Name, time.Since(t0))
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if err := WaitObject(ctx, f.URL(), markNamespace, newest, 5*time.Minute); err != nil {
		env.Fatal(err)
	}
	return RestartResult{Run: run, Objects: BulkObjects, Server: f.Name, Ready: ready.Seconds(), Serving: time.Since(t0).Seconds()}
}

// heapProfiles saves the live-heap profiles of the leader and a follower.
func heapProfiles(c *testcluster.Cluster, dir string) {
	leader := c.Leader()
	for _, s := range c.Servers {
		role := "follower"
		if s == leader {
			role = "leader"
		}
		name := fmt.Sprintf("orch-%s-heap-%d.pprof", role, BulkObjects)
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			continue // one follower is enough
		}
		saveURL(s.URL()+"/debug/pprof/heap?gc=1", filepath.Join(dir, name), time.Minute)
	}
}

// profile starts a CPU profile of s after delay, for secs, and returns a
// function that waits for it to be saved.
func profile(s *testcluster.Server, dir, name string, delay, length time.Duration) func() {
	done := make(chan struct{})
	if s == nil {
		close(done)
		return func() {}
	}
	go func() {
		defer close(done)
		time.Sleep(delay) // pacing: start with the measurement window
		url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.URL(), int(length.Seconds()))
		saveURL(url, filepath.Join(dir, name), length+time.Minute)
	}()
	return func() { <-done }
}

func saveURL(url, path string, timeout time.Duration) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		return
	}
	resp, err := orchHTTP(timeout).Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
