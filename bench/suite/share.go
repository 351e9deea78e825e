package suite

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sharing watches how much CPU other work on the machine takes while the
// benchmark runs. The load average cannot tell: the benchmark's own
// servers and clients keep it well above the core count. Every second it
// takes the machine's busy time from /proc/stat and subtracts what this
// process and its descendants (the servers) used.
type Sharing struct {
	mu      sync.Mutex
	samples []float64 // other work, in cores, per interval
	stop    chan struct{}
	done    chan struct{}
}

// WatchSharing starts sampling.
func WatchSharing() *Sharing {
	s := &Sharing{stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// Stop ends sampling.
func (s *Sharing) Stop() {
	close(s.stop)
	<-s.done
}

// Summary is the mean and the highest 10-second mean of other work's CPU,
// in cores.
func (s *Sharing) Summary() (mean, peak10s float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return 0, 0
	}
	var sum float64
	for i, v := range s.samples {
		sum += v
		if i >= 9 {
			var w float64
			for _, x := range s.samples[i-9 : i+1] {
				w += x
			}
			peak10s = max(peak10s, w/10)
		}
	}
	if len(s.samples) < 10 {
		peak10s = sum / float64(len(s.samples))
	}
	return sum / float64(len(s.samples)), peak10s
}

// Recent is other work's CPU over the last 10 seconds, in cores.
func (s *Sharing) Recent() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.samples[max(0, len(s.samples)-10):]
	if len(v) == 0 {
		return 0
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func (s *Sharing) loop() {
	defer close(s.done)
	tick := time.NewTicker(time.Second) // sampling interval
	defer tick.Stop()
	prevBusy, prevAt := machineBusy(), time.Now()
	prevOurs := ourCPU()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		busy, at, ours := machineBusy(), time.Now(), ourCPU()
		var mine float64
		for pid, t := range ours {
			mine += t - prevOurs[pid] // a new process's previous time is 0
		}
		other := max(0, (busy-prevBusy)-mine) / at.Sub(prevAt).Seconds()
		s.mu.Lock()
		s.samples = append(s.samples, other)
		s.mu.Unlock()
		prevBusy, prevAt, prevOurs = busy, at, ours
	}
}

// machineBusy is the CPU time, in seconds, all cores spent not idle.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest time is already counted in user
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / clockTick
}

// ourCPU is the CPU time of this process and every descendant, by PID.
func ourCPU() map[int]float64 {
	parent := map[int]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			s = s[i+1:]
		}
		f := strings.Fields(s)
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	self := os.Getpid()
	out := map[int]float64{}
	for pid := range parent {
		for p, hops := pid, 0; p > 1 && hops < 32; p, hops = parent[p], hops+1 {
			if p == self {
				out[pid] = procCPU(pid)
				break
			}
		}
	}
	return out
}
