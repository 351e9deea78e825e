package suite

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// WatchConfig tunes the fan-out benchmark.
type WatchConfig struct {
	Watchers int
	Writes   int
	Rate     float64 // writes per second
}

// WatchResult is one run of the fan-out benchmark.
type WatchResult struct {
	Run      int     `json:"run"`
	Mode     string  `json:"mode"`
	Watchers int     `json:"watchers"`
	Writes   int     `json:"writes"`
	Rate     float64 `json:"rate_per_sec"`
	Samples  int     `json:"samples"`
	Missing  int     `json:"missing"`
	// From just before the write is handed to the client to the event's
	// arrival at a watcher's consumer.
	SendP50Ms float64 `json:"send_p50_ms"`
	SendP99Ms float64 `json:"send_p99_ms"`
	SendMaxMs float64 `json:"send_max_ms"`
	// From the write's acknowledgement to the writer to the event's arrival;
	// negative when the event arrived first.
	AckP50Ms float64 `json:"ack_p50_ms"`
	AckP99Ms float64 `json:"ack_p99_ms"`
	// The writes' own latency, for reference.
	WriteP50Ms float64 `json:"write_p50_ms"`
	WriteP99Ms float64 `json:"write_p99_ms"`
	LoadAvg    float64 `json:"loadavg_1m"`
}

// Watch modes: through the Go client's Watcher, or a plain HTTP watch
// stream read line by line (what the server alone delivers).
const (
	WatchClient = "client.Watch"
	WatchRaw    = "raw HTTP"
)

// Watch runs cfg.Watchers watches (spread evenly over the three servers) on
// one namespace, writes cfg.Writes 1 KB ConfigMaps into it at cfg.Rate per
// second from one writer, and measures, for every (watcher, write) pair,
// how long the event took to arrive.
func Watch(env *Env, run int, mode string, c *testcluster.Cluster, writer *client.Client, cfg WatchConfig) WatchResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A new, empty namespace per pass: client.Watch delivers the initial
	// list into a 256-event buffer before it returns, so it blocks forever
	// on a namespace holding more objects (see BENCHMARKS.md).
	tag := map[string]string{WatchClient: "client", WatchRaw: "raw"}[mode]
	watchNamespace := fmt.Sprintf("bench-watch-%d-%s", run, tag)
	if err := CreateNamespace(ctx, writer, watchNamespace); err != nil {
		env.Fatal(err)
	}
	prefix := "w-"
	urls := c.URLs()

	base := time.Now()
	arrival := make([][]int64, cfg.Watchers) // ns since base; 0 = not seen
	var received atomic.Int64
	want := int64(cfg.Watchers * cfg.Writes)
	allSeen := make(chan struct{})
	var warm sync.WaitGroup
	warm.Add(cfg.Watchers)
	warmed := make([]bool, cfg.Watchers)
	// see records that watcher i got an ADDED event for name.
	see := func(i int, name string) {
		now := int64(time.Since(base))
		if name == prefix+"warm" {
			if !warmed[i] {
				warmed[i] = true
				warm.Done()
			}
			return
		}
		s, ok := strings.CutPrefix(name, prefix)
		if !ok {
			return
		}
		seq, err := strconv.Atoi(s)
		if err != nil || seq < 0 || seq >= cfg.Writes || arrival[i][seq] != 0 {
			return
		}
		arrival[i][seq] = now
		if received.Add(1) == want {
			close(allSeen)
		}
	}
	var wg sync.WaitGroup
	for i := range cfg.Watchers {
		arrival[i] = make([]int64, cfg.Writes)
	}
	switch mode {
	case WatchClient:
		// One client per server, listing that server first (it fails over
		// to the others only if its server goes away).
		var clients []*client.Client
		for i := range urls {
			rot := append(append([]string{}, urls[i:]...), urls[:i]...)
			cl, err := client.New(orchConfig(rot))
			if err != nil {
				env.Fatal(err)
			}
			clients = append(clients, cl)
		}
		for i := range cfg.Watchers {
			w, err := clients[i%len(clients)].Watch(ctx, api.ConfigMap, watchNamespace, client.ListOptions{})
			if err != nil {
				env.Fatal(err)
			}
			defer w.Stop()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ev := range w.Events() {
					if ev.Type == client.Added {
						see(i, ev.Object.GetName())
					}
				}
			}()
		}
	case WatchRaw:
		list, err := writer.List(ctx, api.ConfigMap, watchNamespace, client.ListOptions{Limit: 1})
		if err != nil {
			env.Fatal(err)
		}
		hc := orchHTTP(0) // keeps idle connections for every watcher
		for i := range cfg.Watchers {
			u := urls[i%len(urls)] + api.ConfigMap.Path(watchNamespace) + "?watch=true&resourceVersion=" + list.ResourceVersion
			wg.Add(1)
			go func() {
				defer wg.Done()
				rawWatch(ctx, hc, u, func(name string) { see(i, name) })
			}()
		}
	default:
		env.Fatalf("unknown watch mode %q", mode)
	}
	// Every watch is connected and streaming once each has seen this.
	if _, err := writer.Create(ctx, ConfigMap(watchNamespace, prefix+"warm", "warm")); err != nil {
		env.Fatal(err)
	}
	warmDone := make(chan struct{})
	go func() { warm.Wait(); close(warmDone) }()
	select {
	case <-warmDone:
	case <-time.After(60 * time.Second):
		env.Fatal("watchers did not all see the warm-up write within 60s")
	}

	sent := make([]int64, cfg.Writes)
	acked := make([]int64, cfg.Writes)
	var wlat Latencies
	r := rand.New(rand.NewPCG(uint64(run), uint64(base.UnixNano())))
	buf := make([]byte, ValueSize)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	tick := time.NewTicker(interval) // pacing the writer
	for seq := range cfg.Writes {
		<-tick.C
		obj := ConfigMap(watchNamespace, fmt.Sprintf("%s%05d", prefix, seq), value(r, buf))
		t0 := time.Since(base)
		if _, err := writer.Create(ctx, obj); err != nil {
			env.Fatal(err)
		}
		t1 := time.Since(base)
		sent[seq], acked[seq] = int64(t0), int64(t1)
		wlat = append(wlat, t1-t0)
	}
	tick.Stop()
	select {
	case <-allSeen:
	case <-time.After(30 * time.Second):
	}
	cancel()
	wg.Wait()

	res := WatchResult{Run: run, Mode: mode, Watchers: cfg.Watchers, Writes: cfg.Writes, Rate: cfg.Rate, LoadAvg: LoadAvg()}
	var fromSend, fromAck Latencies
	for i := range arrival {
		for seq, at := range arrival[i] {
			if at == 0 {
				res.Missing++
				continue
			}
			fromSend = append(fromSend, time.Duration(at-sent[seq]))
			fromAck = append(fromAck, time.Duration(at-acked[seq]))
		}
	}
	res.Samples = len(fromSend)
	res.SendP50Ms, res.SendP99Ms, res.SendMaxMs = Ms(fromSend.Percentile(50)), Ms(fromSend.Percentile(99)), Ms(fromSend.Percentile(100))
	res.AckP50Ms, res.AckP99Ms = Ms(fromAck.Percentile(50)), Ms(fromAck.Percentile(99))
	res.WriteP50Ms, res.WriteP99Ms = Ms(wlat.Percentile(50)), Ms(wlat.Percentile(99))
	return res
}

// rawWatch reads one HTTP watch stream and reports each ADDED object's name.
func rawWatch(ctx context.Context, hc *http.Client, url string, added func(name string)) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "ADDED" {
			added(ev.Object.Metadata.Name)
		}
	}
}
