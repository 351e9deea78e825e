package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// Options configure a cluster.
type Options struct {
	Servers int      // default 3
	Args    []string // extra `orchd agent` flags for every server
	// SmallDisk gives these servers (by name) a data dir on a tmpfs of
	// that many bytes, which a fault can fill.
	SmallDisk map[string]int64
}

// Cluster is a set of orchd servers, each a Host, plus other hosts
// (simulated workers) that join it.
type Cluster struct {
	t       testing.TB
	Net     *Net
	Token   string
	Servers []*Host
	Others  []*Host
	bin     string
	hc      *http.Client // httpClient, once the CA is known
	caMu    sync.Mutex
	ca      []byte // the cluster CA certificate (tls.go)
	mounts  []string

	mu sync.Mutex
}

// ServerArgs are the flags every chaos server gets: frequent Raft
// snapshots and a short trailing log, so that a server that was away
// often has to catch up by snapshot.
var ServerArgs = []string{"--snapshot-threshold", "1024", "--raft-trailing-logs", "256", "--raft-snapshot-interval", "2s"}

// Start makes the network and starts the servers, and waits until they
// have a leader and every server is a voter. It skips the test on a machine
// that cannot run it (see Requirements).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	began := time.Now()
	n, err := NewNet()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("network made in %s", time.Since(began).Round(time.Millisecond))
	c := &Cluster{t: t, Net: n, Token: randomToken(), bin: testcluster.Binaries(t)}
	t.Cleanup(c.close)
	for i := range opts.Servers {
		h := c.newHost(fmt.Sprintf("s%d", i+1), n.IP(11+i), true)
		h.args = []string{"agent", "--server", "--name", h.Name, "--bind", h.IP, "--data-dir", h.DataDir,
			"--token", c.Token, "--bootstrap-expect", fmt.Sprint(opts.Servers), "--log-level", "info"}
		if i > 0 {
			h.args = append(h.args, "--join", n.IP(11))
		}
		h.args = append(append(h.args, ServerArgs...), opts.Args...)
		if size, ok := opts.SmallDisk[h.Name]; ok {
			if err := c.mountTmpfs(h.DataDir, size); err != nil {
				t.Fatal(err)
			}
		}
		c.Servers = append(c.Servers, h)
	}
	began = time.Now()
	for _, h := range c.Servers {
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHealthy(time.Minute)
	t.Logf("%d servers on %s%d.0/24 healthy after %s", len(c.Servers), subnetPrefix, n.X, time.Since(began).Round(time.Millisecond))
	return c
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Cluster) newHost(name, ip string, server bool) *Host {
	h := &Host{Name: name, IP: ip, Server: server, net: c.Net, bin: filepath.Join(c.bin, "orchd"),
		DataDir: filepath.Join(c.Net.Dir, name), LogPath: filepath.Join(c.Net.Dir, name+".log")}
	if err := c.Net.AddHost(name, ip); err != nil {
		c.t.Fatal(err)
	}
	return h
}

func (c *Cluster) mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	c.mounts = append(c.mounts, dir)
	return nil
}

// AddSimulator starts `orchd simulate` with nodes simulated nodes named
// prefix0.. on a host of its own (name), and waits until they are Ready.
func (c *Cluster) AddSimulator(name, prefix string, nodes int) *Host {
	c.t.Helper()
	h := c.newHost(name, c.Net.IP(21+len(c.Others)), false)
	h.args = []string{"simulate", "--name", name, "--join", c.Net.IP(11), "--bind", h.IP, "--nodes", fmt.Sprint(nodes),
		"--prefix", prefix, "--token", c.Token, "--log-level", "info"}
	c.Others = append(c.Others, h)
	if err := h.Start(); err != nil {
		c.t.Fatal(err)
	}
	return h
}

// URLs lists every server's API URL.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.URL())
	}
	return out
}

// Client returns a client of the given servers (default: all), with the
// retry bounds the chaos clients use: an attempt that hangs (a paused or
// cut-off server) is abandoned after 3 s, a call after 15 s.
func (c *Cluster) Client(urls ...string) *client.Client {
	return c.clientWith(urls)
}

// batchAfterOne has writes queue for a batch as soon as one request is on
// the wire to their server.
func batchAfterOne(cfg *client.Config) { cfg.BatchAfter = 1 }

func (c *Cluster) clientWith(urls []string, tune ...func(*client.Config)) *client.Client {
	if len(urls) == 0 {
		urls = c.URLs()
	}
	cfg := client.Config{Servers: urls, Token: c.Token, TLS: client.TLS{CAPEM: c.caPEM()}, RetryFor: 15 * time.Second,
		AttemptTimeout: 3 * time.Second, UserAgent: "orch-chaos"}
	for _, t := range tune {
		t(&cfg)
	}
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// Status is a server's /internal/v1/status.
type Status struct {
	Name          string `json:"name"`
	State         string `json:"state"`
	Leader        string `json:"leader"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"lastIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	LastContactMs int64  `json:"lastContactMs"`
	DiskLow       bool   `json:"diskLow"`
}

// Status asks one server for its Raft status (2 s timeout).
func (c *Cluster) Status(h *Host) (Status, error) {
	var st Status
	req, _ := http.NewRequest(http.MethodGet, h.URL()+"/internal/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: status %s", h.Name, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Statuses asks every running server at once; a server that does not
// answer is missing from the result.
func (c *Cluster) Statuses() map[*Host]Status {
	out := map[*Host]Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range c.Servers {
		if !h.Running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := c.Status(h); err == nil {
				mu.Lock()
				out[h] = st
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// Leader returns the server that says it leads in the highest term any
// server reports, or nil.
func (c *Cluster) Leader() *Host {
	var leader *Host
	var term uint64
	for h, st := range c.Statuses() {
		if st.State == "Leader" && st.Term >= term {
			leader, term = h, st.Term
		}
	}
	return leader
}

// WaitLeader waits for a leader that is not one of the excluded servers.
func (c *Cluster) WaitLeader(timeout time.Duration, not ...*Host) *Host {
	c.t.Helper()
	var l *Host
	c.Eventually(timeout, "a leader", func() bool {
		l = c.Leader()
		for _, n := range not {
			if l == n {
				return false
			}
		}
		return l != nil
	})
	return l
}

// WaitHealthy waits until every running server follows one leader in one
// term, has applied what that leader has, and answers /readyz.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, "a healthy cluster (one leader, every server caught up and ready)", c.Healthy)
}

// Healthy reports whether WaitHealthy would return now.
func (c *Cluster) Healthy() bool {
	sts := c.Statuses()
	var leader *Status
	running := 0
	for h, st := range sts {
		running++
		if st.State == "Leader" && st.Leader == h.Name {
			leader = &st
		}
	}
	if leader == nil {
		return false
	}
	for _, h := range c.Servers {
		if h.Running() {
			st, ok := sts[h]
			if !ok || st.Term != leader.Term || st.Leader != leader.Name || st.AppliedIndex+64 < leader.AppliedIndex || !c.ready(h) {
				return false
			}
		}
	}
	return running > 0
}

func (c *Cluster) ready(h *Host) bool {
	resp, err := c.httpClient().Get(h.URL() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Eventually polls cond until it holds, or fails the test after timeout.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	if err := poll(context.Background(), timeout, cond); err != nil {
		c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// poll calls cond until it holds, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		sleepPoll()
	}
	return nil
}

// close stops every process, shows (and keeps a copy of) the logs when the
// test failed, and removes everything the cluster made.
func (c *Cluster) close() {
	began := time.Now()
	defer func() { c.t.Logf("cluster removed in %s", time.Since(began).Round(time.Millisecond)) }()
	for _, h := range append(append([]*Host{}, c.Others...), c.Servers...) {
		h.Kill()
	}
	if c.t.Failed() || os.Getenv("ORCH_TEST_LOGS") != "" {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("orch-chaos-logs-%s-%d", time.Now().Format("20060102-150405"), c.Net.X))
		os.MkdirAll(keep, 0o755)
		for _, h := range append(append([]*Host{}, c.Servers...), c.Others...) {
			b, _ := os.ReadFile(h.LogPath)
			os.WriteFile(filepath.Join(keep, h.Name+".log"), b, 0o644)
			if len(b) > 100_000 {
				b = append([]byte("...(truncated)...\n"), b[len(b)-100_000:]...)
			}
			c.t.Logf("==== log of %s (%s)\n%s", h.Name, h.IP, bytes.TrimSpace(b))
		}
		c.t.Logf("full logs kept in %s", keep)
	}
	for _, m := range c.mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	c.Net.Close()
}
