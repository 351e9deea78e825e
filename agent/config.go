package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/netdefaults"
)

// DefaultTolerationSeconds is orch's edge default for how long a pod stays
// bound to a node that stopped reporting (Kubernetes uses 300 s): with the
// node lifecycle's grace period it bounds how soon a dead worker's pods run
// elsewhere.
const DefaultTolerationSeconds = 5

// Default ports (DESIGN.md).
const (
	DefaultHTTPPort   = netdefaults.HTTPPort
	DefaultRaftPort   = netdefaults.RaftPort
	DefaultGossipPort = netdefaults.GossipPort
	DefaultWorkerPort = netdefaults.WorkerPort
)

// Config is everything an agent needs; orchd builds it from flags.
type Config struct {
	Name            string
	DataDir         string
	BindAddr        string // IP the agent listens on
	AdvertiseAddr   string // IP peers use to reach it (default BindAddr)
	HTTPPort        int
	RaftPort        int
	GossipPort      int
	Server          bool
	BootstrapExpect int
	Join            []string // gossip addresses, host or host:port
	// Token is the cluster secret. When set, API clients must present it as
	// a bearer token, Raft connections authenticate with it, and gossip is
	// encrypted with a key derived from it. Required off loopback.
	Token string
	// PreviousSecrets are cluster secrets this cluster ran with before
	// Token (--previous-cluster-secret): Secrets sealed under them still
	// open, and the cluster CA sealed with one is re-sealed with Token at
	// start (secrets_rotate.go). They authenticate nobody.
	PreviousSecrets []string
	// CertValidity is how long this server's certificate is valid
	// (pki.DefaultNodeValidity when 0); it is renewed at two thirds.
	CertValidity time.Duration
	// Insecure serves the API over plain HTTP without authentication; it
	// is refused unless every address is loopback (experiments only).
	Insecure bool
	// JoinStore, when set, replaces the cluster's join token records
	// (tests).
	JoinStore join.Store
	// TokenPrune tunes the leader's deletion of expired token records
	// (tokens_prune.go).
	TokenPrune TokenPruneConfig

	Raft RaftTiming
	// SnapshotThreshold and TrailingLogs bound the Raft log on disk.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// High-availability operations (config_ha.go, docs/operations.md).
	HA HAConfig
	// WatchHistory is how many changes each server keeps for watches.
	WatchHistory int
	// LeaderWait is how long a request waits for a leader during an
	// election before failing with 503.
	LeaderWait time.Duration
	// DefaultTolerationSeconds is how long pods stay on a not-ready or
	// unreachable node by default before they are evicted (0: the
	// default, DefaultTolerationSeconds; Kubernetes uses 300).
	DefaultTolerationSeconds int64

	Version string
	Logger  *slog.Logger
}

// RaftTiming holds the Raft timeouts, tuned for a LAN edge site.
type RaftTiming struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// DefaultRaftTiming suits servers on one LAN (round trips well under 10 ms).
// CommitTimeout trades idle CPU for how fresh followers are when writes are
// sparse: followers learn of a commit at the next append, sent at least this
// often (5 ms: 0.16 idle cores for 3 servers; 10 ms: ~0.1; 50 ms: 0.04, but
// watches on followers then lag up to ~100 ms).
//
// A follower notices a dead leader between one and three heartbeat
// timeouts after its last contact (hashicorp/raft checks at random
// intervals of one to two timeouts), so the heartbeat timeout sets the
// unplanned failover time: 300 ms gives a new leader within ~0.9 s, or
// ~1.5 s when the first candidate is turned down by a follower that heard
// from the dead leader a moment later and must stand again after an
// election timeout (docs/operations.md, "Raft timing"). The lease (at most
// the heartbeat timeout) is how long a leader cut off from its followers
// keeps leading; it plays no part in the failover time.
var DefaultRaftTiming = RaftTiming{
	HeartbeatTimeout:   300 * time.Millisecond,
	ElectionTimeout:    300 * time.Millisecond,
	LeaderLeaseTimeout: 300 * time.Millisecond,
	CommitTimeout:      10 * time.Millisecond,
}

// SteadyRaftTiming is hashicorp/raft's own heartbeat and election timeouts,
// for sites whose servers are far apart or heavily loaded, and for tests
// that must not see elections of their own.
var SteadyRaftTiming = RaftTiming{
	HeartbeatTimeout:   1000 * time.Millisecond,
	ElectionTimeout:    1000 * time.Millisecond,
	LeaderLeaseTimeout: 500 * time.Millisecond,
	CommitTimeout:      10 * time.Millisecond,
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)

// setDefaults fills zero values and checks the configuration; errors name
// the flag a user would change.
func (c *Config) setDefaults() error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("--name %q: must be a lowercase DNS name (letters, digits, '-' and '.')", c.Name)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir: required")
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	bind := net.ParseIP(c.BindAddr)
	if bind == nil {
		return fmt.Errorf("--bind %q: not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr == "" {
		if bind.IsUnspecified() {
			return fmt.Errorf("--advertise: required when --bind is %s", c.BindAddr)
		}
		c.AdvertiseAddr = c.BindAddr
	}
	adv := net.ParseIP(c.AdvertiseAddr)
	if adv == nil {
		return fmt.Errorf("--advertise %q: not an IP address", c.AdvertiseAddr)
	}
	if c.Insecure {
		// In a fixed order, so that the error names --bind when both are
		// off loopback.
		for _, a := range []struct {
			flag string
			ip   net.IP
		}{{"--bind", bind}, {"--advertise", adv}} {
			if !a.ip.IsLoopback() {
				return fmt.Errorf("--insecure: refused because %s %s is not a loopback address (without TLS and authentication anyone could reach the API)", a.flag, a.ip)
			}
		}
	}
	if !bind.IsLoopback() && c.Token == "" {
		return fmt.Errorf("--token: required when listening on the non-loopback address %s (the API, Raft and gossip authenticate with it)", c.BindAddr)
	}
	for flag, p := range map[string]*int{"--http-port": &c.HTTPPort, "--raft-port": &c.RaftPort, "--gossip-port": &c.GossipPort} {
		if *p < 0 || *p > 65535 {
			return fmt.Errorf("%s %d: not a port number", flag, *p)
		}
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = DefaultHTTPPort
	}
	if c.RaftPort == 0 {
		c.RaftPort = DefaultRaftPort
	}
	if c.GossipPort == 0 {
		c.GossipPort = DefaultGossipPort
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("--bootstrap-expect %d: must be >= 0", c.BootstrapExpect)
	}
	if c.BootstrapExpect > 0 && !c.Server {
		return errors.New("--bootstrap-expect: only servers bootstrap (add --server)")
	}
	if c.Raft == (RaftTiming{}) {
		c.Raft = DefaultRaftTiming
	}
	for flag, d := range map[string]time.Duration{"--raft-heartbeat": c.Raft.HeartbeatTimeout, "--raft-election": c.Raft.ElectionTimeout,
		"--raft-leader-lease": c.Raft.LeaderLeaseTimeout, "--raft-commit-timeout": c.Raft.CommitTimeout} {
		if d < time.Millisecond {
			return fmt.Errorf("%s %s: must be at least 1ms", flag, d)
		}
	}
	if c.Raft.LeaderLeaseTimeout > c.Raft.HeartbeatTimeout {
		return fmt.Errorf("--raft-leader-lease %s: must not exceed --raft-heartbeat %s", c.Raft.LeaderLeaseTimeout, c.Raft.HeartbeatTimeout)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.WatchHistory == 0 {
		c.WatchHistory = 32768
	}
	if c.LeaderWait == 0 {
		c.LeaderWait = 7 * time.Second
	}
	if err := c.HA.setDefaults(); err != nil {
		return err
	}
	if c.DefaultTolerationSeconds < 0 {
		return fmt.Errorf("--default-toleration-seconds %d: must be >= 0", c.DefaultTolerationSeconds)
	}
	if c.DefaultTolerationSeconds == 0 {
		c.DefaultTolerationSeconds = DefaultTolerationSeconds
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if err := c.checkPreviousSecrets(); err != nil {
		return err
	}
	return c.needsToken()
}

func (c *Config) httpAddr() string { return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.HTTPPort)) }
func (c *Config) raftAddr() string { return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.RaftPort)) }
func (c *Config) gossipAddr() string {
	return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.GossipPort))
}
