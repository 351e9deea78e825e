// Command orch-bench runs orch's benchmark suite (see BENCHMARKS.md): write
// throughput side by side with etcd, list latency, watch fan-out, server
// memory, and snapshot/restore times. It prints a markdown summary to
// stdout and, with -json, writes every run's raw figures.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"orch.dev/orch/bench/suite"
)

var allSuites = []string{"write", "list", "watch", "rss", "snapshot", "sched", "pods", "failover", "proxy"}

func main() {
	suites := flag.String("suite", strings.Join(allSuites, ","), "comma-separated suites to run: "+strings.Join(allSuites, ", "))
	runs := flag.Int("runs", 5, "runs of every measurement (figures are the median over runs, with their range)")
	duration := flag.Duration("duration", 10*time.Second, "measurement window of each write run")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up before each write run's window")
	clients := flag.String("clients", "1,16,256", "concurrent clients of the write runs")
	lists := flag.Int("lists", 200, "lists per read mode per run (list suite)")
	typedLists := flag.Int("typed-lists", 10, "lists decoded by client.List per read mode per run (list suite)")
	watchers := flag.Int("watchers", 100, "watchers (watch suite)")
	watchWrites := flag.Int("watch-writes", 300, "writes per run (watch suite)")
	watchRate := flag.Float64("watch-rate", 20, "writes per second (watch suite)")
	writers := flag.Int("load-writers", 256, "concurrent writers when loading objects")
	schedScales := flag.String("sched-scales", "1000x30000,5000x50000", "NODESxPODS cluster sizes of the scheduling throughput runs (sched suite)")
	schedRate := flag.Float64("sched-rate", 100, "pods per second of the steady-rate latency run (sched suite)")
	schedLatPods := flag.Int("sched-latency-pods", 2000, "pods created at -sched-rate (sched suite)")
	schedProfSecs := flag.Int("sched-profile-seconds", 10, "with -profile: length of the leader's CPU profiles from the start of each scale's first throughput run and from its last binding (sched suite)")
	podsSingle := flag.Int("pods-single", 20, "pods started one after another per run (pods suite)")
	podsBurst := flag.Int("pods-burst", 50, "pods created at once per run (pods suite)")
	podsImage := flag.String("pods-image", "testdata/images/out/web.tar", "the web test image archive (pods suite; make images)")
	snapshots := flag.Int("snapshots", 3, "API snapshot saves per run (snapshot suite)")
	foRuns := flag.Int("failover-runs", 1, "runs of the failover suite (its samples are pooled over runs)")
	foKills := flag.Int("failover-kills", 20, "leader kills per run (failover suite)")
	foTransfers := flag.Int("failover-transfers", 10, "planned leadership transfers per run (failover suite)")
	foDeaths := flag.Int("failover-deaths", 3, "worker deaths per run (failover suite)")
	foWriters := flag.Int("failover-writers", 4, "concurrent writers during leader changes (failover suite)")
	foReplicas := flag.Int("failover-replicas", 10, "pods on the worker that dies (failover suite)")
	foRecoveries := flag.Int("failover-recoveries", 3, "quorum-loss recoveries (orchd recover) per run, each on a fresh cluster (failover suite)")
	foRecoverObjects := flag.Int("failover-recover-objects", 10000, "ConfigMaps the cluster holds before each quorum loss (failover suite)")
	foArgs := flag.String("failover-server-args", "", "extra orchd flags of the failover suite's servers, space-separated (e.g. other Raft timings; the published figures use none)")
	proxyRuns := flag.Int("proxy-runs", 1, "runs of the proxy suite (each builds a fresh site and grows it through every scale)")
	proxyScales := flag.String("proxy-scales", "100,1000,10000", "Service counts of the proxy suite, ascending (one endpoint each)")
	proxySamples := flag.Int("proxy-samples", 100, "endpoint propagations measured per scale and run (proxy suite)")
	jsonOut := flag.String("json", "", "write raw results to this file")
	mdOut := flag.String("md", "", "also write the markdown summary to this file")
	batchAfter := flag.Int("write-batch-after", 0, "write suite: the orch clients' BatchAfter (requests on the wire to a server before writes queue for a batch; 0: the client's default)")
	unbatched := flag.Bool("write-unbatched", false, "write suite: also measure orch through a client that sends every write alone (no batches), in the same runs")
	profile := flag.String("profile", "", "save profiles of orch servers (first run: leader and follower CPU at the most write clients, leader CPU during a snapshot save; heap at the largest state; the pods suite's worker smaps) into this directory")
	verbose := flag.Bool("v", false, "print the cluster harness's messages")
	small := flag.Bool("small", false, "check the suite itself: 1,000 and 5,000 objects instead of 10,000 and 100,000, and 3 kills, 3 transfers, 1 worker death, 1 recovery of 1,000 objects (figures are not comparable)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of orch-bench itself (the load generator and its client libraries) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "orch-bench: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}

	selected := map[string]bool{}
	for _, s := range strings.Split(*suites, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSuites, s) {
			fmt.Fprintf(os.Stderr, "orch-bench: unknown suite %q (have %s)\n", s, strings.Join(allSuites, ", "))
			os.Exit(2)
		}
		selected[s] = true
	}
	var clientCounts []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "orch-bench: -clients: %q is not a positive number\n", s)
			os.Exit(2)
		}
		clientCounts = append(clientCounts, n)
	}
	var scales []suite.SchedScale
	for _, s := range strings.Split(*schedScales, ",") {
		var sc suite.SchedScale
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%dx%d", &sc.Nodes, &sc.Pods); err != nil || sc.Nodes < 1 || sc.Pods < 1 {
			fmt.Fprintf(os.Stderr, "orch-bench: -sched-scales: %q is not NODESxPODS\n", s)
			os.Exit(2)
		}
		scales = append(scales, sc)
	}
	if *small {
		suite.ListObjects, suite.BulkObjects = 1_000, 5_000
		*foKills, *foTransfers, *foDeaths = min(*foKills, 3), min(*foTransfers, 3), min(*foDeaths, 1)
		*foRecoveries, *foRecoverObjects = min(*foRecoveries, 1), min(*foRecoverObjects, 1000)
	}
	var pScales []int
	for _, f := range strings.Split(*proxyScales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(pScales) > 0 && n <= pScales[len(pScales)-1]) {
			fmt.Fprintf(os.Stderr, "orch-bench: -proxy-scales: %q is not an ascending list of positive numbers\n", *proxyScales)
			os.Exit(2)
		}
		if !*small || n <= 1000 {
			pScales = append(pScales, n)
		}
	}
	if *small {
		*proxySamples = min(*proxySamples, 20)
	}
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "orch-bench: -runs must be at least 1")
		os.Exit(2)
	}

	env, err := suite.NewEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "orch-bench:", err)
		os.Exit(1)
	}
	defer env.Close()
	env.Verbose = *verbose

	res := &suite.Results{Started: time.Now(), Args: os.Args[1:], Runs: *runs}
	for _, s := range allSuites {
		if selected[s] {
			res.Suites = append(res.Suites, s)
		}
	}
	sharing := suite.WatchSharing()
	defer sharing.Stop()
	progress := func(msg string) {
		la := suite.LoadAvg()
		res.LoadAvgs = append(res.LoadAvgs, la)
		fmt.Fprintf(os.Stderr, "%s [load %.1f, other work %.2f cores] %s\n", time.Now().Format("15:04:05"), la, sharing.Recent(), msg)
	}
	res.Host = suite.DescribeHost(env)
	progress(fmt.Sprintf("machine: %d cores, %.0f GiB, fsync p50 %.2f ms; etcd %s", res.Host.Cores, res.Host.MemGiB, res.Host.FsyncP50Ms, res.Host.Etcd))

	// save writes what was measured so far, so that a failure in a later
	// suite does not lose the earlier ones.
	save := func() {
		res.Finished = time.Now()
		res.OtherCores, res.OtherCoresPeak = sharing.Summary()
		var md bytes.Buffer
		res.Markdown(&md)
		if *mdOut != "" {
			if err := os.WriteFile(*mdOut, md.Bytes(), 0o644); err != nil {
				env.Fatal(err)
			}
		}
		if *jsonOut != "" {
			b, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				env.Fatal(err)
			}
			if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
				env.Fatal(err)
			}
		}
	}
	if selected["write"] {
		res.Write, res.Idle = suite.Write(env, suite.WriteConfig{Runs: *runs, Clients: clientCounts, Warmup: *warmup, Duration: *duration, ProfileDir: *profile, Unbatched: *unbatched, BatchAfter: *batchAfter}, progress)
		res.SecurityCost = suite.SecurityCosts(res.Write)
		save()
	}
	if selected["list"] || selected["watch"] || selected["rss"] || selected["snapshot"] {
		d := suite.Data(env, suite.DataConfig{
			Runs: *runs, List: selected["list"], Watch: selected["watch"], RSS: selected["rss"], Snapshot: selected["snapshot"],
			Lists: *lists, TypedLists: *typedLists, Writers: *writers, Snapshots: *snapshots, ProfileDir: *profile,
			WatchCfg: suite.WatchConfig{Watchers: *watchers, Writes: *watchWrites, Rate: *watchRate},
		}, progress)
		res.Data = &d
		save()
	}
	if selected["snapshot"] {
		build, inproc := suite.InProc(env, suite.BulkObjects, *runs, progress)
		res.InProcInfo, res.InProc = &build, inproc
	}
	if selected["sched"] {
		r := suite.Sched(env, suite.SchedConfig{Runs: *runs, Scales: scales, Rate: *schedRate, LatencyPods: *schedLatPods,
			ProfileDir: *profile, ProfileSeconds: *schedProfSecs}, progress)
		res.Sched = &r
	}
	if selected["pods"] {
		res.Pods = suite.Pods(env, suite.PodsConfig{Runs: *runs, Single: *podsSingle, Burst: *podsBurst, Archive: *podsImage, ProfileDir: *profile}, progress)
		save()
	}
	if selected["failover"] {
		r := suite.Failover(env, suite.FailoverConfig{Runs: *foRuns, Kills: *foKills, Transfers: *foTransfers, Deaths: *foDeaths,
			Writers: *foWriters, Replicas: *foReplicas, Recoveries: *foRecoveries, RecoverObjects: *foRecoverObjects,
			ServerArgs: strings.Fields(*foArgs)}, progress)
		res.Failover = &r
		save()
	}
	if selected["proxy"] {
		res.Proxy = suite.Proxy(env, suite.ProxyConfig{Runs: *proxyRuns, Scales: pScales, Samples: *proxySamples, SimNodes: 8}, progress)
	}
	save()
	var md bytes.Buffer
	res.Markdown(&md)
	os.Stdout.Write(md.Bytes())
}
