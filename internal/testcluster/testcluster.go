// Package testcluster runs real orchd (and orch-worker) processes for tests
// and benchmarks: several servers on their own loopback addresses talking Raft and gossip
// over real sockets, which a test can kill -9, stop, restart and query.
// It builds the binaries once per test process (or uses $ORCH_BIN_DIR),
// removes every process and directory it created, and prints the servers'
// logs when a test fails.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"orch.dev/orch/api/client"
)

// T is the part of testing.TB the harness uses, so that benchmark drivers
// outside `go test` can run clusters too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries are what Binaries provides: the servers and simulators run
// orchd, the workers orch-worker (as a real worker machine does).
var binaries = []string{"orchd", "orchctl", "orch-worker"}

// Binaries returns the directory holding orchd, orchctl and orch-worker,
// building them into a temporary directory unless $ORCH_BIN_DIR names a
// directory that has orchd (it must then have all of them).
func Binaries(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv("ORCH_BIN_DIR"); d != "" {
			if _, err := os.Stat(filepath.Join(d, "orchd")); err == nil {
				for _, name := range binaries {
					if _, err := os.Stat(filepath.Join(d, name)); err != nil {
						buildErr = fmt.Errorf("ORCH_BIN_DIR %s has orchd but no %s: make build (or make build-race)", d, name)
						return
					}
				}
				binDir, _ = filepath.Abs(d)
				return
			}
		}
		dir, err := os.MkdirTemp("", "orch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		for _, name := range binaries {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
			cmd.Dir = root
			if name == "orch-worker" {
				// Static, as `make build` ships it (the Makefile): a
				// benchmark of the worker's memory measures that binary,
				// not one that also maps libc and the dynamic loader.
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func moduleRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// Options configure a cluster.
type Options struct {
	Servers int      // default 3
	Token   string   // cluster secret (default: a fresh random one)
	Args    []string // extra orchd agent flags for every server
	// Fast uses short Raft timeouts so elections take a fraction of a second.
	Fast bool
	// LogLevel of the servers (default debug, which tests want to read;
	// benchmarks use info so that logging does not cost what they measure).
	LogLevel string
	// Prepare runs for each server before its first start (a test mounts
	// a small filesystem on its data dir, say).
	Prepare func(s *Server) error
	// Prefix puts the servers on Prefix+"11", +"12"... (addresses the
	// caller has put on an interface: Net.AddAddrs) instead of a
	// free loopback /24. Off loopback the servers need a Token.
	Prefix string
	// Insecure runs the servers with --insecure: a plain-HTTP API without
	// authentication (loopback only). The cluster secret still encrypts
	// gossip and seals the CA, and Raft still speaks mutual TLS; clients
	// then send no token and verify no certificate.
	Insecure bool
}

// Cluster is a set of orchd servers.
type Cluster struct {
	t       T
	bin     string
	dir     string
	prefix  string // "127.A.B."
	opts    Options
	caMu    sync.Mutex
	caFile  string // a copy of the servers' tls/ca.crt, once one exists
	Servers []*Server
	// Others are the cluster's other processes (simulators, workers):
	// killed with the servers, their logs shown when a test fails.
	Others []*Server
}

// Server is one orchd or orch-worker process.
type Server struct {
	Name    string
	IP      string
	DataDir string
	LogPath string
	args    []string
	bin     string
	plain   bool // the API speaks plain HTTP (--insecure)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// FastRaftArgs are Raft timeouts for tests: quick elections on loopback.
var FastRaftArgs = []string{"--raft-heartbeat", "300ms", "--raft-election", "300ms", "--raft-leader-lease", "150ms"}

// freePrefix picks a loopback /24 whose orch ports are free.
func freePrefix() (string, error) {
	for range 50 {
		prefix := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), rand.IntN(256))
		free := true
		for _, host := range []string{"11", "12", "13", "14", "15"} {
			for _, port := range []string{"7400", "7401", "7402"} {
				ln, err := net.Listen("tcp", prefix+host+":"+port)
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
		}
		if free {
			return prefix, nil
		}
	}
	return "", errors.New("no free loopback /24 found")
}

// Start starts a cluster and waits until it has a leader and every server
// is a voter.
func Start(t T, opts Options) *Cluster {
	t.Helper()
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	if opts.Token == "" {
		opts.Token = NewSecret()
	}
	prefix := opts.Prefix
	if prefix == "" {
		var err error
		if prefix, err = freePrefix(); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cluster{t: t, bin: Binaries(t), dir: t.TempDir(), prefix: prefix, opts: opts}
	t.Cleanup(c.cleanup)
	for i := range opts.Servers {
		c.Servers = append(c.Servers, c.newServer(i, opts.Servers, true))
	}
	for _, s := range c.Servers {
		if opts.Prepare != nil {
			if err := opts.Prepare(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitVoters(opts.Servers, 30*time.Second)
	c.WaitSystemObjects(30 * time.Second)
	return c
}

// newServer prepares server i; with expect, it takes part in bootstrap.
func (c *Cluster) newServer(i, expect int, bootstrap bool) *Server {
	return c.newServerWithToken(i, expect, bootstrap, c.opts.Token)
}

func (c *Cluster) newServerWithToken(i, expect int, bootstrap bool, token string) *Server {
	name := fmt.Sprintf("s%d", i+1)
	ip := fmt.Sprintf("%s%d", c.prefix, 11+i)
	s := &Server{Name: name, IP: ip, DataDir: filepath.Join(c.dir, name), LogPath: filepath.Join(c.dir, name+".log"), bin: filepath.Join(c.bin, "orchd"), plain: c.opts.Insecure}
	level := c.opts.LogLevel
	if level == "" {
		level = "debug"
	}
	s.args = []string{"agent", "--server", "--name", name, "--bind", ip, "--data-dir", s.DataDir, "--log-level", level}
	if bootstrap {
		s.args = append(s.args, "--bootstrap-expect", fmt.Sprint(expect))
	}
	if i > 0 || !bootstrap {
		s.args = append(s.args, "--join", c.prefix+"11")
	}
	if token != "" {
		s.args = append(s.args, "--token", token)
	}
	if c.opts.Fast {
		s.args = append(s.args, FastRaftArgs...)
	}
	if c.opts.Insecure {
		s.args = append(s.args, "--insecure")
	}
	s.args = append(s.args, c.opts.Args...)
	return s
}

// AddServer starts one more server that joins the running cluster.
func (c *Cluster) AddServer() *Server {
	s := c.newServer(len(c.Servers), 0, false)
	c.Servers = append(c.Servers, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// AddServerWithToken starts a server that tries to join with another token.
func (c *Cluster) AddServerWithToken(token string) *Server {
	s := c.newServerWithToken(len(c.Servers), 0, false, token)
	c.Servers = append(c.Servers, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// LogContains reports whether the server's log holds substr.
func (s *Server) LogContains(substr string) bool {
	b, _ := os.ReadFile(s.LogPath)
	return bytes.Contains(b, []byte(substr))
}

// URL is the server's API base URL.
func (s *Server) URL() string {
	if s.plain {
		return "http://" + s.IP + ":7400"
	}
	return "https://" + s.IP + ":7400"
}

// Start launches the process (again, after Kill or Stop).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("%s is already running", s.Name)
	}
	log, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.args, " "))
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	return nil
}

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (graceful: a leader transfers leadership) and waits.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// PID is the process ID, 0 when not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// URLs lists every server's API URL.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.URL())
	}
	return out
}

// Client returns a client for every server (or the given URLs).
func (c *Cluster) Client(urls ...string) *client.Client {
	if len(urls) == 0 {
		urls = c.URLs()
	}
	cl, err := client.New(client.Config{Servers: urls, Token: c.BearerToken(), TLS: c.TLS(), RetryFor: 30 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// Peer is a Raft peer as /v1/operator/raft/peers reports it.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// Peers asks one server for the Raft configuration.
func (c *Cluster) Peers(s *Server) ([]Peer, error) {
	cl, err := client.New(client.Config{Servers: []string{s.URL()}, Token: c.BearerToken(), TLS: c.TLS(), RetryFor: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	var peers []Peer
	err = cl.GetJSON(context.Background(), "/v1/operator/raft/peers", nil, &peers)
	return peers, err
}

// Leader returns the server that running servers agree leads, or nil.
func (c *Cluster) Leader() *Server {
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		peers, err := c.Peers(s)
		if err != nil {
			continue
		}
		for _, p := range peers {
			if p.Leader {
				for _, cand := range c.Servers {
					if cand.Name == p.ID && cand.Running() {
						return cand
					}
				}
			}
		}
	}
	return nil
}

// WaitLeader waits for a running leader other than `not` (nil for any).
func (c *Cluster) WaitLeader(not *Server, timeout time.Duration) *Server {
	c.t.Helper()
	var l *Server
	c.Eventually(timeout, "a leader", func() bool {
		l = c.Leader()
		return l != nil && l != not
	})
	return l
}

// WaitVoters waits until the leader reports n voters and every running
// server answers /readyz.
func (c *Cluster) WaitVoters(n int, timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, fmt.Sprintf("%d voters and ready servers", n), func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		peers, err := c.Peers(l)
		if err != nil {
			return false
		}
		voters := 0
		for _, p := range peers {
			if p.Voter {
				voters++
			}
		}
		if voters != n {
			return false
		}
		for _, s := range c.Servers {
			if s.Running() && !c.ready(s) {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) ready(s *Server) bool {
	cl := c.HTTPClient()
	cl.Timeout = time.Second
	resp, err := cl.Get(s.URL() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Eventually polls cond until it holds or fails the test after timeout.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *Cluster) cleanup() {
	for _, s := range c.Others {
		s.Kill()
	}
	for _, s := range c.Servers {
		s.Kill()
	}
	if c.t.Failed() || os.Getenv("ORCH_TEST_LOGS") != "" {
		for _, s := range append(c.Servers, c.Others...) {
			b, _ := os.ReadFile(s.LogPath)
			if len(b) > 200_000 {
				b = append([]byte("...(truncated)...\n"), b[len(b)-200_000:]...)
			}
			c.t.Logf("==== log of %s (%s)\n%s", s.Name, s.IP, bytes.TrimSpace(b))
		}
	}
}
