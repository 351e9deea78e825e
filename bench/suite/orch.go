package suite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// ValueSize is the payload of every benchmark object: a ConfigMap's one
// data value, and an etcd value.
const ValueSize = 1024

// StartOrch starts a 3-server orch cluster with the product's default Raft
// timings. The harness runs servers at debug log level (for tests); the
// benchmark asks for the product default, info, so that per-request debug
// lines do not cost throughput.
func StartOrch(env *Env) *testcluster.Cluster {
	return started(testcluster.Start(env, testcluster.Options{Servers: 3, Args: []string{"--log-level", "info"}}))
}

// StartOrchInsecure is StartOrch with --insecure: the API speaks plain
// HTTP without authentication (the cluster secret still encrypts gossip
// and Raft still speaks mutual TLS). It is the baseline that the cost of
// security is measured against; the harness keeps talking to the cluster
// started last by StartOrch, as before.
func StartOrchInsecure(env *Env) *testcluster.Cluster {
	return testcluster.Start(env, testcluster.Options{Servers: 3, Insecure: true, Args: []string{"--log-level", "info"}})
}

// OrchClient is one client for every server of c, as an application would use.
func OrchClient(env *Env, c *testcluster.Cluster, tune ...func(*client.Config)) *client.Client {
	cfg := clusterConfig(c, c.URLs())
	cfg.RetryFor, cfg.UserAgent = 30*time.Second, "orch-bench"
	for _, t := range tune {
		t(&cfg)
	}
	cl, err := client.New(cfg)
	if err != nil {
		env.Fatal(err)
	}
	return cl
}

// value fills a 1 KB printable payload from a fast per-goroutine PRNG, so
// that no two objects are alike and nothing compresses them for free.
func value(r *rand.Rand, buf []byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	for i := 0; i < len(buf); i += 8 {
		x := r.Uint64()
		for j := i; j < min(i+8, len(buf)); j++ {
			buf[j] = alphabet[x&63]
			x >>= 6
		}
	}
	return string(buf)
}

// ConfigMap builds the benchmark's object: one 1 KB data value.
func ConfigMap(ns, name, v string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string]string{"value": v},
	}
}

// CreateNamespace creates ns (an existing one is fine).
func CreateNamespace(ctx context.Context, cl *client.Client, ns string) error {
	_, err := cl.Create(ctx, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// LoadResult describes one bulk load.
type LoadResult struct {
	Objects int     `json:"objects"`
	Writers int     `json:"writers"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
}

// Load creates n ConfigMaps named prefix-0..n-1 in ns with `writers`
// concurrent writers sharing one client.
func Load(ctx context.Context, cl *client.Client, ns, prefix string, n, writers int) (LoadResult, error) {
	if err := CreateNamespace(ctx, cl, ns); err != nil {
		return LoadResult{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		go func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			buf := make([]byte, ValueSize)
			for i := range next {
				name := fmt.Sprintf("%s-%06d", prefix, i)
				if _, err := cl.Create(ctx, ConfigMap(ns, name, value(r, buf))); err != nil {
					cancel()
					errs <- fmt.Errorf("create %s/%s: %w", ns, name, err)
					return
				}
			}
			errs <- nil
		}()
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for range writers {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	secs := time.Since(start).Seconds()
	return LoadResult{Objects: n, Writers: writers, Seconds: secs, PerSec: float64(n) / secs}, firstErr
}

// Settle writes a marker object and waits until every running server
// serves it from its local state: each has applied everything before it.
func Settle(ctx context.Context, cl *client.Client, c *testcluster.Cluster, ns, name string) error {
	if _, err := cl.Create(ctx, ConfigMap(ns, name, "marker")); err != nil {
		return err
	}
	for _, s := range c.Servers {
		if s.Running() {
			if err := WaitObject(ctx, s.URL(), ns, name, time.Minute); err != nil {
				return err
			}
		}
	}
	return nil
}

// WaitObject polls one server with stale reads until it serves ns/name:
// the server has applied the log up to that object's write.
func WaitObject(ctx context.Context, url, ns, name string, timeout time.Duration) error {
	hc := orchHTTP(2 * time.Second)
	deadline := time.Now().Add(timeout)
	path := url + api.ConfigMap.ObjectPath(ns, name) + "?stale=true"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not serve %s/%s within %s", url, ns, name, timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Ready reports whether a server answers /readyz with 200.
func Ready(url string) bool {
	hc := orchHTTP(time.Second)
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ServerPID finds the process of a running orchd server. testcluster does
// not expose it, so it is read from /proc by the server's distinctive
// arguments (its name and bind address, unique per cluster).
func ServerPID(s *testcluster.Server) (int, error) {
	want := [][]byte{[]byte("\x00--name\x00" + s.Name + "\x00"), []byte("\x00--bind\x00" + s.IP + "\x00")}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte("orchd")) {
			continue
		}
		if bytes.Contains(cmd, want[0]) && bytes.Contains(cmd, want[1]) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no orchd process for %s (%s)", s.Name, s.IP)
}

// RSSBytes reads VmRSS of a process.
func RSSBytes(pid int) (int64, error) {
	kb, err := statusKiB(pid, "VmRSS:")
	return kb << 10, err
}

// statusKiB reads one "Name:  N kB" line of /proc/PID/status.
func statusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s line", field)
}

// GoMemStats reads a few Go runtime gauges from a server's /metrics, to
// tell live heap from what the runtime merely holds.
func GoMemStats(url string) (map[string]float64, error) {
	hc := orchHTTP(5 * time.Second)
	resp, err := hc.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{"go_memstats_heap_inuse_bytes": true, "go_memstats_heap_alloc_bytes": true, "go_memstats_sys_bytes": true, "go_memstats_heap_idle_bytes": true, "go_memstats_heap_released_bytes": true}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && want[name] {
			if v, err := strconv.ParseFloat(val, 64); err == nil {
				out[name] = v
			}
		}
	}
	return out, sc.Err()
}
