// Package orchd is the command line of the orchd binary: it turns flags
// into an agent configuration, runs the agent, and shuts it down gracefully
// on SIGTERM or SIGINT (a leader hands over leadership first).
package orchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"orch.dev/orch/agent"
	"orch.dev/orch/ctrl"
	"orch.dev/orch/internal/logging"
	"orch.dev/orch/internal/workercmd"
)

// Version is set at build time with -ldflags "-X orch.dev/orch/internal/orchd.Version=...".
var Version = "dev"

// Main runs orchd with args and returns the exit code.
func Main(args []string, stderr io.Writer) int {
	app := &cli.App{
		Name:           "orchd",
		Usage:          "the orch agent: control-plane server and worker node",
		Version:        Version,
		Writer:         stderr,
		ErrWriter:      stderr,
		Commands:       []*cli.Command{agentCommand(stderr), simulateCommand(stderr), recoverCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "orchd: %v\n", err)
		return 1
	}
	return 0
}

func agentCommand(stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a server (--server), a worker (--worker) or a one-node dev cluster (--dev)",
		// The node flags (name, data dir, addresses, token...) and the
		// worker's are orch-worker's too (internal/workercmd).
		Flags: append(append(workercmd.NodeFlags(),
			&cli.IntFlag{Name: "http-port", Value: agent.DefaultHTTPPort, Usage: "API port"},
			&cli.IntFlag{Name: "raft-port", Value: agent.DefaultRaftPort, Usage: "Raft port"},
			&cli.BoolFlag{Name: "server", Usage: "run the control plane (Raft, API, scheduler, controllers)"},
			&cli.BoolFlag{Name: "worker", Usage: "run pods on this machine (orch-worker runs the same worker without the control plane)"},
			&cli.IntFlag{Name: "bootstrap-expect", Usage: "bootstrap the Raft group once this many servers have joined"},
			&cli.BoolFlag{Name: "dev", Usage: "one-node cluster on loopback; temporary data dir unless --data-dir is given"},
			&cli.StringSliceFlag{Name: "previous-cluster-secret", Usage: "an earlier cluster secret (repeatable): Secrets and the CA sealed with it still open after --token changed, until `orchctl operator secrets reseal`"},
			&cli.StringSliceFlag{Name: "previous-cluster-secret-file", Usage: "read an earlier cluster secret from this file (repeatable)"},
			&cli.BoolFlag{Name: "insecure", Usage: "plain HTTP API without TLS or authentication, for experiments: refused unless every address is loopback"},
			&cli.DurationFlag{Name: "raft-heartbeat", Value: agent.DefaultRaftTiming.HeartbeatTimeout, Usage: "Raft heartbeat timeout"},
			&cli.DurationFlag{Name: "raft-election", Value: agent.DefaultRaftTiming.ElectionTimeout, Usage: "Raft election timeout"},
			&cli.DurationFlag{Name: "raft-leader-lease", Value: agent.DefaultRaftTiming.LeaderLeaseTimeout, Usage: "Raft leader lease"},
			&cli.DurationFlag{Name: "raft-commit-timeout", Value: agent.DefaultRaftTiming.CommitTimeout, Usage: "how soon followers learn of a commit when writes are sparse (lower: fresher follower reads and watches; higher: less idle CPU)"},
			&cli.Uint64Flag{Name: "snapshot-threshold", Value: 8192, Usage: "log entries between Raft snapshots"},
			&cli.IntFlag{Name: "watch-history", Value: 32768, Usage: "changes kept for resuming watches"},
			&cli.DurationFlag{Name: "node-monitor-grace-period", Value: ctrl.DefaultNodeMonitorGracePeriod, Usage: "how long a node may miss heartbeats before it is marked unreachable"},
			&cli.DurationFlag{Name: "event-ttl", Value: ctrl.DefaultEventTTL, Usage: "how long an Event is kept after it last happened (at least 1s)"},
			&cli.Int64Flag{Name: "default-toleration-seconds", Value: agent.DefaultTolerationSeconds, Usage: "how long pods stay on a not-ready or unreachable node before they are replaced, unless they say otherwise"},
		), append(append(workercmd.Flags(), haFlags()...), gcFlags()...)...),
		Action: func(c *cli.Context) error { return runAgent(c, stderr) },
	}
}

func configFromFlags(c *cli.Context, stderr io.Writer) (agent.Config, func(), error) {
	cleanup := func() {}
	level, ok := logging.ParseLevel(c.String("log-level"))
	if !ok {
		return agent.Config{}, cleanup, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	cfg := agent.Config{
		Name:            c.String("name"),
		DataDir:         c.String("data-dir"),
		BindAddr:        c.String("bind"),
		AdvertiseAddr:   c.String("advertise"),
		HTTPPort:        c.Int("http-port"),
		RaftPort:        c.Int("raft-port"),
		GossipPort:      c.Int("gossip-port"),
		Server:          c.Bool("server"),
		BootstrapExpect: c.Int("bootstrap-expect"),
		Join:            c.StringSlice("join"),
		PreviousSecrets: c.StringSlice("previous-cluster-secret"),
		Insecure:        c.Bool("insecure"),
		Raft: agent.RaftTiming{
			HeartbeatTimeout:   c.Duration("raft-heartbeat"),
			ElectionTimeout:    c.Duration("raft-election"),
			LeaderLeaseTimeout: c.Duration("raft-leader-lease"),
			CommitTimeout:      c.Duration("raft-commit-timeout"),
		},
		SnapshotThreshold:        c.Uint64("snapshot-threshold"),
		WatchHistory:             c.Int("watch-history"),
		DefaultTolerationSeconds: c.Int64("default-toleration-seconds"),
		Version:                  Version,
	}
	if err := applyHAFlags(c, &cfg); err != nil {
		return cfg, cleanup, err
	}
	if ttl := c.Duration("event-ttl"); ttl < time.Second {
		return cfg, cleanup, fmt.Errorf("--event-ttl %s: must be at least 1s", ttl)
	}
	token, err := workercmd.Token(c)
	if err != nil {
		return cfg, cleanup, err
	}
	cfg.Token = token
	for _, f := range c.StringSlice("previous-cluster-secret-file") {
		b, err := os.ReadFile(f)
		if err != nil {
			return cfg, cleanup, fmt.Errorf("--previous-cluster-secret-file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return cfg, cleanup, fmt.Errorf("--previous-cluster-secret-file %s: file is empty", f)
		}
		cfg.PreviousSecrets = append(cfg.PreviousSecrets, s)
	}
	if c.Bool("dev") {
		cfg.Server = true
		if cfg.BootstrapExpect == 0 {
			cfg.BootstrapExpect = 1
		}
		if cfg.Name == "" {
			cfg.Name = "dev"
		}
		if cfg.DataDir == "" {
			dir, err := os.MkdirTemp("", "orch-dev-")
			if err != nil {
				return cfg, cleanup, err
			}
			cfg.DataDir = dir
			cleanup = func() { os.RemoveAll(dir) }
		}
	}
	name, err := workercmd.NodeName(cfg.Name)
	if err != nil {
		return cfg, cleanup, err
	}
	cfg.Name = name
	cfg.Logger = logging.New(stderr, level, cfg.Name)
	return cfg, cleanup, nil
}

func runAgent(c *cli.Context, stderr io.Writer) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only)", c.Args().First())
	}
	gc, err := serverGCSettings(c, os.Getenv, machineMemory())
	if err != nil {
		return err
	}
	cfg, cleanup, err := configFromFlags(c, stderr)
	defer cleanup()
	if err != nil {
		return err
	}
	if c.Bool("worker") && !cfg.Server {
		return runWorker(c, cfg) // --worker alone (internal/orchd/worker.go)
	}
	uuid.EnableRandPool() // object uids without a getrandom syscall each
	if cfg.Server {
		gc.apply()
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	if cfg.Server {
		RegisterLeaderComponents(a, LeaderOptions{
			Controllers: ctrl.Options{NodeMonitorGracePeriod: c.Duration("node-monitor-grace-period"), EventTTL: c.Duration("event-ttl")},
		})
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	if err := a.Start(); err != nil {
		return err
	}
	stopWorker, err := startLocalWorker(c, cfg, a) // --server --worker, --dev
	if err != nil {
		return err
	}
	exitErr := error(nil)
	select {
	case sig := <-signals:
		cfg.Logger.Info("shutting down", "signal", sig.String())
	case <-a.Removed():
		exitErr = errors.New("this server was removed from the cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		<-signals
		cfg.Logger.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	stopWorker()
	if err := a.Shutdown(ctx); err != nil {
		cfg.Logger.Warn("shutdown", "err", err)
	}
	return exitErr
}
