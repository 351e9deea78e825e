package suite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sender sends one write: worker's seq-th, with a fresh 1 KB value.
type Sender func(ctx context.Context, worker, seq int, value string) error

// LoadRun is what one closed-loop load run measured.
type LoadRun struct {
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	// CPU used during the measurement window, in cores (1.0 = one core
	// busy the whole time): by the three servers together, and by this
	// benchmark process (the clients).
	ServerCores float64 `json:"server_cores"`
	ClientCores float64 `json:"client_cores"`
}

// RunLoad drives `clients` goroutines in a closed loop (each sends its next
// write as soon as the previous one is acknowledged) for warmup+duration.
// Writes that complete inside the measurement window count towards the
// throughput and the latency percentiles; latency runs from just before
// the value is handed to the client library to the return of the call.
func RunLoad(ctx context.Context, clients int, warmup, duration time.Duration, serverPIDs []int, send Sender) LoadRun {
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+duration)
	type result struct {
		lat    Latencies
		errs   int
		first  error
		onTime int
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	cpuStart := make(chan [2]float64, 1)
	go func() {
		time.Sleep(time.Until(from)) // pacing: sample CPU at the window's start
		cpuStart <- [2]float64{cpuSeconds(serverPIDs), selfCPU()}
	}()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
			buf := make([]byte, ValueSize)
			res := &results[w]
			res.lat = make(Latencies, 0, 4096)
			for seq := 0; ; seq++ {
				v := value(r, buf)
				t0 := time.Now()
				if !t0.Before(to) || ctx.Err() != nil {
					return
				}
				err := send(ctx, w, seq, v)
				t1 := time.Now()
				if t1.Before(from) || t1.After(to) {
					continue
				}
				if err != nil {
					res.errs++
					if res.first == nil {
						res.first = err
					}
					continue
				}
				res.lat = append(res.lat, t1.Sub(t0))
			}
		}()
	}
	wg.Wait()
	c0 := <-cpuStart
	// The last writes may end a little after `to`; CPU is sampled when they
	// have, so it is divided by the time actually elapsed since `from`.
	elapsed := time.Since(from).Seconds()
	c1 := [2]float64{cpuSeconds(serverPIDs), selfCPU()}
	var all Latencies
	out := LoadRun{Seconds: duration.Seconds()}
	for _, res := range results {
		all = append(all, res.lat...)
		out.Errors += res.errs
		if res.first != nil && out.FirstError == "" {
			out.FirstError = res.first.Error()
		}
	}
	out.Ops = len(all)
	out.PerSec = float64(out.Ops) / duration.Seconds()
	out.P50Ms, out.P99Ms, out.MaxMs = Ms(all.Percentile(50)), Ms(all.Percentile(99)), Ms(all.Percentile(100))
	out.ServerCores = (c1[0] - c0[0]) / elapsed
	out.ClientCores = (c1[1] - c0[1]) / elapsed
	return out
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

// procCPU is the user+system CPU time of a process, in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTick
}

func cpuSeconds(pids []int) float64 {
	var t float64
	for _, p := range pids {
		t += procCPU(p)
	}
	return t
}

func selfCPU() float64 { return procCPU(os.Getpid()) }

// LoadAvg is /proc/loadavg's 1-minute figure.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
